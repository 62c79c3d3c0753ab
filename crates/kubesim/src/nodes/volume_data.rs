//! Where a volume's data is on this machine. kubesim's provisioner makes CSI volumes of its
//! driver (`hostpath.kubesim.io`) whose handle names a directory (or, for Block, a sparse
//! file) under `DATA_DIR/volumes`; static `local` and `hostPath` PVs name their path.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::PersistentVolume;

use super::bootstrap::PROVISIONER;

/// The CSI volume attribute holding the data's path, for people looking around (kubesim's
/// components go by the handle).
pub const PATH_ATTRIBUTE: &str = "kubesim.io/path";

/// Where kubesim keeps the data of the provisioned volume `handle`.
pub fn volume_path(data_dir: &Path, handle: &str) -> PathBuf {
    data_dir.join("volumes").join(handle)
}

/// A handle kubesim could have made: one plain path component.
fn plain_component(handle: &str) -> bool {
    let mut components = Path::new(handle).components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    )
}

/// The path of `pv`'s data: for a CSI volume of kubesim's driver, its handle under
/// `data_dir/volumes`; for `local` and `hostPath`, their path. None for anything else.
pub fn pv_data_path(pv: &PersistentVolume, data_dir: &Path) -> Option<PathBuf> {
    let spec = pv.spec.as_ref()?;
    if let Some(csi) = &spec.csi {
        return (csi.driver == PROVISIONER && plain_component(&csi.volume_handle))
            .then(|| volume_path(data_dir, &csi.volume_handle));
    }
    spec.local
        .as_ref()
        .map(|l| PathBuf::from(&l.path))
        .or_else(|| spec.host_path.as_ref().map(|h| PathBuf::from(&h.path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, LocalVolumeSource, PersistentVolumeSpec,
    };

    fn csi(driver: &str, handle: &str) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: handle.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn kubesim_csi_volumes_live_under_the_data_dir_by_handle() {
        let dir = Path::new("/sim");
        assert_eq!(
            pv_data_path(&csi(PROVISIONER, "pvc-1"), dir),
            Some(PathBuf::from("/sim/volumes/pvc-1"))
        );
        // Another driver's volume, or a handle that would leave the folder, is not ours.
        assert_eq!(pv_data_path(&csi("ebs.csi.aws.com", "vol-1"), dir), None);
        assert_eq!(pv_data_path(&csi(PROVISIONER, "../etc"), dir), None);
        assert_eq!(pv_data_path(&csi(PROVISIONER, "a/b"), dir), None);
        assert_eq!(pv_data_path(&csi(PROVISIONER, ""), dir), None);
    }

    #[test]
    fn static_local_volumes_name_their_path() {
        let pv = PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                local: Some(LocalVolumeSource {
                    path: "/mnt/disk".into(),
                    fs_type: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pv_data_path(&pv, Path::new("/sim")),
            Some(PathBuf::from("/mnt/disk"))
        );
    }
}
