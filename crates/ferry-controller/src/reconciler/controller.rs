//! The controller's state: its options and node-agent configuration, the watches and the
//! stores a pass reads, the exposer, the lease, the event sink and the metrics. Its
//! behaviour is split by responsibility over the sibling files, each an `impl Controller`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_config::NodeAgentConfig;
use kube::Api;
use kube::runtime::events::{Recorder, Reporter};

use crate::cluster::KubeCluster;
use crate::crds::{DataDownload, DataUpload};
use crate::expose::RestoreExposer;
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::wakeups::{RecordedApi, Waker, WatchScope, Watches};

use super::event_sink::EventSink;
use super::options::ControllerOptions;
use super::upload_memo::UploadMemo;

pub(super) struct Controller {
    pub(super) options: ControllerOptions,
    pub(super) config: NodeAgentConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) exposer: RestoreExposer<KubeCluster>,
    pub(super) downloads: RecordedApi<DataDownload>,
    pub(super) uploads: RecordedApi<DataUpload>,
    /// Set by a step that waits for something no watch reports (a VolumeSnapshot, a
    /// deletion): the next pass comes after a second instead of the resync interval.
    pub(super) poll_soon: std::sync::atomic::AtomicBool,
    /// What each DataUpload's last steps found, so that a pass reads again only what may
    /// have changed.
    pub(super) upload_memo: UploadMemo,
    pub(super) leader: LeaderElector,
    pub(super) watches: Arc<Watches>,
    /// Sends events.k8s.io/v1 Events (kube-runtime's recorder: a repeated one counted in a
    /// series) in the background.
    pub(super) events: EventSink,
    /// resourceVersion of the ConfigMap `config` was read from (None: read at startup).
    pub(super) config_version: Option<String>,
    /// When the lease was last renewed; this replica acts only within `renew_deadline` of it.
    pub(super) renewed_at: Option<Instant>,
    pub(super) renew_deadline: Duration,
    pub(super) started: Instant,
}

impl Controller {
    pub(super) fn new(
        options: ControllerOptions,
        config: NodeAgentConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
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
                KubeCluster::cached(client.clone(), watches.clone(), &options.namespace),
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
            upload_memo: UploadMemo::default(),
            events: EventSink::start(Recorder::new(
                client.clone(),
                Reporter {
                    controller: format!("{}-controller", options.data_mover_name),
                    instance: Some(options.identity.clone()),
                },
            )),
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
}
