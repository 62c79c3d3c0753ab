//! A backup's VolumeSnapshots and VolumeSnapshotContents as the DataUpload steps read and
//! write them: read from the watch stores once they are synced and show every write this
//! controller made (else from the API server: a cluster without the watch, or a store behind
//! a write); every write recorded, so that a later read never goes back behind it.

use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crds::{content_resource, snapshot_resource};

use super::controller::Controller;

/// Which of the two kinds.
#[derive(Clone, Copy)]
pub(super) enum SnapshotKind {
    Snapshot,
    Content,
}

impl SnapshotKind {
    fn resource(self) -> ApiResource {
        match self {
            SnapshotKind::Snapshot => snapshot_resource(),
            SnapshotKind::Content => content_resource(),
        }
    }

    /// The kind under which [`crate::wakeups::OwnWrites`] records this controller's writes.
    fn recorded_as(self) -> &'static str {
        match self {
            SnapshotKind::Snapshot => "volumesnapshot",
            SnapshotKind::Content => "volumesnapshotcontent",
        }
    }
}

impl Controller {
    fn snapshot_api(&self, kind: SnapshotKind, namespace: &str) -> Api<DynamicObject> {
        let client = self.options.client.clone();
        if namespace.is_empty() {
            Api::all_with(client, &kind.resource())
        } else {
            Api::namespaced_with(client, namespace, &kind.resource())
        }
    }

    fn snapshot_store(&self, kind: SnapshotKind) -> &Store<DynamicObject> {
        match kind {
            SnapshotKind::Snapshot => &self.watches.snapshots,
            SnapshotKind::Content => &self.watches.snapshot_contents,
        }
    }

    /// A VolumeSnapshot (`namespace` given) or a VolumeSnapshotContent (`namespace` empty).
    pub(super) async fn read_snapshot_object(
        &self,
        kind: SnapshotKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, kube::Error> {
        if self.watches.snapshots_synced() {
            let mut key = ObjectRef::<DynamicObject>::new_with(name, kind.resource());
            if !namespace.is_empty() {
                key = key.within(namespace);
            }
            let cached = self.snapshot_store(kind).get(&key);
            if self.watches.own_writes.caught_up(
                kind.recorded_as(),
                namespace,
                name,
                cached.as_deref(),
            ) {
                return Ok(cached.map(|o| (*o).clone()));
            }
        }
        self.snapshot_api(kind, namespace).get_opt(name).await
    }

    /// As [`Self::read_snapshot_object`], but absent only if the API server says so: for reads
    /// whose absence fails a backup (the store may lag behind another's creation).
    pub(super) async fn read_snapshot_object_or_api(
        &self,
        kind: SnapshotKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, kube::Error> {
        match self.read_snapshot_object(kind, namespace, name).await? {
            Some(obj) => Ok(Some(obj)),
            None => self.snapshot_api(kind, namespace).get_opt(name).await,
        }
    }

    /// Creates the object; one that exists already (a store behind its creation by an
    /// earlier pass) counts as created.
    pub(super) async fn create_snapshot_object(
        &self,
        kind: SnapshotKind,
        namespace: &str,
        obj: &DynamicObject,
    ) -> Result<(), kube::Error> {
        match self
            .snapshot_api(kind, namespace)
            .create(&PostParams::default(), obj)
            .await
        {
            Ok(created) => {
                self.watches.own_writes.wrote(kind.recorded_as(), &created);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(err) => Err(err),
        }
    }

    pub(super) async fn patch_snapshot_object(
        &self,
        kind: SnapshotKind,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let patched = self
            .snapshot_api(kind, "")
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.watches.own_writes.wrote(kind.recorded_as(), &patched);
        Ok(())
    }

    /// Deletes the object unless it is being deleted already (deleting a terminating object
    /// again changes nothing and costs a request). Returns whether it was there. A store
    /// that does not show it may lag behind its creation by another (a snapshot made just
    /// before its DataUpload), so then the API server decides.
    pub(super) async fn delete_snapshot_object(
        &self,
        kind: SnapshotKind,
        namespace: &str,
        name: &str,
    ) -> Result<bool, kube::Error> {
        let seen = self.read_snapshot_object(kind, namespace, name).await?;
        if seen
            .as_ref()
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some())
        {
            return Ok(true);
        }
        match self
            .snapshot_api(kind, namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            // Not recorded: once gone, the store could never show the version written, and
            // reads would go to the API server until the record expires. A store still
            // behind the deletion only costs a second delete.
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(err) => Err(err),
        }
    }
}
