//! The data mover: what runs inside the pods the controller starts (`ferry data-mover
//! restore|backup|forget`). It is the only part of ferry, besides the CLI's own repository
//! commands, that opens a backup repository: the controller depends on the Kubernetes API only,
//! and this crate is where `ferry-repo` meets the DataDownloads and DataUploads.
//!
//! Each command reads its object, opens the repository of the object's BackupStorageLocation
//! ([`location`]), moves the data with progress in the object's status ([`progress`]), and
//! returns a [`DataMoverResult`] that the CLI writes as the container's termination message
//! for the controller to read.

pub mod backup;
pub mod error;
pub mod forget;
pub mod location;
mod objects;
pub mod progress;
pub mod restore;

use serde::{Deserialize, Serialize};

pub use backup::{BackupMoverOptions, backup_data_upload};
pub use error::DataMoverError;
pub use ferry_controller::data_mover_exit::{
    DataMoverResult, parse_termination_message, write_termination_message,
};
pub use forget::{ForgetOptions, LOCK_WAIT, forget_data_upload_snapshot};
pub use location::{PasswordSource, REPO_PASSWORD_SECRET, REPOSITORY_DIR};
pub use restore::{DataMoverOptions, restore_data_download};

/// How the data mover writes the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeMode {
    Filesystem,
    Block,
}
