//! The CRD types as a kube client uses them: URLs, apiVersion/kind on the wire, phases, and
//! the helpers on top of the raw fields.

use std::time::Duration;

use ferry_controller::crds::{
    BackupStorageLocation, BackupStorageLocationSpec, DataDownload, DataDownloadPhase,
    DataDownloadSpec, DataUpload, DataUploadPhase, DataUploadSpec, GoDurationError,
    ObjectStorageLocation,
};
use kube::Resource;
use serde_json::json;

#[test]
fn kube_resource_urls_match_velero_groups_and_versions() {
    assert_eq!(
        DataDownload::url_path(&(), Some("velero")),
        "/apis/velero.io/v2alpha1/namespaces/velero/datadownloads"
    );
    assert_eq!(
        DataUpload::url_path(&(), Some("velero")),
        "/apis/velero.io/v2alpha1/namespaces/velero/datauploads"
    );
    assert_eq!(
        BackupStorageLocation::url_path(&(), Some("velero")),
        "/apis/velero.io/v1/namespaces/velero/backupstoragelocations"
    );
    assert_eq!(DataDownload::CRD_NAME, "datadownloads.velero.io");
    assert_eq!(BackupStorageLocation::api_version(&()), "velero.io/v1");
}

#[test]
fn objects_serialize_with_api_version_and_kind() {
    let mut dd = DataDownload::new("dd-1", DataDownloadSpec::default());
    dd.metadata.namespace = Some("velero".into());
    let value = serde_json::to_value(&dd).unwrap();
    assert_eq!(value["apiVersion"], "velero.io/v2alpha1");
    assert_eq!(value["kind"], "DataDownload");
    assert_eq!(
        value["metadata"],
        json!({"name": "dd-1", "namespace": "velero"})
    );
    assert!(
        value.get("status").is_none(),
        "no status until someone reports one"
    );
    let du = serde_json::to_value(DataUpload::new("du-1", DataUploadSpec::default())).unwrap();
    assert_eq!(du["kind"], "DataUpload");
}

#[test]
fn phases_default_to_new_and_know_which_are_final() {
    let dd = DataDownload::new("dd", DataDownloadSpec::default());
    assert_eq!(dd.phase(), DataDownloadPhase::New);
    let terminal: Vec<&str> = DataDownloadPhase::KNOWN_VALUES
        .iter()
        .filter(|p| DataDownloadPhase::from(**p).is_terminal())
        .copied()
        .collect();
    assert_eq!(terminal, ["Canceled", "Completed", "Failed"]);
    assert!(DataUploadPhase::Completed.is_terminal());
    assert!(!DataUploadPhase::InProgress.is_terminal());
    assert!(!DataDownloadPhase::Unknown("Paused".into()).is_terminal());
}

#[test]
fn operation_timeout_parses_and_a_bad_one_says_why() {
    let mut spec = DataDownloadSpec {
        operation_timeout: "4h0m0s".into(),
        ..DataDownloadSpec::default()
    };
    assert_eq!(
        spec.operation_timeout_duration(),
        Ok(Duration::from_secs(4 * 3600))
    );
    spec.operation_timeout = "10 minutes".into();
    assert!(matches!(
        spec.operation_timeout_duration(),
        Err(GoDurationError::UnknownUnit { .. })
    ));
}

#[test]
fn a_credential_without_name_gets_the_default_velero_schema_gives_it() {
    // Velero's schema defaults `credential.name` to "", so the API server never hands out a
    // credential without one; ferry writes that same default.
    let bsl: BackupStorageLocation = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1",
        "kind": "BackupStorageLocation",
        "metadata": {"name": "b"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "x"}, "credential": {"key": "cloud"}}
    }))
    .unwrap();
    let back = serde_json::to_value(&bsl).unwrap();
    assert_eq!(
        back["spec"]["credential"],
        json!({"key": "cloud", "name": ""})
    );
}

#[test]
fn access_mode_defaults_to_read_write() {
    let spec = BackupStorageLocationSpec {
        provider: "aws".into(),
        object_storage: ObjectStorageLocation {
            bucket: "b".into(),
            ..ObjectStorageLocation::default()
        },
        ..BackupStorageLocationSpec::default()
    };
    assert!(!spec.is_read_only());
    let read_only: BackupStorageLocationSpec = serde_json::from_value(json!({
        "provider": "aws", "objectStorage": {"bucket": "b"}, "accessMode": "ReadOnly"
    }))
    .unwrap();
    assert!(read_only.is_read_only());
}
