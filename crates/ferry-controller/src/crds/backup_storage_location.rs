//! BackupStorageLocation (`velero.io/v1`): where backups live (object store, bucket, prefix,
//! credentials). ferry reads it to open the backup repository a DataDownload names.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::SecretKeySelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use super::go_duration::{GoDurationError, parse_go_duration};
use super::resource::velero_resource;
use super::schema::{byte_string_schema, nullable_time_schema, secret_key_selector_schema};
use super::string_enum::string_enum;

/// A place backups are stored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BackupStorageLocation {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: BackupStorageLocationSpec,
    #[serde(default)]
    pub status: Option<BackupStorageLocationStatus>,
}

velero_resource!(
    BackupStorageLocation,
    group = "velero.io",
    version = "v1",
    plural = "backupstoragelocations"
);

impl BackupStorageLocation {
    /// A new BackupStorageLocation with the given name and spec.
    pub fn new(name: &str, spec: BackupStorageLocationSpec) -> Self {
        Self {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }
}

/// How to reach the object store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationSpec {
    /// Object store provider, for example "aws" for S3-compatible stores.
    pub provider: String,
    /// Provider-specific settings (region, s3Url, s3ForcePathStyle, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// Secret key holding the credentials for this location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "secret_key_selector_schema")]
    pub credential: Option<SecretKeySelector>,
    /// Bucket, prefix and CA of the object store.
    pub object_storage: ObjectStorageLocation,
    /// Whether this is the default location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// Whether backups may be written here (ReadWrite) or only read (ReadOnly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<BackupStorageLocationAccessMode>,
    /// How often to sync backup objects from the store, Go duration syntax; "0" disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub backup_sync_period: Option<String>,
    /// How often to validate the store, Go duration syntax; "0" disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub validation_frequency: Option<String>,
}

impl BackupStorageLocationSpec {
    /// `backupSyncPeriod` as a duration (None when unset).
    pub fn backup_sync_period_duration(&self) -> Option<Result<Duration, GoDurationError>> {
        self.backup_sync_period.as_deref().map(parse_go_duration)
    }

    /// `validationFrequency` as a duration (None when unset).
    pub fn validation_frequency_duration(&self) -> Option<Result<Duration, GoDurationError>> {
        self.validation_frequency.as_deref().map(parse_go_duration)
    }

    /// Whether writing to this location is allowed (unset means ReadWrite, as in Velero).
    pub fn is_read_only(&self) -> bool {
        self.access_mode == Some(BackupStorageLocationAccessMode::ReadOnly)
    }
}

/// Bucket and path inside the object store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorageLocation {
    /// Bucket name.
    pub bucket: String,
    /// Path inside the bucket under which Velero stores its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// CA bundle for TLS to the store, inline (deprecated in Velero in favour of caCertRef).
    #[serde(rename = "caCert", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "byte_string_schema")]
    pub ca_cert: Option<ByteString>,
    /// Secret key holding the CA bundle for TLS to the store.
    #[serde(rename = "caCertRef", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "secret_key_selector_schema")]
    pub ca_cert_ref: Option<SecretKeySelector>,
}

string_enum! {
    /// Whether a location may be written to.
    pub enum BackupStorageLocationAccessMode {
        ReadOnly = "ReadOnly",
        ReadWrite = "ReadWrite",
    }
}

string_enum! {
    /// Whether Velero could reach the location at its last validation.
    pub enum BackupStorageLocationPhase {
        Available = "Available",
        Unavailable = "Unavailable",
    }
}

/// What Velero observed about the location.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationStatus {
    /// Available or Unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupStorageLocationPhase>,
    /// Last time backups were synced from the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_time_schema")]
    pub last_synced_time: Option<Time>,
    /// Deprecated and unused by Velero; kept so objects round-trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_revision: Option<String>,
    /// Last time the store was validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_time_schema")]
    pub last_validation_time: Option<Time>,
    /// Detail about the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Deprecated copy of `spec.accessMode`; kept so objects round-trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<BackupStorageLocationAccessMode>,
}
