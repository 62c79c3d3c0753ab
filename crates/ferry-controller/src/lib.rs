//! ferry's controller side: the CRD types it shares with Velero, the manifests `ferry install`
//! renders, and the DataDownload reconciler with its exposer, placement and rebind.

pub mod backup_deletion;
pub mod cluster;
pub mod crds;
pub mod data_mover;
pub mod data_mover_backup;
pub mod data_mover_exit;
pub mod expose;
pub mod expose_snapshot;
pub mod install;
pub mod leader;
pub mod metrics;
pub mod placement;
pub mod queue;
pub mod reconciler;
pub mod spec_checks;
pub mod wakeups;

pub use reconciler::{
    ControllerError, ControllerHandle, ControllerOptions, run_controller, start_controller,
};
