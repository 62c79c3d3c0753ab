//! The DataDownload controller: a pass runs whenever a watched object changes (see
//! [`crate::wakeups`]) and every `resync_interval`; it observes the DataDownloads of its data
//! mover in its namespace, the nodes and the restore objects (from the watch stores), and
//! moves each DataDownload one step:
//! New → Accepted → Prepared → InProgress → Completed | Failed, or Canceling → Canceled.
//! Each step is decided from what the cluster shows (never from memory), so a restarted
//! controller continues where the last one stopped and never starts a data mover twice (the
//! restore pod has the DataDownload's name and is created only while Accepted).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_config::{NodeAgentConfig, Strictness, from_configmap_data};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::sync::watch;

use crate::cluster::{KubeCluster, RestoreCluster};
use crate::crds::{DataDownload, DataDownloadPhase, DataUpload};
use crate::data_mover_exit::data_mover_failure;
use crate::data_mover_exit::parse_termination_message;
use crate::expose::{
    ExposeState, Movement, PodSettings, RebindState, RestoreExposer, TargetState, check_target,
    hostname_of, restore_pod_for, restore_pvc_for, termination_message, tolerations_for,
};
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::placement::{NodeInfo, PlacementInput, TopologyTerm, choose_node};
use crate::queue::{QueuedRestore, admit_new, slots_in_use};
use crate::wakeups::{RecordedApi, Waker, WatchScope, Watches};
use ferry_text::human_bytes;

/// Set on a DataDownload once its data mover finished successfully: rebind may proceed even
/// after the restore pod is gone.
pub const DATA_MOVED_ANNOTATION: &str = "ferry.io/data-moved";

/// Held on a DataDownload from acceptance until it ends or its restore objects are removed:
/// deleting an unfinished DataDownload (`kubectl delete datadownload`) cancels it and cleans
/// up first, as Velero's finalizer does (owner references alone would leave a PV rebind had
/// marked).
pub const CLEANUP_FINALIZER: &str = "ferry.io/data-download-cleanup";

mod downloads;
mod effects;
mod intent;
mod runtime;
mod uploads;
mod view;
use effects::*;
pub use runtime::{
    ControllerError, ControllerHandle, ControllerOptions, run_controller, start_controller,
};
pub use uploads::{SOURCE_CONTENT_ANNOTATION, UPLOAD_FINALIZER, UPLOADED_ANNOTATION};
use view::*;

struct Controller {
    options: ControllerOptions,
    config: NodeAgentConfig,
    metrics: Arc<Metrics>,
    exposer: RestoreExposer<KubeCluster>,
    downloads: RecordedApi<DataDownload>,
    uploads: RecordedApi<DataUpload>,
    /// Set by a step that waits for something no watch reports (a VolumeSnapshot, a
    /// deletion): the next pass comes after a second instead of the resync interval.
    poll_soon: std::sync::atomic::AtomicBool,
    leader: LeaderElector,
    watches: Arc<Watches>,
    /// kube-runtime's recorder: events.k8s.io/v1 Events, a repeated one counted in a series.
    recorder: Recorder,
    /// resourceVersion of the ConfigMap `config` was read from (None: read at startup).
    config_version: Option<String>,
    /// When the lease was last renewed; this replica acts only within `renew_deadline` of it.
    renewed_at: Option<Instant>,
    renew_deadline: Duration,
    started: Instant,
}

impl Controller {
    fn new(options: ControllerOptions, config: NodeAgentConfig, metrics: Arc<Metrics>) -> Self {
        let client = options.client.clone();
        let scope = WatchScope {
            namespace: options.namespace.clone(),
            node_agent_configmap: options.node_agent_configmap.clone(),
            data_mover_name: options.data_mover_name.clone(),
        };
        let watches = Arc::new(Watches::start(
            client.clone(),
            scope,
            Waker::new(metrics.clone()),
        ));
        Self {
            exposer: RestoreExposer::new(
                KubeCluster::cached(client.clone(), watches.clone()),
                &options.namespace,
            ),
            downloads: RecordedApi::new(
                Api::namespaced(client.clone(), &options.namespace),
                watches.clone(),
                "datadownload",
            ),
            uploads: RecordedApi::new(
                Api::namespaced(client.clone(), &options.namespace),
                watches.clone(),
                "dataupload",
            ),
            poll_soon: std::sync::atomic::AtomicBool::new(false),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: format!("{}-controller", options.data_mover_name),
                    instance: Some(options.identity.clone()),
                },
            ),
            watches,
            config_version: None,
            renewed_at: None,
            // As client-go: stop acting well before the lease could expire for others.
            renew_deadline: options.lease_duration * 2 / 3,
            started: Instant::now(),
            leader: LeaderElector::new(
                client,
                &options.namespace,
                &options.lease_name,
                &options.identity,
                options.lease_duration,
            ),
            options,
            config,
            metrics,
        }
    }

    /// One reconcile pass over every DataDownload of this data mover.
    async fn pass(&mut self) -> Result<(), kube::Error> {
        self.poll_soon
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.refresh_config().await;
        let all = self.observe_downloads().await?;
        let mut ours: Vec<Observed> = all
            .into_iter()
            .filter(|dd| dd.spec.is_for_data_mover(&self.options.data_mover_name))
            .map(|dd| Observed {
                name: dd.metadata.name.clone().unwrap_or_default(),
                dd,
            })
            .collect();
        ours.sort_by(|a, b| {
            created(&a.dd)
                .cmp(&created(&b.dd))
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut phases: BTreeMap<String, u64> = BTreeMap::new();
        for o in &ours {
            *phases.entry(o.dd.phase().as_str().to_string()).or_default() += 1;
        }
        self.metrics.set_phases(phases);

        let queue: Vec<QueuedRestore> = ours.iter().map(queued).collect();
        let admitted = admit_new(&queue, self.config.prepare_queue_length());
        let mut slots = slots_in_use(&queue);
        let uploads = self.observe_uploads().await;
        Self::count_upload_slots(&uploads, &mut slots);
        let node_list = self.observe_nodes().await?;
        let node_infos: Vec<NodeInfo> = node_list
            .iter()
            .map(|n| NodeInfo::from_node(n, &self.config))
            .collect();

        for o in &ours {
            // A replica that lost the lease mid-pass stops writing at once.
            if !self.leading() {
                break;
            }
            if let Err(err) = self.step(o, &admitted, &mut slots, &node_infos).await {
                err.report("DataDownload", &o.name);
            }
        }
        self.upload_steps(&uploads, &mut slots, &node_infos).await;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Op(#[from] crate::cluster::OpError),
    #[error(transparent)]
    Expose(#[from] crate::expose::ExposeError),
}

impl StepError {
    /// Logs a step's error on `kind` `name`; the next pass retries either way. A conditional
    /// write refused because the object changed since it was observed (409 Conflict) is no
    /// failure: the change wakes that pass.
    fn report(&self, kind: &str, name: &str) {
        if matches!(self, StepError::Kube(kube::Error::Api(status)) if status.code == 409) {
            tracing::debug!(
                kind,
                name,
                "changed since observed; the next pass steps it again"
            );
        } else {
            tracing::warn!(kind, name, error = %self, "step failed; retrying next pass");
        }
    }
}
