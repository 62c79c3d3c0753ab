//! The controller as a process: its options, starting and stopping it, the node-agent
//! configuration read at start and reloaded when its ConfigMap changes, and the loop that
//! renews the leader lease and runs a pass whenever a watch or the resync asks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_config::{NodeAgentConfig, Strictness, from_configmap_data};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use crate::metrics::Metrics;

use super::controller::Controller;
use super::options::ControllerOptions;

/// How long a stopping controller goes on sending the events it has queued.
const EVENT_FLUSH: Duration = Duration::from_secs(5);

impl Controller {
    /// Whether this replica may act: it renewed the lease within the renew deadline.
    pub(super) fn leading(&self) -> bool {
        self.renewed_at
            .is_some_and(|t| t.elapsed() < self.renew_deadline)
    }

    /// Renews (or tries to take) the lease, every `lease_duration / 5` like client-go's retry
    /// period; passes run between renewals whenever a watched change or the resync asks.
    pub(super) async fn run(mut self, mut stopped: watch::Receiver<bool>) {
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
        // What happened before the stop is told before another replica takes over.
        self.events.flush(EVENT_FLUSH).await;
        self.leader.release().await;
    }

    /// The node-agent configuration as the ConfigMap store shows it; a changed ConfigMap
    /// applies to restores not yet exposed. An invalid or missing one keeps the last good one.
    pub(super) async fn refresh_config(&mut self) {
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
