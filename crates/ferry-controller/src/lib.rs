//! ferry's controller side: the CRD types it shares with Velero, the manifests `ferry install`
//! renders, and the DataDownload and DataUpload reconcilers with their exposer, placement and
//! rebind. It talks to the Kubernetes API only: the data movers it starts (`ferry-mover`) are
//! what open the backup repository, and [`data_mover_exit`] is how they report back.

pub mod backup_deletion;
pub mod cluster;
pub mod crds;
pub mod data_mover_exit;
pub mod events;
pub mod expose;
pub mod expose_snapshot;
pub mod install;
pub mod leader;
pub mod metrics;
pub mod placement;
pub mod queue;
pub mod rebind;
pub mod reconciler;
pub mod spec_checks;
pub mod wakeups;

pub use reconciler::{
    ControllerError, ControllerHandle, ControllerOptions, run_controller, start_controller,
};
