//! DataDownload (`velero.io/v2alpha1`): one volume to restore from a backup repository.
//! Velero's restore creates it; the data mover named in `spec.datamover` carries it out.

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

/// A request to restore one snapshot into one target volume.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DataDownload {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: DataDownloadSpec,
    #[serde(default)]
    pub status: Option<DataDownloadStatus>,
}

velero_resource!(
    DataDownload,
    group = "velero.io",
    version = "v2alpha1",
    plural = "datadownloads"
);

impl DataDownload {
    /// A new DataDownload with the given name and spec (namespace and status unset).
    pub fn new(name: &str, spec: DataDownloadSpec) -> Self {
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
    pub fn phase(&self) -> DataDownloadPhase {
        self.status
            .as_ref()
            .and_then(|status| status.phase.clone())
            .unwrap_or(DataDownloadPhase::New)
    }
}

/// What to restore, from where, into which volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataDownloadSpec {
    /// The target PVC and PV the restored data must end up in.
    pub target_volume: TargetVolumeSpec,
    /// Name of the BackupStorageLocation that holds the backup repository.
    pub backup_storage_location: String,
    /// Which data mover handles this download; "" or "velero" means Velero's built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datamover: Option<String>,
    /// ID of the snapshot in the backup repository to restore from.
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
    /// Namespace the volume was backed up from (it differs from the target namespace when the
    /// restore remaps namespaces).
    pub source_namespace: String,
    /// Settings specific to the data mover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_mover_config: Option<BTreeMap<String, String>>,
    /// Set to ask the data mover to stop the download while it is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
    /// How long internal steps may wait before failing, in Go duration syntax ("10m0s").
    pub operation_timeout: String,
    /// Operating system of the node that processes the download.
    #[serde(rename = "nodeOS", default, skip_serializing_if = "Option::is_none")]
    pub node_os: Option<NodeOs>,
    /// Logical size of the snapshot in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_size: Option<i64>,
}

impl DataDownloadSpec {
    /// `operationTimeout` as a duration; the error names the field and the bad text.
    pub fn operation_timeout_duration(&self) -> Result<Duration, GoDurationError> {
        parse_go_duration(&self.operation_timeout)
    }

    /// Whether `spec.datamover` names `data_mover_name` (for example "ferry").
    pub fn is_for_data_mover(&self, data_mover_name: &str) -> bool {
        self.datamover.as_deref() == Some(data_mover_name)
    }
}

/// The volume a DataDownload restores into: a PVC and the PV Velero's restore created for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TargetVolumeSpec {
    /// Name of the target PVC.
    pub pvc: String,
    /// Name of the target PV.
    pub pv: String,
    /// Namespace of the target PVC.
    pub namespace: String,
}

string_enum! {
    /// Where a DataDownload is in its life: New → Accepted → Prepared → InProgress →
    /// Completed | Failed, or Canceling → Canceled.
    pub enum DataDownloadPhase {
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

impl DataDownloadPhase {
    /// Completed, Failed and Canceled are final: nothing moves a DataDownload out of them.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

/// What the data mover reports back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataDownloadStatus {
    /// Current phase of the DataDownload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DataDownloadPhase>,
    /// Human-readable detail about the phase, for example why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the restore started (server time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_time_schema")]
    pub start_timestamp: Option<Time>,
    /// When the restore finished, successfully or not (server time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_time_schema")]
    pub completion_timestamp: Option<Time>,
    /// Total bytes of the snapshot and bytes restored so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<DataMoveOperationProgress>,
    /// Node that processes the DataDownload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Node whose data mover accepted the DataDownload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by_node: Option<String>,
    /// When the DataDownload was accepted (server time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_time_schema")]
    pub accepted_timestamp: Option<Time>,
}

/// Labels the restore pod, PVC and (during rebind) PV of a DataDownload with its name, so a
/// restarted controller and its watches find them.
pub const DATA_DOWNLOAD_LABEL: &str = "ferry.io/data-download";
