//! The `snapshot.storage.k8s.io/v1` CRDs (VolumeSnapshot, VolumeSnapshotContent,
//! VolumeSnapshotClass), copied verbatim from external-snapshotter's client module v8.4.0
//! (`config/crd`, Apache-2.0), the release the real control plane in the tests runs. kubesim
//! installs them on its own API server; on a real control plane they are installed with the
//! snapshot-controller.

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;

pub const CRDS: [(&str, &str); 3] = [
    (
        "volumesnapshotclasses",
        include_str!("snapshot_crds/snapshot.storage.k8s.io_volumesnapshotclasses.yaml"),
    ),
    (
        "volumesnapshotcontents",
        include_str!("snapshot_crds/snapshot.storage.k8s.io_volumesnapshotcontents.yaml"),
    ),
    (
        "volumesnapshots",
        include_str!("snapshot_crds/snapshot.storage.k8s.io_volumesnapshots.yaml"),
    ),
];

/// Creates the CRDs (those that exist are left as they are).
pub async fn install(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (name, text) in CRDS {
        let crd: CustomResourceDefinition =
            serde_yaml_ng::from_str(text).with_context(|| format!("the {name} CRD"))?;
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create the {name} CRD")),
        }
    }
    Ok(())
}
