//! DataUpload (`velero.io/v2alpha1`): one volume snapshot to back up into a backup repository.
//! Velero's backup creates it; the data mover named in `spec.datamover` carries it out.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use super::go_duration::{GoDurationError, parse_go_duration};
pub use super::progress::DataMoveOperationProgress;
use super::resource::velero_resource;
use super::schema::nullable_time_schema;
pub use super::string_enum::NodeOs;
use super::string_enum::string_enum;

/// A request to back up one volume snapshot.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DataUpload {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: DataUploadSpec,
    #[serde(default)]
    pub status: Option<DataUploadStatus>,
}

velero_resource!(
    DataUpload,
    group = "velero.io",
    version = "v2alpha1",
    plural = "datauploads"
);

impl DataUpload {
    /// A new DataUpload with the given name and spec (namespace and status unset).
    pub fn new(name: &str, spec: DataUploadSpec) -> Self {
        Self {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    /// The current phase; an object nobody has touched yet is `New`.
    pub fn phase(&self) -> DataUploadPhase {
        self.status
            .as_ref()
            .and_then(|status| status.phase.clone())
            .unwrap_or(DataUploadPhase::New)
    }

    /// The value of a label, `None` when it is absent or empty.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata
            .labels
            .as_ref()?
            .get(key)
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// Velero's labels on a DataUpload: the backup it belongs to, and the id of Velero's async
/// operation that waits for it.
pub const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
pub const BACKUP_UID_LABEL: &str = "velero.io/backup-uid";
pub const ASYNC_OPERATION_ID_LABEL: &str = "velero.io/async-operation-id";

/// `spec.snapshotType` for a CSI VolumeSnapshot (the only type Velero defines today).
pub const SNAPSHOT_TYPE_CSI: &str = "CSI";

/// What to back up and where to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataUploadSpec {
    /// Kind of snapshot to back up, for example "CSI".
    pub snapshot_type: String,
    /// The CSI snapshot to back up, when `snapshotType` is "CSI".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub csi_snapshot: Option<CsiSnapshotSpec>,
    /// Name of the PVC the snapshot was taken of.
    #[serde(rename = "sourcePVC")]
    pub source_pvc: String,
    /// Which data mover handles this upload; "" or "velero" means Velero's built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datamover: Option<String>,
    /// Settings specific to the data mover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub data_mover_config: Option<BTreeMap<String, String>>,
    /// Name of the BackupStorageLocation that holds the backup repository.
    pub backup_storage_location: String,
    /// Namespace of the source PVC and of the CSI snapshot objects.
    pub source_namespace: String,
    /// Set to ask the data mover to stop the upload while it is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
    /// How long internal steps may wait before failing, in Go duration syntax ("10m0s").
    pub operation_timeout: String,
}

impl DataUploadSpec {
    /// `operationTimeout` as a duration.
    pub fn operation_timeout_duration(&self) -> Result<Duration, GoDurationError> {
        parse_go_duration(&self.operation_timeout)
    }

    /// Whether `spec.datamover` names `data_mover_name` (for example "ferry").
    pub fn is_for_data_mover(&self, data_mover_name: &str) -> bool {
        self.datamover.as_deref() == Some(data_mover_name)
    }
}

/// The CSI VolumeSnapshot a DataUpload backs up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsiSnapshotSpec {
    /// Name of the VolumeSnapshot to back up.
    pub volume_snapshot: String,
    /// StorageClass of the PVC the snapshot was taken of.
    pub storage_class: String,
    /// VolumeSnapshotClass the snapshot was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_class: Option<String>,
    /// CSI driver of the VolumeSnapshotContent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

string_enum! {
    /// Where a DataUpload is in its life: New → Accepted → Prepared → InProgress →
    /// Completed | Failed, or Canceling → Canceled.
    pub enum DataUploadPhase {
        New = "New",
        Accepted = "Accepted",
        Prepared = "Prepared",
        InProgress = "InProgress",
        Canceling = "Canceling",
        Canceled = "Canceled",
        Completed = "Completed",
        Failed = "Failed",
    }
}

impl DataUploadPhase {
    /// Completed, Failed and Canceled are final.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

/// What the data mover reports back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataUploadStatus {
    /// Current phase of the DataUpload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DataUploadPhase>,
    /// Path of the backed-up files inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// ID of the snapshot written to the backup repository.
    #[serde(
        rename = "snapshotID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Data-mover-specific results of the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub data_mover_result: Option<BTreeMap<String, String>>,
    /// When the backup started (server time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_time_schema")]
    pub start_timestamp: Option<Time>,
    /// When the backup finished, successfully or not (server time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_time_schema")]
    pub completion_timestamp: Option<Time>,
    /// Total bytes of the volume and bytes backed up so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<DataMoveOperationProgress>,
    /// Bytes that were new since the previous backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_bytes: Option<i64>,
    /// Human-readable detail about the phase, for example why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Node that processes the DataUpload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Operating system of the node that processes the DataUpload.
    #[serde(rename = "nodeOS", default, skip_serializing_if = "Option::is_none")]
    pub node_os: Option<NodeOs>,
    /// Node whose data mover accepted the DataUpload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by_node: Option<String>,
    /// When the DataUpload was accepted (server time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_time_schema")]
    pub accepted_timestamp: Option<Time>,
}

/// Labels the backup pod, PVC, VolumeSnapshot and content of a DataUpload with its name, so a
/// restarted controller and its watches find them.
pub const DATA_UPLOAD_LABEL: &str = "ferry.io/data-upload";

/// Held on a DataUpload from acceptance until the removal of its objects needs nothing more
/// of ferry (as the restore's).
pub const UPLOAD_FINALIZER: &str = "ferry.io/data-upload-cleanup";

impl DataUpload {
    /// Whether ferry still has a step to take for it: not ended, being deleted, or ended with
    /// a cleanup step left (it then still holds [`UPLOAD_FINALIZER`]).
    pub fn unfinished(&self) -> bool {
        !self.phase().is_terminal()
            || self.metadata.deletion_timestamp.is_some()
            || self.holds_finalizer(UPLOAD_FINALIZER)
    }
}
