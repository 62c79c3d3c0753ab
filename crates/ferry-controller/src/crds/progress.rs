//! Progress of a data movement, shared by DataUpload and DataDownload (`status.progress`).

use serde::{Deserialize, Serialize};

/// Bytes moved so far out of the total; `kubectl get` shows both as printer columns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataMoveOperationProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<i64>,
}
