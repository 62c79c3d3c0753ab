//! ferry's controller, run in this process against the simulated cluster, and the CRDs it
//! needs installed.

use std::path::Path;

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};

use super::{kube_ops, objects};

/// A running in-process controller.
pub struct ControllerHandle {
    description: String,
}

impl ControllerHandle {
    pub fn description(&self) -> &str {
        &self.description
    }

    pub async fn stop(self) {}
}

/// Installs the CRDs ferry and Velero share (DataDownload, DataUpload, BackupStorageLocation)
/// and waits until the API server serves them.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ferry_controller::crds::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        kube_ops::apply(&crds, &crd)
            .await
            .with_context(|| format!("installing CustomResourceDefinition {name}"))?;
    }
    // Served once a list answers.
    let downloads: Api<DynamicObject> =
        Api::all_with(client.clone(), &objects::data_download_resource());
    kube_ops::wait_for(
        "the DataDownload CRD to be served",
        Duration::from_secs(30),
        || {
            let downloads = downloads.clone();
            async move {
                Ok(downloads
                    .list(&ListParams::default().limit(1))
                    .await
                    .ok()
                    .map(|_| ()))
            }
        },
    )
    .await
}

/// Starts the DataDownload controller for the demo's namespace and ConfigMap.
pub async fn start(_client: &Client, _exe: &Path) -> anyhow::Result<ControllerHandle> {
    anyhow::bail!("ferry's controller cannot run in-process yet")
}
