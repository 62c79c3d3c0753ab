//! The fields of a DataDownload or DataUpload that name things ferry opens or creates, checked
//! before any is used: anyone who may create these objects could otherwise steer a path
//! (`spec.sourceNamespace: ../../x` joined into a repository path) or a name. A refused field
//! ends the transfer Failed with a message naming it.

use ferry_config::{DNS_LABEL_MAX, check_dns_subdomain, is_dns_label};

use crate::crds::{DataDownloadSpec, DataUploadSpec};

/// A restic ID is 32 bytes, 64 hex digits; a unique prefix may stand for it.
const SNAPSHOT_ID_MAX: usize = 64;

fn namespace(field: &str, value: &str) -> Result<(), String> {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err(format!(
            "{field} {value:?} is not a namespace name (lower-case letters, digits and '-', at \
             most {DNS_LABEL_MAX} characters)"
        ))
    }
}

fn name(field: &str, value: &str) -> Result<(), String> {
    check_dns_subdomain(value).map_err(|e| format!("{field} is not a Kubernetes name: {e}"))
}

fn snapshot_id(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= SNAPSHOT_ID_MAX
        && value.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        let shown: String = value.chars().take(80).collect();
        Err(format!(
            "{field} {shown:?} is not a snapshot ID (1 to {SNAPSHOT_ID_MAX} hex digits)"
        ))
    }
}

/// ferry labels the restore or backup PVC and pod with the object's name, and the API server
/// refuses label values over 63 characters: said up front rather than as a refused create.
fn object_name(value: &str) -> Result<(), String> {
    ferry_config::check_label_value(value).map_err(|e| {
        format!("metadata.name cannot be a label value of the data mover's pod and PVC: {e}")
    })
}

/// What is wrong with a DataDownload (its name and spec), if anything.
pub fn data_download_problem(object: &str, spec: &DataDownloadSpec) -> Option<String> {
    let t = &spec.target_volume;
    [
        object_name(object),
        namespace("spec.targetVolume.namespace", &t.namespace),
        name("spec.targetVolume.pvc", &t.pvc),
        namespace("spec.sourceNamespace", &spec.source_namespace),
        name("spec.backupStorageLocation", &spec.backup_storage_location),
        snapshot_id("spec.snapshotID", &spec.snapshot_id),
    ]
    .into_iter()
    .find_map(Result::err)
}

/// What is wrong with a DataUpload (its name and spec), if anything.
pub fn data_upload_problem(object: &str, spec: &DataUploadSpec) -> Option<String> {
    let mut checks = vec![
        object_name(object),
        namespace("spec.sourceNamespace", &spec.source_namespace),
        name("spec.sourcePVC", &spec.source_pvc),
        name("spec.backupStorageLocation", &spec.backup_storage_location),
    ];
    if let Some(csi) = &spec.csi_snapshot {
        checks.push(name(
            "spec.csiSnapshot.volumeSnapshot",
            &csi.volume_snapshot,
        ));
    }
    checks.into_iter().find_map(Result::err)
}

/// A namespace that may be joined into a repository path (`<prefix>/plugins/ferry/<ns>`).
pub fn check_source_namespace(value: &str) -> Result<(), String> {
    namespace("source namespace", value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crds::{CsiSnapshotSpec, TargetVolumeSpec};

    fn download() -> DataDownloadSpec {
        DataDownloadSpec {
            target_volume: TargetVolumeSpec {
                pvc: "data-0".into(),
                pv: String::new(),
                namespace: "app".into(),
            },
            backup_storage_location: "default".into(),
            snapshot_id: "0123abcd".into(),
            source_namespace: "app".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_well_formed_data_download_passes() {
        assert_eq!(data_download_problem("dd", &download()), None);
        let full = DataDownloadSpec {
            snapshot_id: "a".repeat(64),
            ..download()
        };
        assert_eq!(data_download_problem("dd", &full), None);
    }

    #[test]
    fn each_hostile_field_is_named() {
        let cases: Vec<(DataDownloadSpec, &str)> = vec![
            (
                DataDownloadSpec {
                    source_namespace: "../../../../evil/repo".into(),
                    ..download()
                },
                "spec.sourceNamespace \"../../../../evil/repo\" is not a namespace name",
            ),
            (
                DataDownloadSpec {
                    source_namespace: "a.b".into(),
                    ..download()
                },
                "spec.sourceNamespace \"a.b\"",
            ),
            (
                DataDownloadSpec {
                    source_namespace: "n".repeat(64),
                    ..download()
                },
                "spec.sourceNamespace",
            ),
            (
                DataDownloadSpec {
                    snapshot_id: "名".repeat(4000),
                    ..download()
                },
                "spec.snapshotID \"名名名",
            ),
            (
                DataDownloadSpec {
                    snapshot_id: "latest/../x".into(),
                    ..download()
                },
                "spec.snapshotID",
            ),
            (
                DataDownloadSpec {
                    backup_storage_location: "../x".into(),
                    ..download()
                },
                "spec.backupStorageLocation is not a Kubernetes name",
            ),
        ];
        for (spec, expected) in cases {
            let problem = data_download_problem("dd", &spec).expect("refused");
            assert!(problem.contains(expected), "{expected:?} in {problem:?}");
            assert!(problem.len() < 400, "a short message: {}", problem.len());
        }
        let long = "d".repeat(64);
        assert!(
            data_download_problem(&long, &download())
                .unwrap()
                .starts_with("metadata.name cannot be a label value")
        );
        let mut t = download();
        t.target_volume.namespace = "Upper".into();
        assert!(
            data_download_problem("dd", &t)
                .unwrap()
                .starts_with("spec.targetVolume.namespace")
        );
        t = download();
        t.target_volume.pvc = "a/b".into();
        assert!(
            data_download_problem("dd", &t)
                .unwrap()
                .starts_with("spec.targetVolume.pvc")
        );
    }

    #[test]
    fn data_upload_fields_are_checked_too() {
        let spec = DataUploadSpec {
            source_namespace: "app".into(),
            source_pvc: "data".into(),
            backup_storage_location: "default".into(),
            csi_snapshot: Some(CsiSnapshotSpec {
                volume_snapshot: "snap-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(data_upload_problem("du", &spec), None);
        let bad = DataUploadSpec {
            source_namespace: "..".into(),
            ..spec.clone()
        };
        assert!(
            data_upload_problem("du", &bad)
                .unwrap()
                .starts_with("spec.sourceNamespace \"..\"")
        );
        let bad = DataUploadSpec {
            csi_snapshot: Some(CsiSnapshotSpec {
                volume_snapshot: "../snap".into(),
                ..Default::default()
            }),
            ..spec
        };
        assert!(
            data_upload_problem("du", &bad)
                .unwrap()
                .starts_with("spec.csiSnapshot.volumeSnapshot")
        );
    }
}
