//! ferry's controller, run in this process against the simulated cluster, and the CRDs it
//! needs installed.

use std::time::Duration;

use anyhow::Context;
use ferry_controller::ControllerOptions;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};

use super::{kube_ops, objects};

/// A running in-process controller.
pub struct Controller {
    handle: ferry_controller::ControllerHandle,
    description: String,
}

impl Controller {
    pub fn description(&self) -> &str {
        &self.description
    }

    pub async fn stop(self) {
        self.handle.stop().await;
    }
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

/// Starts the DataDownload controller for the demo's namespace and node-agent ConfigMap (which
/// must exist). Its restore pods use the demo's image, which kubesim runs as this binary.
pub async fn start(client: &Client, image: &str) -> anyhow::Result<Controller> {
    let mut options = ControllerOptions::new(
        client.clone(),
        objects::FERRY_NAMESPACE,
        objects::NODE_AGENT_CONFIGMAP,
    );
    options.image = format!("{image}:demo");
    options.identity = "ferry-demo-controller".into();
    let handle = ferry_controller::start_controller(options)
        .await
        .context("starting ferry's DataDownload controller")?;
    Ok(Controller {
        handle,
        description: format!(
            "DataDownload controller in-process (namespace `{}`, ConfigMap `{}`)",
            objects::FERRY_NAMESPACE,
            objects::NODE_AGENT_CONFIGMAP
        ),
    })
}
