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

mod uploads;
pub use uploads::{SOURCE_CONTENT_ANNOTATION, UPLOAD_FINALIZER, UPLOADED_ANNOTATION};

/// How the controller runs.
#[derive(Clone)]
pub struct ControllerOptions {
    pub client: kube::Client,
    /// Namespace of the DataDownloads, restore PVCs and restore pods.
    pub namespace: String,
    /// The node-agent ConfigMap in `namespace` (missing: startup error).
    pub node_agent_configmap: String,
    /// `spec.datamover` value this controller handles.
    pub data_mover_name: String,
    /// Image of the restore pods (ferry's own).
    pub image: String,
    /// Name of this replica (lease holder, `acceptedByNode`).
    pub identity: String,
    pub metrics_address: Option<SocketAddr>,
    /// A pass also runs this long after the last one when nothing changed: a safety net for
    /// a missed watch event, and what makes time-based steps (timeouts) fire.
    pub resync_interval: Duration,
    /// How long a restore pod may take from its creation until it runs (and how long no
    /// node at all may be eligible).
    pub expose_timeout: Duration,
    /// How long an accepted restore may wait before it is exposed: for its target PVC to be
    /// created and, with WaitForFirstConsumer, consumed (Velero's `--data-mover-prepare-timeout`,
    /// 30 minutes by default).
    pub prepare_timeout: Duration,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub service_account: Option<String>,
    /// Log filter given to the data mover pods.
    pub data_mover_log: Option<String>,
    /// How long after a failed forget pod (a deleted backup's snapshot) the next one starts.
    pub forget_retry: Duration,
}

impl ControllerOptions {
    /// Defaults for everything but the client, namespace and ConfigMap.
    pub fn new(client: kube::Client, namespace: &str, node_agent_configmap: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            node_agent_configmap: node_agent_configmap.to_string(),
            data_mover_name: "ferry".to_string(),
            image: crate::install::DEFAULT_IMAGE.to_string(),
            identity: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("ferry-controller-{}", std::process::id())),
            metrics_address: None,
            resync_interval: Duration::from_secs(10),
            expose_timeout: Duration::from_secs(600),
            prepare_timeout: Duration::from_secs(30 * 60),
            lease_name: "ferry-controller".to_string(),
            lease_duration: Duration::from_secs(15),
            service_account: None,
            data_mover_log: None,
            forget_retry: crate::backup_deletion::FORGET_RETRY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "node-agent ConfigMap {namespace}/{name} not found: create it (kubectl create configmap {name} -n {namespace} --from-file=node-agent-config.json) or fix --node-agent-configmap"
    )]
    ConfigMapMissing { namespace: String, name: String },
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the API server: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot serve metrics on {address}: {err}")]
    Metrics {
        address: SocketAddr,
        err: std::io::Error,
    },
}

/// A controller running in this process.
pub struct ControllerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The metrics server, stopped with the controller (also when it is killed).
    server: Option<tokio::task::AbortHandle>,
    pub metrics: Arc<Metrics>,
    /// Where metrics are served, if they are.
    pub metrics_address: Option<SocketAddr>,
}

impl ControllerHandle {
    /// Stops after the current pass (releasing the lease).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once, as a crash would: no lease release, the pass is cut short.
    pub fn kill(self) {
        self.task.abort();
        if let Some(server) = self.server {
            server.abort();
        }
    }
}

/// Reads the ConfigMap now (errors if missing or invalid), then runs the controller in the
/// background.
pub async fn start_controller(
    options: ControllerOptions,
) -> Result<ControllerHandle, ControllerError> {
    let config = load_config(&options).await?;
    let metrics = Arc::new(Metrics::default());
    let mut metrics_address = None;
    let mut server = None;
    if let Some(address) = options.metrics_address {
        let (bound, task) = crate::metrics::serve(address, metrics.clone())
            .await
            .map_err(|err| ControllerError::Metrics { address, err })?;
        metrics_address = Some(bound);
        server = Some(task);
    }
    let (stop, stopped) = watch::channel(false);
    let controller = Controller::new(options, config, metrics.clone());
    let server_abort = server.as_ref().map(|s| s.abort_handle());
    let task = tokio::spawn(async move {
        controller.run(stopped).await;
        if let Some(server) = server {
            server.abort();
        }
    });
    Ok(ControllerHandle {
        stop,
        task,
        server: server_abort,
        metrics,
        metrics_address,
    })
}

/// Runs the controller until `shutdown` resolves.
pub async fn run_controller(
    options: ControllerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ControllerError> {
    let handle = start_controller(options).await?;
    shutdown.await;
    handle.stop().await;
    Ok(())
}

async fn load_config(options: &ControllerOptions) -> Result<NodeAgentConfig, ControllerError> {
    let maps: Api<ConfigMap> = Api::namespaced(options.client.clone(), &options.namespace);
    let map = maps
        .get_opt(&options.node_agent_configmap)
        .await?
        .ok_or_else(|| ControllerError::ConfigMapMissing {
            namespace: options.namespace.clone(),
            name: options.node_agent_configmap.clone(),
        })?;
    let mut config = parse_config(options, map)?;
    drop_missing_priority_class(options, &mut config).await;
    Ok(config)
}

/// A `priorityClassName` naming no PriorityClass is dropped with a warning, as Velero's
/// node-agent does at start: kept, it would make the API server refuse every restore pod.
async fn drop_missing_priority_class(options: &ControllerOptions, config: &mut NodeAgentConfig) {
    let Some(name) = config.priority_class_name.clone() else {
        return;
    };
    let classes: Api<PriorityClass> = Api::all(options.client.clone());
    match classes.get_opt(&name).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            tracing::warn!(
                configmap = %options.node_agent_configmap,
                priority_class = %name,
                "priorityClassName names no PriorityClass: restore pods get none"
            );
            config.priority_class_name = None;
        }
        // Not known to be missing: keep it (the API server judges each pod).
        Err(err) => {
            tracing::warn!(priority_class = %name, error = %err, "cannot check priorityClassName")
        }
    }
}

/// The node-agent configuration in `map` (unknown fields are logged as warnings).
fn parse_config(
    options: &ControllerOptions,
    map: ConfigMap,
) -> Result<NodeAgentConfig, ControllerError> {
    let loaded = from_configmap_data(
        &options.node_agent_configmap,
        &map.data.unwrap_or_default(),
        Strictness::Lenient,
    )
    .map_err(|e| ControllerError::Config(e.to_string()))?;
    for warning in &loaded.warnings {
        tracing::warn!(configmap = %options.node_agent_configmap, %warning, "node-agent configuration");
    }
    Ok(loaded.config)
}

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

/// One DataDownload as a pass sees it.
struct Observed {
    dd: DataDownload,
    name: String,
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

    /// Whether this replica may act: it renewed the lease within the renew deadline.
    fn leading(&self) -> bool {
        self.renewed_at
            .is_some_and(|t| t.elapsed() < self.renew_deadline)
    }

    /// Renews (or tries to take) the lease, every `lease_duration / 5` like client-go's retry
    /// period; passes run between renewals whenever a watched change or the resync asks.
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let lease_retry = (self.options.lease_duration / 5).max(Duration::from_millis(100));
        let mut next_lease = tokio::time::Instant::now();
        let mut next_resync = tokio::time::Instant::now() + self.options.resync_interval;
        // Why a pass is due (None: nothing asked for one since the last).
        let mut due: Option<&'static str> = None;
        loop {
            if *stopped.borrow() {
                break;
            }
            if tokio::time::Instant::now() >= next_lease {
                let was_leading = self.leading();
                match self.leader.try_lead().await {
                    Ok(true) => {
                        self.renewed_at = Some(Instant::now());
                        if !was_leading {
                            tracing::info!(identity = %self.options.identity, "leading");
                            due = due.or(Some("leader"));
                        }
                    }
                    Ok(false) => self.renewed_at = None,
                    // Keep acting until the renew deadline passes; the next try may work.
                    Err(err) => tracing::warn!(error = %err, "cannot renew the leader lease"),
                }
                next_lease = tokio::time::Instant::now() + lease_retry;
            }
            self.metrics.set_leader(self.leading());
            // Until every watch has its first list, a pass would read from the API server;
            // wait for that, but not forever (a watch that cannot list is logged by it).
            let stores_usable =
                self.watches.synced() || self.started.elapsed() > self.options.resync_interval;
            if self.leading()
                && stores_usable
                && let Some(trigger) = due.take()
            {
                self.metrics.pass(trigger);
                if let Err(err) = self.pass().await {
                    tracing::warn!(error = %err, "reconcile pass failed");
                } else {
                    self.metrics.set_ready(true);
                }
                next_resync = tokio::time::Instant::now() + self.options.resync_interval;
            }
            let poll = self.poll_soon.load(std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                _ = self.watches.waker.woken() => due = due.or(Some("watch")),
                _ = tokio::time::sleep(Duration::from_secs(1)), if poll => due = due.or(Some("poll")),
                _ = tokio::time::sleep_until(next_resync) => {
                    due = due.or(Some("resync"));
                    next_resync = tokio::time::Instant::now() + self.options.resync_interval;
                }
                _ = tokio::time::sleep_until(next_lease) => {}
                _ = stopped.changed() => {}
            }
        }
        self.leader.release().await;
    }

    /// The node-agent configuration as the ConfigMap store shows it; a changed ConfigMap
    /// applies to restores not yet exposed. An invalid or missing one keeps the last good one.
    async fn refresh_config(&mut self) {
        if !self.watches.synced() {
            match load_config(&self.options).await {
                Ok(config) => self.config = config,
                Err(err) => {
                    tracing::warn!(error = %err, "keeping the previous node-agent configuration")
                }
            }
            return;
        }
        let key =
            ObjectRef::new(&self.options.node_agent_configmap).within(&self.options.namespace);
        let map = self.watches.configmaps.get(&key);
        let version = map
            .as_ref()
            .map(|m| m.metadata.resource_version.clone().unwrap_or_default())
            .unwrap_or_else(|| "missing".to_string());
        if self.config_version.as_deref() == Some(version.as_str()) {
            return;
        }
        self.config_version = Some(version);
        match map {
            None => tracing::warn!(
                configmap = %self.options.node_agent_configmap,
                "node-agent ConfigMap is gone: keeping the previous configuration"
            ),
            Some(map) => match parse_config(&self.options, (*map).clone()) {
                Ok(mut config) => {
                    drop_missing_priority_class(&self.options, &mut config).await;
                    self.config = config
                }
                Err(err) => {
                    tracing::warn!(error = %err, "keeping the previous node-agent configuration")
                }
            },
        }
    }

    /// The DataDownloads in the namespace: from the store, except those the store shows older
    /// than this controller's last write to them (read from the API server instead).
    async fn observe_downloads(&self) -> Result<Vec<DataDownload>, kube::Error> {
        self.observe(
            self.watches.synced(),
            &self.watches.downloads,
            &self.downloads,
            "datadownload",
        )
        .await
    }

    /// The objects of `api` in the namespace: from `store` once `synced`, except those the
    /// store shows older than this controller's last write to them (read from the API server
    /// instead); before that, listed from the API server.
    async fn observe<K>(
        &self,
        synced: bool,
        store: &kube::runtime::reflector::Store<K>,
        api: &RecordedApi<K>,
        kind: &'static str,
    ) -> Result<Vec<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        if !synced {
            return Ok(api.list(&ListParams::default()).await?.items);
        }
        let mut out = Vec::new();
        for obj in store.state() {
            let name = obj.meta().name.clone().unwrap_or_default();
            let current = self.watches.own_writes.caught_up(
                kind,
                &self.options.namespace,
                &name,
                Some(obj.as_ref()),
            );
            if current {
                out.push((*obj).clone());
            } else if let Some(fresh) = api.get_opt(&name).await? {
                out.push(fresh);
            }
        }
        Ok(out)
    }

    async fn observe_nodes(&self) -> Result<Vec<Node>, kube::Error> {
        if self.watches.synced() {
            return Ok(self
                .watches
                .nodes
                .state()
                .iter()
                .map(|n| (**n).clone())
                .collect());
        }
        let nodes: Api<Node> = Api::all(self.options.client.clone());
        Ok(nodes.list(&ListParams::default()).await?.items)
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

    async fn step(
        &self,
        o: &Observed,
        admitted: &[String],
        slots: &mut BTreeMap<String, usize>,
        nodes: &[NodeInfo],
    ) -> Result<(), StepError> {
        let phase = o.dd.phase();
        if o.dd.metadata.deletion_timestamp.is_some() {
            return self.deleted(o).await;
        }
        if phase.is_terminal() {
            return Ok(());
        }
        if phase != DataDownloadPhase::New && !has_finalizer(&o.dd) {
            // Accepted by a ferry that did not set it yet.
            self.patch_meta(&o.name, json!({ "finalizers": with_finalizer(&o.dd) }))
                .await?;
        }
        // Once the data has moved, rebind finishes: a cancel then would throw away a complete
        // restore and undoing a half-done rebind risks the volume.
        if o.dd.spec.cancel == Some(true)
            && !(phase == DataDownloadPhase::InProgress && data_moved(&o.dd))
        {
            return self.cancel(o).await;
        }
        match phase {
            DataDownloadPhase::New => {
                if admitted.contains(&o.name) {
                    // Conditional on the observed resourceVersion: the finalizer list is
                    // written whole, and a DataDownload changed since (canceled, or another
                    // finalizer added) is stepped again from what it is now.
                    let patch = json!({
                        "metadata": {
                            "finalizers": with_finalizer(&o.dd),
                            "resourceVersion": o.dd.metadata.resource_version,
                        },
                        "status": self.accepted_status(),
                    });
                    self.downloads
                        .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    self.event(
                        &o.dd,
                        "Normal",
                        "Accepted",
                        &format!("accepted by {}", self.options.identity),
                    )
                    .await;
                }
                Ok(())
            }
            DataDownloadPhase::Accepted => self.accepted(o, slots, nodes).await,
            DataDownloadPhase::Prepared => self.prepared(o).await,
            DataDownloadPhase::InProgress => self.in_progress(o).await,
            DataDownloadPhase::Canceling => self.cancel(o).await,
            _ => Ok(()),
        }
    }

    /// The status of an object this replica accepts (DataDownload or DataUpload).
    fn accepted_status(&self) -> serde_json::Value {
        json!({
            "phase": "Accepted",
            "acceptedByNode": self.options.identity,
            "acceptedTimestamp": now(),
            "message": null,
        })
    }

    /// What placement weighs for a volume of StorageClass `class_name`: the nodes, the slots
    /// taken (restores and backups alike), `loadAffinity` for the class and its
    /// `allowedTopologies`.
    fn placement_input(
        &self,
        nodes: &[NodeInfo],
        slots: &BTreeMap<String, usize>,
        selected_node: Option<String>,
        class_name: Option<&str>,
        class: Option<&StorageClass>,
    ) -> PlacementInput {
        PlacementInput {
            nodes: nodes.to_vec(),
            in_flight: slots.clone(),
            selected_node,
            load_affinity: self
                .config
                .load_affinity_for_storage_class(class_name)
                .map(|a| a.node_selector.clone()),
            allowed_topologies: class
                .and_then(|c| c.allowed_topologies.as_ref())
                .map(|terms| terms.iter().map(TopologyTerm::from_k8s).collect())
                .unwrap_or_default(),
        }
    }

    async fn accepted(
        &self,
        o: &Observed,
        slots: &mut BTreeMap<String, usize>,
        nodes: &[NodeInfo],
    ) -> Result<(), StepError> {
        if let Some(problem) = crate::spec_checks::data_download_problem(&o.name, &o.dd.spec) {
            return self.fail(o, &format!("refused: {problem}")).await;
        }
        let status = o.dd.status.clone().unwrap_or_default();
        let ns = &self.options.namespace;
        let spec = &o.dd.spec.target_volume;
        let target_id = format!("{}/{}", spec.namespace, spec.pvc);
        let cluster = &self.exposer.cluster;
        let waited = since(status.accepted_timestamp.as_ref());

        let Some(node) = status.node.clone() else {
            // Not exposed yet: is the target ready, and where does the restore go?
            let target = self.target_pvc(o).await?;
            let prepare_limit = self.options.prepare_timeout;
            if target.is_none() {
                // Velero's restore creates the DataDownload before the target PVC: wait for it.
                if waited > prepare_limit {
                    return self
                        .fail(o, &format!(
                            "timed out after {} waiting for target PVC {target_id} to be created (the prepare timeout, --prepare-timeout)",
                            human(prepare_limit)
                        ))
                        .await;
                }
                return self
                    .set_message(
                        o,
                        &format!("waiting for target PVC {target_id} to be created"),
                    )
                    .await;
            }
            let class_name = target
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.storage_class_name.clone());
            let class = match &class_name {
                Some(c) => cluster.get_storage_class(c).await?,
                None => None,
            };
            let ignore = self.config.ignore_delay_binding();
            let state = match check_target(&target_id, target.as_ref(), class.as_ref(), ignore) {
                Ok(s) => s,
                Err(err) => return self.fail(o, &err.to_string()).await,
            };
            let selected_node = match state {
                TargetState::WaitingForConsumer => {
                    if waited > prepare_limit {
                        return self
                            .fail(o, &format!(
                                "timed out after {} (the prepare timeout, --prepare-timeout) waiting for target PVC {target_id} to be consumed: no pod using it was scheduled (StorageClass {} is WaitForFirstConsumer; set restorePVC.ignoreDelayBinding to restore without a workload)",
                                human(prepare_limit),
                                class_name.unwrap_or_default()
                            ))
                            .await;
                    }
                    return self
                        .set_message(o, &format!("waiting for target PVC {target_id} to be consumed by a scheduled pod (WaitForFirstConsumer)"))
                        .await;
                }
                TargetState::Ready { selected_node } => selected_node,
            };
            let input = self.placement_input(
                nodes,
                slots,
                selected_node,
                class_name.as_deref(),
                class.as_ref(),
            );
            let choice = match choose_node(&input) {
                Ok(c) => c,
                Err(err) => {
                    // Waiting for a free slot is queueing, not a failure to expose.
                    if !err.is_wait() && waited > self.options.expose_timeout {
                        return self
                            .fail(
                                o,
                                &format!(
                                    "timed out after {} choosing a node: {err}",
                                    human(self.options.expose_timeout)
                                ),
                            )
                            .await;
                    }
                    return self
                        .set_message(o, &format!("waiting for a node: {err}"))
                        .await;
                }
            };
            *slots.entry(choice.node.clone()).or_default() += 1;
            // Conditional, as the acceptance: the slot counted for this node must be the
            // only node choice made for what was observed.
            let patch = json!({
                "metadata": { "resourceVersion": o.dd.metadata.resource_version },
                "status": { "node": choice.node, "message": null },
            });
            self.downloads
                .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            self.event(
                &o.dd,
                "Normal",
                "NodeChosen",
                &format!("restore runs on node {} ({:?})", choice.node, choice.reason),
            )
            .await;
            return self.expose(o, &choice.node).await;
        };

        // Exposed (or being exposed) on `node`.
        let pod = match self.exposer.peek_exposed(&o.name).await {
            Ok(p) => p,
            // A transient API error is retried on the next pass, never a failure.
            Err(err) if err.is_transient() => return Err(err.into()),
            Err(err) => return self.fail(o, &err.to_string()).await,
        };
        match pod {
            None => self.expose(o, &node).await,
            Some(pod) => {
                let phase = pod_phase(&pod);
                if phase == "Running" || phase == "Succeeded" {
                    self.patch_status(&o.name, json!({ "phase": "Prepared" }))
                        .await?;
                    self.event(
                        &o.dd,
                        "Normal",
                        "Prepared",
                        &format!("restore pod {ns}/{} is running on node {node}", o.name),
                    )
                    .await;
                    Ok(())
                } else if since(self.exposing_since(o, &pod).await?.as_ref())
                    > self.options.expose_timeout
                {
                    let why = self.diagnose(Movement::Restore, &o.name, Some(&pod)).await;
                    self.fail(
                        o,
                        &format!(
                            "timed out after {} exposing the restore: {why}",
                            human(self.options.expose_timeout)
                        ),
                    )
                    .await
                } else {
                    Ok(())
                }
            }
        }
    }

    /// When exposing began: the restore PVC's creation (its pod follows once a provisioner
    /// made the volume), else the pod's. Time spent waiting for a workload or a slot before
    /// exposing is not exposing.
    async fn exposing_since(&self, o: &Observed, pod: &Pod) -> Result<Option<Time>, StepError> {
        let pvc = self
            .exposer
            .cluster
            .get_pvc(&self.options.namespace, &o.name)
            .await?;
        Ok(pvc
            .and_then(|p| p.metadata.creation_timestamp)
            .or_else(|| pod.metadata.creation_timestamp.clone()))
    }

    /// The target PVC. Someone else creates it, so a store may not show it yet: its absence,
    /// which fails the restore, is confirmed with the API server.
    async fn target_pvc(&self, o: &Observed) -> Result<Option<PersistentVolumeClaim>, StepError> {
        let spec = &o.dd.spec.target_volume;
        if let Some(pvc) = self
            .exposer
            .cluster
            .get_pvc(&spec.namespace, &spec.pvc)
            .await?
        {
            return Ok(Some(pvc));
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.options.client.clone(), &spec.namespace);
        Ok(api.get_opt(&spec.pvc).await?)
    }

    /// Creates the restore PVC and pod for `node`.
    async fn expose(&self, o: &Observed, node: &str) -> Result<(), StepError> {
        let spec = &o.dd.spec.target_volume;
        let Some(target) = self.target_pvc(o).await? else {
            return self
                .fail(
                    o,
                    &format!("target PVC {}/{} not found", spec.namespace, spec.pvc),
                )
                .await;
        };
        let ns = &self.options.namespace;
        let pvc = restore_pvc_for(&o.dd, ns, &target, Some(node));
        // Pinned by the node's hostname label (it may differ from its name), tolerating its
        // taints (only the workload's node can have any: placement skips tainted nodes).
        let node_object = self
            .observe_nodes()
            .await?
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(node));
        let settings = PodSettings {
            image: self.options.image.clone(),
            service_account: self.options.service_account.clone(),
            log_filter: self.options.data_mover_log.clone(),
            password_secret: None,
            tolerations: node_object
                .as_ref()
                .map(tolerations_for)
                .unwrap_or_default(),
        };
        let hostname = node_object
            .as_ref()
            .map(hostname_of)
            .unwrap_or_else(|| node.to_string());
        let pod = restore_pod_for(&o.dd, ns, &target, Some(&hostname), &self.config, &settings);
        match self.exposer.expose(Movement::Restore, &pvc, &pod).await {
            Ok(ExposeState::PodCreated) => Ok(()),
            Ok(ExposeState::WaitingForVolume { since: created }) => {
                // Exposing started with the restore PVC: its provisioning counts.
                if since(created.as_ref()) > self.options.expose_timeout {
                    let why = self.diagnose(Movement::Restore, &o.name, None).await;
                    return self
                        .fail(
                            o,
                            &format!(
                                "timed out after {} exposing the restore: {why}",
                                human(self.options.expose_timeout)
                            ),
                        )
                        .await;
                }
                self.set_message(
                    o,
                    &format!(
                        "waiting for restore PVC {ns}/{} to be provisioned on node {node} before its pod starts",
                        o.name
                    ),
                )
                .await
            }
            // A transient API error is retried on the next pass, never a failure.
            Err(err) if err.is_transient() => Err(err.into()),
            Err(err) => self.fail(o, &err.to_string()).await,
        }
    }

    async fn prepared(&self, o: &Observed) -> Result<(), StepError> {
        let pod = match self.exposer.peek_exposed(&o.name).await {
            Ok(p) => p,
            // A transient API error is retried on the next pass, never a failure.
            Err(err) if err.is_transient() => return Err(err.into()),
            Err(err) => return self.fail(o, &err.to_string()).await,
        };
        let Some(pod) = pod else {
            return self
                .fail(
                    o,
                    &format!(
                        "restore pod {}/{} disappeared before the data mover started",
                        self.options.namespace, o.name
                    ),
                )
                .await;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        self.patch_status(
            &o.name,
            json!({ "phase": "InProgress", "startTimestamp": now() }),
        )
        .await?;
        self.event(
            &o.dd,
            "Normal",
            "InProgress",
            &format!(
                "data mover restoring snapshot {} on node {node}",
                o.dd.spec.snapshot_id
            ),
        )
        .await;
        Ok(())
    }

    async fn in_progress(&self, o: &Observed) -> Result<(), StepError> {
        if !data_moved(&o.dd) {
            let pod = self
                .exposer
                .cluster
                .get_pod(&self.options.namespace, &o.name)
                .await?;
            let Some(pod) = pod else {
                return self
                    .fail(
                        o,
                        &format!(
                            "restore pod {}/{} was deleted before the data mover finished",
                            self.options.namespace, o.name
                        ),
                    )
                    .await;
            };
            let message = termination_message(&pod);
            let result = message.as_deref().and_then(parse_termination_message);
            match pod_phase(&pod).as_str() {
                "Succeeded" => {
                    let total = result.as_ref().map(|r| r.total_bytes).unwrap_or(0);
                    // The value is when: rebind's time limit counts from it.
                    let patch = json!({
                        "metadata": { "annotations": { DATA_MOVED_ANNOTATION: now() } },
                        "status": { "progress": { "totalBytes": total, "bytesDone": total } },
                    });
                    self.downloads
                        .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    self.event(
                        &o.dd,
                        "Normal",
                        "DataMoved",
                        &format!(
                            "{} restored ({total} bytes); rebinding the volume to the target PVC",
                            human_bytes(total)
                        ),
                    )
                    .await;
                    let warnings = result.map(|r| r.warnings).unwrap_or_default();
                    if !warnings.is_empty() {
                        // Every byte is back, but not everything (see MKNOD in
                        // docs/controller.md): worth a look, not a failure.
                        self.event(
                            &o.dd,
                            "Warning",
                            "RestoredWithWarnings",
                            &format!(
                                "the data is restored, with {} warning(s) from the data mover: {}",
                                warnings.len(),
                                warnings.join("; ")
                            ),
                        )
                        .await;
                    }
                    return Ok(());
                }
                "Failed" | "Unknown" => {
                    // Its own error from the termination message, else how it ended.
                    let why = data_mover_failure(&pod);
                    return self.fail(o, &format!("data mover failed: {why}")).await;
                }
                // The data movement itself has no time limit (spec.operationTimeout bounds
                // waits for resources, as Velero uses it): only a cancel ends it.
                _ => return Ok(()),
            }
        }
        let spec = &o.dd.spec.target_volume;
        match self
            .exposer
            .rebind(&o.name, &spec.namespace, &spec.pvc)
            .await
        {
            Ok(RebindState::Waiting(why)) => {
                tracing::debug!(data_download = %o.name, %why, "rebinding");
                // Rebind waits for the cluster (deletions, the PV controller's binding): a
                // resource wait, bounded by spec.operationTimeout as Velero bounds it.
                let limit = o.dd.spec.operation_timeout_duration().unwrap_or_default();
                if let Some(moved) = data_moved_at(&o.dd)
                    && !limit.is_zero()
                    && since(Some(&moved)) > limit
                {
                    let events = self
                        .last_warning(&spec.namespace, "PersistentVolumeClaim", &spec.pvc)
                        .await
                        .map(|w| {
                            format!(
                                "; last event on target PVC {}/{}: {} {}",
                                spec.namespace, spec.pvc, w.reason, w.message
                            )
                        })
                        .unwrap_or_default();
                    return self
                        .fail(
                            o,
                            &format!(
                                "rebind timed out after {} (spec.operationTimeout): still waiting for {why}{events}",
                                human(limit)
                            ),
                        )
                        .await;
                }
                Ok(())
            }
            Ok(RebindState::Done { pv }) => {
                let status = o.dd.status.clone().unwrap_or_default();
                let total = status
                    .progress
                    .as_ref()
                    .and_then(|p| p.total_bytes)
                    .unwrap_or(0);
                self.finish(
                    o,
                    json!({
                        "phase": "Completed",
                        "completionTimestamp": now(),
                        "message": null,
                    }),
                )
                .await?;
                let seconds = since(status.accepted_timestamp.as_ref()).as_secs_f64();
                let node = status.node.as_deref().unwrap_or("");
                self.metrics
                    .restore_completed(node, total.max(0) as u64, seconds);
                self.event(
                    &o.dd,
                    "Normal",
                    "Completed",
                    &format!(
                        "target PVC {}/{} is bound to restored PV {pv}",
                        spec.namespace, spec.pvc
                    ),
                )
                .await;
                Ok(())
            }
            // A transient API error is retried on the next pass, never a failure.
            Err(err) if err.is_transient() => Err(err.into()),
            Err(err) => self.fail(o, &format!("rebind failed: {err}")).await,
        }
    }

    async fn cancel(&self, o: &Observed) -> Result<(), StepError> {
        let previous = o.dd.status.as_ref().and_then(|s| s.message.clone());
        let reason = if o.dd.phase() != DataDownloadPhase::Canceling {
            // Whoever set spec.cancel may have said why in the message (Velero's node-agent,
            // restarting, cancels the InProgress DataDownloads on its node, whatever their
            // data mover, with "Resume InProgress datadownload failed …"): keep it.
            let reason = match previous.filter(|m| !m.is_empty()) {
                Some(m) => format!("spec.cancel was set (message then: {m})"),
                None => "spec.cancel was set".to_string(),
            };
            self.patch_status(&o.name, json!({ "phase": "Canceling", "message": reason }))
                .await?;
            self.event(
                &o.dd,
                "Normal",
                "Canceling",
                &format!("{reason}: removing the restore's objects"),
            )
            .await;
            reason
        } else {
            previous.unwrap_or_else(|| "spec.cancel was set".to_string())
        };
        if self.exposer.cleanup(&o.name).await? {
            self.finish(
                o,
                json!({
                    "phase": "Canceled",
                    "completionTimestamp": now(),
                    "message": format!("canceled: {reason}"),
                }),
            )
            .await?;
            self.metrics.restore_canceled();
            self.event(
                &o.dd,
                "Normal",
                "Canceled",
                "restore canceled; its pod and PVC are removed",
            )
            .await;
        }
        Ok(())
    }

    /// Removes the restore's objects and marks the DataDownload Failed with `message`.
    async fn fail(&self, o: &Observed, message: &str) -> Result<(), StepError> {
        if let Err(err) = self.exposer.cleanup(&o.name).await {
            tracing::warn!(data_download = %o.name, error = %err, "cleanup after failure incomplete");
        }
        self.finish(
            o,
            json!({
                "phase": "Failed",
                "completionTimestamp": now(),
                "message": message,
            }),
        )
        .await?;
        self.metrics.restore_failed();
        self.event(&o.dd, "Warning", "Failed", message).await;
        tracing::warn!(data_download = %o.name, %message, "restore failed");
        Ok(())
    }

    /// A DataDownload being deleted: its restore objects are removed (the restore is
    /// canceled, whatever its phase), then the finalizer is released.
    async fn deleted(&self, o: &Observed) -> Result<(), StepError> {
        if !has_finalizer(&o.dd) {
            return Ok(());
        }
        if !self.exposer.cleanup(&o.name).await? {
            return Ok(());
        }
        if !o.dd.phase().is_terminal() {
            self.metrics.restore_canceled();
        }
        self.patch_meta(&o.name, json!({ "finalizers": without_finalizer(&o.dd) }))
            .await?;
        tracing::info!(data_download = %o.name, phase = o.dd.phase().as_str(), "deleted: restore objects removed");
        Ok(())
    }

    /// Writes a terminal status; the restore's objects are gone, so the finalizer goes too.
    async fn finish(&self, o: &Observed, status: serde_json::Value) -> Result<(), kube::Error> {
        let patch = if has_finalizer(&o.dd) {
            json!({ "metadata": { "finalizers": without_finalizer(&o.dd) }, "status": status })
        } else {
            json!({ "status": status })
        };
        self.downloads
            .patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    async fn patch_meta(&self, name: &str, meta: serde_json::Value) -> Result<(), kube::Error> {
        let patch = json!({ "metadata": meta });
        self.downloads
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    async fn set_message(&self, o: &Observed, message: &str) -> Result<(), StepError> {
        let current = o.dd.status.as_ref().and_then(|s| s.message.as_deref());
        if current != Some(message) {
            self.patch_status(&o.name, json!({ "message": message }))
                .await?;
            self.event(&o.dd, "Normal", "Waiting", message).await;
        }
        Ok(())
    }

    async fn patch_status(&self, name: &str, status: serde_json::Value) -> Result<(), kube::Error> {
        let patch = json!({ "status": status });
        self.downloads
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// Why the restore pod does not run: its scheduling condition, the restore PVC's state and
    /// the latest events about either.
    async fn diagnose(&self, movement: Movement, name: &str, pod: Option<&Pod>) -> String {
        let ns = &self.options.namespace;
        let mut parts = Vec::new();
        // The watch cache may lag the scheduler's condition by a moment; read it fresh.
        let fresh = Api::<Pod>::namespaced(self.options.client.clone(), ns)
            .get_opt(name)
            .await
            .ok()
            .flatten();
        let pod = fresh.as_ref().or(pod);
        let unscheduled = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status != "True")
            });
        let pod_warning = self.last_warning(ns, "Pod", name).await;
        // The scheduler's FailedScheduling event may be visible before its PodScheduled
        // condition is: either says the pod is not scheduled.
        let failed_scheduling = pod_warning.as_ref().filter(|w| {
            w.reason == "FailedScheduling"
                && pod.is_some_and(|p| p.spec.as_ref().is_none_or(|s| s.node_name.is_none()))
        });
        parts.push(match (pod, unscheduled, failed_scheduling) {
            (_, Some(cond), _) => format!(
                "pod {ns}/{name} not scheduled: {}",
                cond.message
                    .clone()
                    .or(cond.reason.clone())
                    .unwrap_or_default()
            ),
            (_, None, Some(event)) => format!("pod {ns}/{name} not scheduled: {}", event.message),
            (Some(pod), None, None) => {
                let bound_to = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                match bound_to {
                    // Bound, yet not running: say where, and whether that node is Ready.
                    Some(node) => format!(
                        "pod {ns}/{name} is {} on node {node}{}",
                        pod_phase(pod),
                        self.node_readiness(node).await
                    ),
                    None => format!("pod {ns}/{name} is {}", pod_phase(pod)),
                }
            }
            (None, None, None) => {
                format!("no {movement} pod yet (it starts once its volume is provisioned)")
            }
        });
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.options.client.clone(), ns);
        if let Ok(Some(pvc)) = pvcs.get_opt(name).await {
            let phase = pvc
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Pending".into());
            if phase != "Bound" {
                parts.push(format!("{movement} PVC {ns}/{name} is {phase}"));
            }
        }
        let pvc_warning = self.last_warning(ns, "PersistentVolumeClaim", name).await;
        for (kind, warning) in [("Pod", pod_warning), ("PersistentVolumeClaim", pvc_warning)] {
            if let Some(w) = warning {
                parts.push(format!(
                    "last event on {kind} {name}: {} {}",
                    w.reason, w.message
                ));
            }
        }
        parts.join("; ")
    }

    /// " (NotReady)" (or the Ready condition's status when not True), or nothing when the node
    /// is Ready or cannot be read.
    async fn node_readiness(&self, node: &str) -> String {
        let Ok(Some(node)) = Api::<Node>::all(self.options.client.clone())
            .get_opt(node)
            .await
        else {
            return String::new();
        };
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        match ready.as_deref() {
            Some("True") => String::new(),
            Some("False") => " (NotReady)".into(),
            Some(other) => format!(" (Ready {other})"),
            None => " (no Ready condition)".into(),
        }
    }

    /// The latest Warning event about `kind` `ns/name`.
    async fn last_warning(&self, ns: &str, kind: &str, name: &str) -> Option<Warning> {
        let events: Api<Event> = Api::namespaced(self.options.client.clone(), ns);
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.involved_object.kind.as_deref() == Some(kind)
                    && e.type_.as_deref() == Some("Warning")
            })
            .max_by_key(|e| e.last_timestamp.clone().map(|t| t.0))
            .map(|e| Warning {
                reason: e.reason.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
            })
    }

    /// Records a Kubernetes Event on a DataDownload or DataUpload (best effort), through
    /// kube-runtime's Recorder: `kubectl describe` and `kubectl get events` show it as any
    /// controller's.
    async fn event<K: kube::Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let name = object.meta().name.clone().unwrap_or_default();
        let mut note = message.to_string();
        // events.k8s.io/v1 refuses a note over 1 kB: a long diagnosis is cut, not lost (the
        // object's status.message has it whole).
        ferry_text::truncate(&mut note, EVENT_NOTE_BYTES);
        let event = RecordedEvent {
            type_: if type_ == "Warning" {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: event_action(reason).into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::debug!(error = %err, "cannot record event");
        }
        tracing::info!(kind = %K::kind(&()), name = %name, reason, message, "event");
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

/// Whether `meta` holds `finalizer`.
fn holds_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == finalizer))
}

/// `meta`'s finalizers with `finalizer` (`keep`) or without it (a merge patch replaces the
/// whole list).
fn finalizers_with(meta: &ObjectMeta, finalizer: &str, keep: bool) -> Vec<String> {
    let mut list = meta.finalizers.clone().unwrap_or_default();
    list.retain(|f| f != finalizer);
    if keep {
        list.push(finalizer.to_string());
    }
    list
}

fn has_finalizer(dd: &DataDownload) -> bool {
    holds_finalizer(&dd.metadata, CLEANUP_FINALIZER)
}

fn with_finalizer(dd: &DataDownload) -> Vec<String> {
    finalizers_with(&dd.metadata, CLEANUP_FINALIZER, true)
}

fn without_finalizer(dd: &DataDownload) -> Vec<String> {
    finalizers_with(&dd.metadata, CLEANUP_FINALIZER, false)
}

/// When the data mover of `dd` finished (None: not yet, or marked by a ferry that did not
/// record the time).
fn data_moved_at(dd: &DataDownload) -> Option<Time> {
    let value = dd
        .metadata
        .annotations
        .as_ref()?
        .get(DATA_MOVED_ANNOTATION)?;
    value.parse::<k8s_openapi::jiff::Timestamp>().ok().map(Time)
}

/// Whether the data mover of `dd` finished successfully (rebind may be under way).
fn data_moved(dd: &DataDownload) -> bool {
    dd.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DATA_MOVED_ANNOTATION))
}

fn queued(o: &Observed) -> QueuedRestore {
    QueuedRestore {
        name: o.name.clone(),
        phase: o.dd.phase(),
        node: o.dd.status.as_ref().and_then(|s| s.node.clone()),
        created: created(&o.dd),
    }
}

fn created(dd: &DataDownload) -> Option<chrono::DateTime<Utc>> {
    created_at(&dd.metadata)
}

/// When the object was created (its order in the queue).
fn created_at(meta: &ObjectMeta) -> Option<chrono::DateTime<Utc>> {
    meta.creation_timestamp
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.0.as_millisecond()))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn since(t: Option<&Time>) -> Duration {
    t.map(|t| {
        let ms = k8s_openapi::jiff::Timestamp::now().as_millisecond() - t.0.as_millisecond();
        Duration::from_millis(ms.max(0) as u64)
    })
    .unwrap_or_default()
}

fn human(d: Duration) -> String {
    crate::crds::format_go_duration(d)
}

/// A Warning event's reason and message, as diagnosis quotes them.
struct Warning {
    reason: String,
    message: String,
}

fn pod_phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into())
}

/// The longest note events.k8s.io/v1 accepts.
const EVENT_NOTE_BYTES: usize = 1024;

/// The action an event's reason reports (events.k8s.io/v1 asks for both): what the
/// controller did, or tried, to the DataDownload or DataUpload.
fn event_action(reason: &str) -> &str {
    match reason {
        "Accepted" => "Accept",
        "NodeChosen" => "Place",
        "Prepared" => "Expose",
        "InProgress" | "DataMoved" | "RestoredWithWarnings" => "MoveData",
        "Completed" => "Complete",
        "Canceling" | "Canceled" => "Cancel",
        "Waiting" => "Wait",
        "ForgettingSnapshot" | "SnapshotForgotten" | "SnapshotKept" | "ForgetFailed" => {
            "ForgetSnapshot"
        }
        "Failed" => "Fail",
        other => other,
    }
}
