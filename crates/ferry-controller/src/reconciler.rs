//! The DataDownload controller: a pass runs whenever a watched object changes (see
//! [`crate::wakeups`]) and every `resync_interval`; it observes the DataDownloads of its data
//! mover in its namespace, the nodes and the restore objects (from the watch stores), and
//! moves each DataDownload one step:
//! New → Accepted → Prepared → InProgress → Completed | Failed, or Canceling → Canceled.
//! Each step is decided from what the cluster shows (never from memory), so a restarted
//! controller continues where the last one stopped and never starts a data mover twice (the
//! restore pod has the DataDownload's name and is created only while Accepted).

mod controller;
mod downloads;
mod effects;
mod event_sink;
mod intent;
mod node_load;
mod options;
mod pass;
mod runtime;
mod upload_cleanup;
mod upload_memo;
mod upload_snapshots;
mod upload_view;
mod uploads;
mod view;

pub use options::ControllerOptions;
pub use runtime::{ControllerError, ControllerHandle, run_controller, start_controller};
pub use upload_view::{SOURCE_CONTENT_ANNOTATION, UPLOAD_FINALIZER, UPLOADED_ANNOTATION};
pub use view::{CLEANUP_FINALIZER, DATA_MOVED_ANNOTATION};
