//! Prometheus metrics (OpenMetrics text, written by prometheus-client) and the health
//! endpoints, served with axum.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Restore durations from a second to over two hours: a bucket per doubling.
const DURATION_BUCKETS: u16 = 14;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Phase {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Node {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Resource {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Trigger {
    trigger: String,
}

/// The controller's metrics, registered once and rendered on each scrape.
pub struct Metrics {
    registry: Registry,
    /// DataDownloads of this data mover by phase, as of the last pass.
    phases: Family<Phase, Gauge>,
    bytes_restored: Family<Node, Counter>,
    completed: Counter,
    failed: Counter,
    canceled: Counter,
    /// Acceptance to completion, per node that moved the data.
    restore_duration: Family<Node, Histogram, fn() -> Histogram>,
    /// DataUploads of this data mover by phase, as of the last pass.
    upload_phases: Family<Phase, Gauge>,
    bytes_backed_up: Counter,
    /// Backups by how they ended: completed, failed, canceled.
    backups: Family<Outcome, Counter>,
    /// Snapshots of deleted DataUploads by outcome: forgotten, kept, failed (a forget pod
    /// that failed; it is retried).
    snapshot_deletions: Family<Outcome, Counter>,
    leader: Gauge,
    /// Watch changes that asked for a pass, by resource.
    wakeups: Family<Resource, Counter>,
    /// Reconcile passes run, by what started them (watch, resync, leader).
    passes: Family<Trigger, Counter>,
    passes_total: AtomicU64,
    /// Phase gauges are replaced as a whole; the lock keeps a scrape from seeing half of it.
    phase_update: Mutex<()>,
    ready: AtomicBool,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, DURATION_BUCKETS))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("ferry"),
            phases: Family::default(),
            bytes_restored: Family::default(),
            completed: Counter::default(),
            failed: Counter::default(),
            canceled: Counter::default(),
            restore_duration: Family::new_with_constructor(duration_histogram),
            upload_phases: Family::default(),
            bytes_backed_up: Counter::default(),
            backups: Family::default(),
            snapshot_deletions: Family::default(),
            leader: Gauge::default(),
            wakeups: Family::default(),
            passes: Family::default(),
            passes_total: AtomicU64::new(0),
            phase_update: Mutex::new(()),
            ready: AtomicBool::new(false),
        };
        let r = &mut m.registry;
        r.register(
            "data_downloads",
            "DataDownloads handled by this data mover, by phase",
            m.phases.clone(),
        );
        r.register(
            "restore_bytes",
            "Bytes restored by completed restores, by node",
            m.bytes_restored.clone(),
        );
        r.register(
            "restores_completed",
            "Restores completed",
            m.completed.clone(),
        );
        r.register("restores_failed", "Restores failed", m.failed.clone());
        r.register("restores_canceled", "Restores canceled", m.canceled.clone());
        r.register(
            "restore_duration_seconds",
            "Time from acceptance to completion of a restore, by node",
            m.restore_duration.clone(),
        );
        r.register(
            "data_uploads",
            "DataUploads handled by this data mover, by phase",
            m.upload_phases.clone(),
        );
        r.register(
            "backup_bytes",
            "Bytes read by completed backups",
            m.bytes_backed_up.clone(),
        );
        r.register(
            "backups",
            "Backups ended, by outcome (completed, failed, canceled)",
            m.backups.clone(),
        );
        r.register(
            "backup_snapshot_deletions",
            "Repository snapshots of deleted DataUploads, by outcome (forgotten, kept, failed)",
            m.snapshot_deletions.clone(),
        );
        r.register(
            "controller_wakeups",
            "Watched changes that woke the controller, by resource",
            m.wakeups.clone(),
        );
        r.register(
            "reconcile_passes",
            "Reconcile passes, by trigger (watch, resync, leader)",
            m.passes.clone(),
        );
        r.register(
            "controller_leader",
            "Whether this replica holds the leader lease",
            m.leader.clone(),
        );
        m
    }
}

impl Metrics {
    pub fn set_phases(&self, phases: BTreeMap<String, u64>) {
        self.replace_phases(&self.phases, phases);
    }
    /// A restore completed on `node` after `seconds` from acceptance, writing `bytes`.
    pub fn restore_completed(&self, node: &str, bytes: u64, seconds: f64) {
        self.completed.inc();
        let node = Node {
            node: node.to_string(),
        };
        self.bytes_restored.get_or_create(&node).inc_by(bytes);
        self.restore_duration.get_or_create(&node).observe(seconds);
    }
    pub fn restore_failed(&self) {
        self.failed.inc();
    }
    pub fn restore_canceled(&self) {
        self.canceled.inc();
    }
    pub fn set_upload_phases(&self, phases: BTreeMap<String, u64>) {
        self.replace_phases(&self.upload_phases, phases);
    }
    fn replace_phases(&self, family: &Family<Phase, Gauge>, phases: BTreeMap<String, u64>) {
        let _whole = self.phase_update.lock().unwrap_or_else(|e| e.into_inner());
        family.clear();
        for (phase, n) in phases {
            family
                .get_or_create(&Phase { phase })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    /// A backup ended `outcome` (completed, failed, canceled) after reading `bytes`.
    pub fn backup_ended(&self, outcome: &str, bytes: u64) {
        self.bytes_backed_up.inc_by(bytes);
        self.backups
            .get_or_create(&Outcome {
                outcome: outcome.to_string(),
            })
            .inc();
    }
    /// A deleted DataUpload's snapshot was `outcome` (forgotten, kept, failed).
    pub fn snapshot_deletion(&self, outcome: &str) {
        self.snapshot_deletions
            .get_or_create(&Outcome {
                outcome: outcome.to_string(),
            })
            .inc();
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
    pub fn wakeup(&self, source: &str) {
        self.wakeups
            .get_or_create(&Resource {
                resource: source.to_string(),
            })
            .inc();
    }
    pub fn pass(&self, trigger: &str) {
        self.passes
            .get_or_create(&Trigger {
                trigger: trigger.to_string(),
            })
            .inc();
        self.passes_total.fetch_add(1, Ordering::Relaxed);
    }
    /// Passes run so far, all triggers together.
    pub fn passes(&self) -> u64 {
        self.passes_total.load(Ordering::Relaxed)
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let _whole = self.phase_update.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// What Prometheus asks for and prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router(metrics: Arc<Metrics>) -> Router {
    let m = metrics.clone();
    let r = metrics;
    Router::new()
        .route(
            "/metrics",
            get(move || async move { ([(header::CONTENT_TYPE, OPENMETRICS)], m.render()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if r.is_ready() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
}

/// Binds the metrics server; returns the bound address (port 0 picks a free one).
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router(metrics)).await {
            tracing::warn!(error = %err, "metrics server stopped");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_phases_bytes_and_durations() {
        let m = Metrics::default();
        m.set_phases(BTreeMap::from([
            ("Completed".into(), 2),
            ("InProgress".into(), 1),
        ]));
        m.restore_completed("node-1", 1000, 1.5);
        m.restore_completed("node-1", 24, 0.5);
        m.restore_completed("node-2", 7, 300.0);
        m.restore_failed();
        m.wakeup("pods");
        m.wakeup("pods");
        m.pass("resync");
        let text = m.render();
        for line in [
            "ferry_controller_wakeups_total{resource=\"pods\"} 2\n",
            "ferry_reconcile_passes_total{trigger=\"resync\"} 1\n",
            "ferry_data_downloads{phase=\"Completed\"} 2\n",
            "ferry_restore_bytes_total{node=\"node-1\"} 1024\n",
            "ferry_restores_completed_total 3\n",
            "ferry_restores_failed_total 1\n",
            "ferry_restore_duration_seconds_sum{node=\"node-1\"} 2.0\n",
            "ferry_restore_duration_seconds_count{node=\"node-1\"} 2\n",
            // Buckets are cumulative: both of node-1's restores took at most 2 s.
            "ferry_restore_duration_seconds_bucket{le=\"1.0\",node=\"node-1\"} 1\n",
            "ferry_restore_duration_seconds_bucket{le=\"2.0\",node=\"node-1\"} 2\n",
            "ferry_restore_duration_seconds_bucket{le=\"256.0\",node=\"node-2\"} 0\n",
            "ferry_restore_duration_seconds_bucket{le=\"512.0\",node=\"node-2\"} 1\n",
            "ferry_restore_duration_seconds_bucket{le=\"+Inf\",node=\"node-2\"} 1\n",
            "# TYPE ferry_restore_duration_seconds histogram\n",
            "ferry_controller_leader 0\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(m.passes(), 1);
        // A phase no object is in any more disappears.
        m.set_phases(BTreeMap::from([("Completed".into(), 3)]));
        let text = m.render();
        assert!(!text.contains("InProgress"), "{text}");
        assert!(text.contains("ferry_data_downloads{phase=\"Completed\"} 3\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.wakeup("a\"b\\c\nd");
        let text = m.render();
        assert!(
            text.contains(r#"ferry_controller_wakeups_total{resource="a\"b\\c\nd"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn endpoints_answer_over_http() {
        let m = Arc::new(Metrics::default());
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), m.clone())
            .await
            .unwrap();
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).await.unwrap();
            text
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(
            get("/metrics")
                .await
                .to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0")
        );
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        m.set_ready(true);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(
            get("/metrics")
                .await
                .contains("ferry_restores_completed_total 0")
        );
        task.abort();
    }
}
