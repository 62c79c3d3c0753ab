//! What the controller remembers about each DataUpload between passes, so that a pass costs
//! API requests only for what may have changed. A backup waits for VolumeSnapshots, which no
//! watch of the controller reports, and a pass runs on every watched change of any restore or
//! backup: without this memory, sixteen backups waiting for the snapshot controller read their
//! snapshots, their location and their take-over again on every pass, hundreds of requests a
//! second (9,497 requests for 16 backups of 1 GiB on the real control plane).
//!
//! Two things are kept, both re-derived from the cluster by a restarted controller:
//!
//! - facts that stay true once true: the BackupStorageLocation was found, the take-over is
//!   done (the backup VolumeSnapshot is ready, with its restore size), the source snapshot
//!   and content are gone (an object of that name found later is not this backup's);
//! - a pace for steps that wait for what no watch reports (a snapshot to be ready, a
//!   snapshot's deletion): such a step runs again when its DataUpload changes or [`POLL`]
//!   after it last ran, not on every pass.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::crds::DataUpload;

/// How often a step waiting for an unwatched object looks again.
pub(super) const POLL: Duration = Duration::from_millis(900);

#[derive(Default)]
pub(super) struct UploadMemo {
    entries: Mutex<HashMap<String, Entry>>,
}

/// Keyed by the DataUpload's name; the uid tells a recreated DataUpload of the same name.
#[derive(Default, Clone)]
struct Entry {
    uid: String,
    location_found: bool,
    /// The take-over is done: the backup snapshot's restore size (if it gave one).
    taken_over: Option<Option<Quantity>>,
    source_gone: bool,
    /// The step waits: run it again once the DataUpload's resourceVersion differs from this
    /// one, or at `until`.
    paced: Option<(String, Instant)>,
}

fn identity(du: &DataUpload) -> (String, String) {
    (
        du.metadata.name.clone().unwrap_or_default(),
        du.metadata.uid.clone().unwrap_or_default(),
    )
}

impl UploadMemo {
    fn with<T>(&self, du: &DataUpload, f: impl FnOnce(&mut Entry) -> T) -> T {
        let (name, uid) = identity(du);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(name).or_default();
        if entry.uid != uid {
            *entry = Entry {
                uid,
                ..Entry::default()
            };
        }
        f(entry)
    }

    /// Forgets every DataUpload not in `names` (gone, or no longer this data mover's).
    pub(super) fn keep_only<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = names.into_iter().collect();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|name, _| keep.contains(name.as_str()));
    }

    pub(super) fn location_found(&self, du: &DataUpload) -> bool {
        self.with(du, |e| e.location_found)
    }

    pub(super) fn found_location(&self, du: &DataUpload) {
        self.with(du, |e| e.location_found = true)
    }

    /// The backup snapshot's restore size once the take-over is known to be done.
    pub(super) fn taken_over(&self, du: &DataUpload) -> Option<Option<Quantity>> {
        self.with(du, |e| e.taken_over.clone())
    }

    pub(super) fn took_over(&self, du: &DataUpload, restore_size: Option<Quantity>) {
        self.with(du, |e| e.taken_over = Some(restore_size))
    }

    /// Whether its source snapshot and content are known to be gone.
    pub(super) fn source_gone(&self, du: &DataUpload) -> bool {
        self.with(du, |e| e.source_gone)
    }

    pub(super) fn found_source_gone(&self, du: &DataUpload) {
        self.with(du, |e| e.source_gone = true)
    }

    /// Whether a waiting step of this DataUpload should run now: it never waited, the
    /// DataUpload changed since, or its poll is due.
    pub(super) fn due(&self, du: &DataUpload) -> bool {
        self.due_at(du, Instant::now())
    }

    fn due_at(&self, du: &DataUpload, now: Instant) -> bool {
        let version = du.metadata.resource_version.clone().unwrap_or_default();
        self.with(du, |e| match &e.paced {
            Some((seen, until)) => *seen != version || now >= *until,
            None => true,
        })
    }

    /// The step just ran and waits for an unwatched object: look again after [`POLL`].
    pub(super) fn wait(&self, du: &DataUpload) {
        self.wait_from(du, Instant::now())
    }

    fn wait_from(&self, du: &DataUpload, now: Instant) {
        let version = du.metadata.resource_version.clone().unwrap_or_default();
        self.with(du, |e| e.paced = Some((version, now + POLL)))
    }

    /// The step no longer waits.
    pub(super) fn moved_on(&self, du: &DataUpload) {
        self.with(du, |e| e.paced = None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crds::DataUploadSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn upload(name: &str, uid: &str, version: &str) -> DataUpload {
        DataUpload {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: DataUploadSpec::default(),
            status: None,
        }
    }

    #[test]
    fn a_waiting_step_runs_again_when_its_upload_changes_or_its_poll_is_due() {
        let memo = UploadMemo::default();
        let t0 = Instant::now();
        let du = upload("a", "u1", "10");
        assert!(memo.due_at(&du, t0), "never waited");
        memo.wait_from(&du, t0);
        assert!(!memo.due_at(&du, t0 + POLL / 2), "unchanged, poll not due");
        assert!(memo.due_at(&du, t0 + POLL), "poll due");
        assert!(
            memo.due_at(&upload("a", "u1", "11"), t0),
            "the upload changed"
        );
        assert!(memo.due_at(&upload("b", "u2", "10"), t0), "another upload");
        memo.moved_on(&du);
        assert!(memo.due_at(&du, t0), "no longer waiting");
    }

    #[test]
    fn facts_are_forgotten_with_their_upload() {
        let memo = UploadMemo::default();
        let du = upload("a", "u1", "10");
        memo.found_location(&du);
        memo.took_over(&du, Some(Quantity("1Gi".into())));
        memo.found_source_gone(&du);
        assert!(memo.location_found(&du));
        assert!(memo.source_gone(&du));
        assert_eq!(memo.taken_over(&du), Some(Some(Quantity("1Gi".into()))));
        // Recreated under the same name: nothing of the old one is believed.
        let again = upload("a", "u2", "20");
        assert!(!memo.location_found(&again));
        assert_eq!(memo.taken_over(&again), None);
        assert!(!memo.source_gone(&again));
        memo.found_location(&again);
        memo.keep_only(["b"]);
        assert!(!memo.location_found(&again), "forgotten once not observed");
    }
}
