//! The CustomResourceDefinitions `ferry install` applies when Velero has not installed them.
//!
//! Each definition is assembled from the Rust types ([`structural_schema`]) plus the names and
//! `kubectl get` columns Velero uses, so the CRD and the types cannot drift apart, and the
//! `crds_velero_compat` tests check the result against Velero's own CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use schemars::JsonSchema;
use serde_json::{Value, json};

use super::schema::structural_schema;
use super::{
    BackupStorageLocation, BackupStorageLocationSpec, BackupStorageLocationStatus, DataDownload,
    DataDownloadSpec, DataDownloadStatus, DataUpload, DataUploadSpec, DataUploadStatus,
};

/// Label ferry puts on everything it installs, so uninstall and humans can find it.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "ferry");

/// One `kubectl get` column.
struct PrinterColumn {
    name: &'static str,
    json_path: &'static str,
    kind: &'static str,
    format: Option<&'static str>,
    priority: Option<i32>,
    description: &'static str,
}

impl PrinterColumn {
    fn to_json(&self) -> Value {
        let mut column = json!({
            "name": self.name,
            "jsonPath": self.json_path,
            "type": self.kind,
            "description": self.description,
        });
        if let Some(format) = self.format {
            column["format"] = json!(format);
        }
        if let Some(priority) = self.priority {
            column["priority"] = json!(priority);
        }
        column
    }
}

const fn column(
    name: &'static str,
    json_path: &'static str,
    kind: &'static str,
    description: &'static str,
) -> PrinterColumn {
    PrinterColumn {
        name,
        json_path,
        kind,
        format: None,
        priority: None,
        description,
    }
}

const fn int64_column(
    name: &'static str,
    json_path: &'static str,
    priority: Option<i32>,
    description: &'static str,
) -> PrinterColumn {
    PrinterColumn {
        name,
        json_path,
        kind: "integer",
        format: Some("int64"),
        priority,
        description,
    }
}

/// Everything that distinguishes one of the three CRDs.
struct CrdShape {
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    group: &'static str,
    version: &'static str,
    description: &'static str,
    spec: Value,
    status: Value,
    columns: Vec<PrinterColumn>,
}

fn build(shape: CrdShape) -> CustomResourceDefinition {
    let root = json!({
        "description": shape.description,
        "type": "object",
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this object (velero.io/...)."
            },
            "kind": {
                "type": "string",
                "description": "REST resource kind of this object."
            },
            "metadata": { "type": "object" },
            "spec": shape.spec,
            "status": shape.status,
        }
    });
    let mut names = json!({
        "kind": shape.kind,
        "listKind": format!("{}List", shape.kind),
        "plural": shape.plural,
        "singular": shape.singular,
    });
    if !shape.short_names.is_empty() {
        names["shortNames"] = json!(shape.short_names);
    }
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{}.{}", shape.plural, shape.group),
            "labels": { MANAGED_BY_LABEL.0: MANAGED_BY_LABEL.1 },
        },
        "spec": {
            "group": shape.group,
            "names": names,
            "scope": "Namespaced",
            "versions": [{
                "name": shape.version,
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": root },
                "additionalPrinterColumns":
                    shape.columns.iter().map(PrinterColumn::to_json).collect::<Vec<_>>(),
                // Velero's CRDs have no status subresource; matching it keeps status writes
                // working the same way whichever side installed the CRD.
                "subresources": {},
            }],
        },
    });
    serde_json::from_value(crd).expect("ferry's CRD JSON matches the CustomResourceDefinition type")
}

fn schema_of<T: JsonSchema>() -> Value {
    structural_schema::<T>()
}

/// `datadownloads.velero.io`.
pub fn data_download_crd() -> CustomResourceDefinition {
    build(CrdShape {
        kind: DataDownload::KIND,
        plural: DataDownload::PLURAL,
        singular: "datadownload",
        short_names: &[],
        group: DataDownload::GROUP,
        version: DataDownload::VERSION,
        description: "DataDownload asks a data mover to restore one snapshot into a volume.",
        spec: schema_of::<DataDownloadSpec>(),
        status: schema_of::<DataDownloadStatus>(),
        columns: vec![
            column(
                "Status",
                ".status.phase",
                "string",
                "Phase of the DataDownload",
            ),
            column(
                "Started",
                ".status.startTimestamp",
                "date",
                "Time since the restore started",
            ),
            int64_column(
                "Bytes Done",
                ".status.progress.bytesDone",
                None,
                "Bytes restored so far",
            ),
            int64_column(
                "Total Bytes",
                ".status.progress.totalBytes",
                None,
                "Bytes to restore",
            ),
            column(
                "Storage Location",
                ".spec.backupStorageLocation",
                "string",
                "BackupStorageLocation holding the backup",
            ),
            column(
                "Age",
                ".metadata.creationTimestamp",
                "date",
                "Time since creation",
            ),
            column(
                "Node",
                ".status.node",
                "string",
                "Node processing the DataDownload",
            ),
        ],
    })
}

/// `datauploads.velero.io`.
pub fn data_upload_crd() -> CustomResourceDefinition {
    build(CrdShape {
        kind: DataUpload::KIND,
        plural: DataUpload::PLURAL,
        singular: "dataupload",
        short_names: &[],
        group: DataUpload::GROUP,
        version: DataUpload::VERSION,
        description: "DataUpload asks a data mover to back up one volume snapshot.",
        spec: schema_of::<DataUploadSpec>(),
        status: schema_of::<DataUploadStatus>(),
        columns: vec![
            column(
                "Status",
                ".status.phase",
                "string",
                "Phase of the DataUpload",
            ),
            column(
                "Started",
                ".status.startTimestamp",
                "date",
                "Time since the backup started",
            ),
            int64_column(
                "Bytes Done",
                ".status.progress.bytesDone",
                None,
                "Bytes backed up so far",
            ),
            int64_column(
                "Total Bytes",
                ".status.progress.totalBytes",
                None,
                "Bytes to back up",
            ),
            int64_column(
                "Incremental Bytes",
                ".status.incrementalBytes",
                Some(10),
                "Bytes new since the previous backup",
            ),
            column(
                "Storage Location",
                ".spec.backupStorageLocation",
                "string",
                "BackupStorageLocation receiving the backup",
            ),
            column(
                "Age",
                ".metadata.creationTimestamp",
                "date",
                "Time since creation",
            ),
            column(
                "Node",
                ".status.node",
                "string",
                "Node processing the DataUpload",
            ),
        ],
    })
}

/// `backupstoragelocations.velero.io` (short name `bsl`).
pub fn backup_storage_location_crd() -> CustomResourceDefinition {
    build(CrdShape {
        kind: BackupStorageLocation::KIND,
        plural: BackupStorageLocation::PLURAL,
        singular: "backupstoragelocation",
        short_names: &["bsl"],
        group: BackupStorageLocation::GROUP,
        version: BackupStorageLocation::VERSION,
        description: "BackupStorageLocation is an object store where backups are kept.",
        spec: schema_of::<BackupStorageLocationSpec>(),
        status: schema_of::<BackupStorageLocationStatus>(),
        columns: vec![
            column(
                "Phase",
                ".status.phase",
                "string",
                "Available or Unavailable",
            ),
            column(
                "Last Validated",
                ".status.lastValidationTime",
                "date",
                "Time since the location was last validated",
            ),
            column(
                "Age",
                ".metadata.creationTimestamp",
                "date",
                "Time since creation",
            ),
            column(
                "Default",
                ".spec.default",
                "boolean",
                "Whether this is the default location",
            ),
        ],
    })
}

/// The three CRDs ferry needs, in the order install applies them.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        data_download_crd(),
        data_upload_crd(),
        backup_storage_location_crd(),
    ]
}
