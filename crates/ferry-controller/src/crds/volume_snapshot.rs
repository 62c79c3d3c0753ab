//! The CSI snapshot resources ferry reads and writes for backups (`snapshot.storage.k8s.io/v1`,
//! the external-snapshotter's CRDs, which ferry does not install). k8s-openapi has no types
//! for them, so they are handled as dynamic objects of these resources.

use kube::api::{ApiResource, GroupVersionKind};

pub const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";

/// VolumeSnapshot.
pub fn snapshot_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(SNAPSHOT_GROUP, "v1", "VolumeSnapshot"),
        "volumesnapshots",
    )
}

/// VolumeSnapshotContent.
pub fn content_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(SNAPSHOT_GROUP, "v1", "VolumeSnapshotContent"),
        "volumesnapshotcontents",
    )
}
