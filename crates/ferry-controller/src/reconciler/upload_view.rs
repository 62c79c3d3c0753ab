//! A DataUpload as a pass sees it, and what ferry writes on one (finalizer, annotations):
//! shared by the phases (`uploads.rs`) and the removal of a backup's objects
//! (`upload_cleanup.rs`).

use crate::crds::{DataUpload, DataUploadPhase};

use super::view::finalizers_with;

pub use crate::crds::UPLOAD_FINALIZER;
/// The source VolumeSnapshotContent taken over (recorded before the source snapshot goes, so
/// a restarted controller still knows which content to delete).
pub const SOURCE_CONTENT_ANNOTATION: &str = "ferry.io/source-snapshot-content";
/// Set once the data mover finished: the result is in the status, cleanup may proceed.
pub const UPLOADED_ANNOTATION: &str = "ferry.io/data-uploaded";

/// One DataUpload as a pass sees it.
pub(super) struct ObservedUpload {
    pub(super) du: DataUpload,
    pub(super) name: String,
}

impl ObservedUpload {
    /// The node chosen for it, if one was.
    pub(super) fn node(&self) -> Option<&str> {
        self.du.status.as_ref().and_then(|s| s.node.as_deref())
    }

    /// The node holding a data-movement slot for this upload, if it holds one.
    pub(super) fn slot(&self) -> Option<&str> {
        let holds = matches!(
            self.du.phase(),
            DataUploadPhase::Accepted
                | DataUploadPhase::Prepared
                | DataUploadPhase::InProgress
                | DataUploadPhase::Canceling
        );
        self.node().filter(|_| holds)
    }
}

pub(super) fn has_upload_finalizer(du: &DataUpload) -> bool {
    du.holds_finalizer(UPLOAD_FINALIZER)
}

pub(super) fn upload_finalizers(du: &DataUpload, keep: bool) -> Vec<String> {
    finalizers_with(&du.metadata, UPLOAD_FINALIZER, keep)
}

pub(super) fn annotation<'a>(du: &'a DataUpload, key: &str) -> Option<&'a str> {
    du.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(|v| v.as_str())
}
