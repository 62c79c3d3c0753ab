//! The custom resources ferry shares with Velero: DataDownload and DataUpload
//! (`velero.io/v2alpha1`) and BackupStorageLocation (`velero.io/v1`).
//!
//! The field names, types, required lists and enums match Velero's CRDs exactly so that the
//! same objects flow between Velero and ferry; [`definition`] builds the
//! CustomResourceDefinitions from these types, and the `crds_*` tests compare them with
//! Velero's. None of Velero's three CRDs has a status subresource: status is written through
//! the main resource (update or patch of the whole object), not `/status`.

pub mod backup_storage_location;
pub mod data_download;
pub mod data_upload;
pub mod definition;
pub mod go_duration;
mod progress;
mod resource;
pub mod schema;
mod string_enum;
pub mod volume_snapshot;

pub use backup_storage_location::{
    BackupStorageLocation, BackupStorageLocationAccessMode, BackupStorageLocationPhase,
    BackupStorageLocationSpec, BackupStorageLocationStatus, ObjectStorageLocation,
};
pub use data_download::{
    DATA_DOWNLOAD_LABEL, DataDownload, DataDownloadPhase, DataDownloadSpec, DataDownloadStatus,
    TargetVolumeSpec,
};
pub use data_upload::{
    ASYNC_OPERATION_ID_LABEL, BACKUP_NAME_LABEL, BACKUP_UID_LABEL, CsiSnapshotSpec,
    DATA_UPLOAD_LABEL, DataUpload, DataUploadPhase, DataUploadSpec, DataUploadStatus,
    SNAPSHOT_TYPE_CSI, UPLOAD_FINALIZER,
};
pub use definition::{all_crds, backup_storage_location_crd, data_download_crd, data_upload_crd};
pub use go_duration::{GoDurationError, format_go_duration, parse_go_duration};
pub use progress::DataMoveOperationProgress;
pub use string_enum::NodeOs;
pub use volume_snapshot::{SNAPSHOT_GROUP, content_resource, snapshot_resource};
