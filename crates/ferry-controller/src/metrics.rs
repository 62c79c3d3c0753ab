//! Prometheus metrics (text format) and the health endpoints, served with axum.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

#[derive(Default)]
pub struct Metrics {
    /// DataDownloads of this data mover by phase, as of the last pass.
    phases: Mutex<BTreeMap<String, u64>>,
    bytes_restored: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    canceled: AtomicU64,
    /// Sum and count of restore durations (acceptance to completion), seconds.
    duration_sum_millis: AtomicU64,
    duration_count: AtomicU64,
    /// DataUploads of this data mover by phase, as of the last pass.
    upload_phases: Mutex<BTreeMap<String, u64>>,
    bytes_backed_up: AtomicU64,
    /// Backups by how they ended: completed, failed, canceled.
    backups: Mutex<BTreeMap<String, u64>>,
    /// Snapshots of deleted DataUploads by outcome: forgotten, kept, failed (a forget pod
    /// that failed; it is retried).
    snapshot_deletions: Mutex<BTreeMap<String, u64>>,
    ready: AtomicBool,
    leader: AtomicBool,
    /// Watch changes that asked for a pass, by resource.
    wakeups: Mutex<BTreeMap<String, u64>>,
    /// Reconcile passes run, by what started them (watch, resync, leader).
    passes: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn set_phases(&self, phases: BTreeMap<String, u64>) {
        *self.phases.lock().unwrap_or_else(|e| e.into_inner()) = phases;
    }
    pub fn restore_completed(&self, bytes: u64, seconds: f64) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.bytes_restored.fetch_add(bytes, Ordering::Relaxed);
        self.duration_sum_millis
            .fetch_add((seconds * 1000.0) as u64, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
    }
    pub fn restore_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn restore_canceled(&self) {
        self.canceled.fetch_add(1, Ordering::Relaxed);
    }
    pub fn set_upload_phases(&self, phases: BTreeMap<String, u64>) {
        *self.upload_phases.lock().unwrap_or_else(|e| e.into_inner()) = phases;
    }
    /// A backup ended `outcome` (completed, failed, canceled) after reading `bytes`.
    pub fn backup_ended(&self, outcome: &str, bytes: u64) {
        self.bytes_backed_up.fetch_add(bytes, Ordering::Relaxed);
        let mut map = self.backups.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(outcome.to_string()).or_default() += 1;
    }
    /// A deleted DataUpload's snapshot was `outcome` (forgotten, kept, failed).
    pub fn snapshot_deletion(&self, outcome: &str) {
        let mut map = self
            .snapshot_deletions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(outcome.to_string()).or_default() += 1;
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }
    pub fn wakeup(&self, source: &str) {
        let mut map = self.wakeups.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(source.to_string()).or_default() += 1;
    }
    pub fn pass(&self, trigger: &str) {
        let mut map = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(trigger.to_string()).or_default() += 1;
    }
    /// Passes run so far, all triggers together.
    pub fn passes(&self) -> u64 {
        self.passes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP ferry_data_downloads DataDownloads handled by this data mover, by phase.\n# TYPE ferry_data_downloads gauge\n");
        for (phase, n) in self.phases.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push_str(&format!("ferry_data_downloads{{phase=\"{phase}\"}} {n}\n"));
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        counter(
            &mut out,
            "ferry_restore_bytes_total",
            "Bytes restored by completed restores.",
            self.bytes_restored.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ferry_restores_completed_total",
            "Restores completed.",
            self.completed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ferry_restores_failed_total",
            "Restores failed.",
            self.failed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ferry_restores_canceled_total",
            "Restores canceled.",
            self.canceled.load(Ordering::Relaxed),
        );
        out.push_str("# HELP ferry_restore_duration_seconds Time from acceptance to completion.\n# TYPE ferry_restore_duration_seconds summary\n");
        out.push_str(&format!(
            "ferry_restore_duration_seconds_sum {:.3}\nferry_restore_duration_seconds_count {}\n",
            self.duration_sum_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            self.duration_count.load(Ordering::Relaxed)
        ));
        let labelled = |out: &mut String,
                        name: &str,
                        help: &str,
                        label: &str,
                        map: &Mutex<BTreeMap<String, u64>>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (k, v) in map.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                out.push_str(&format!("{name}{{{label}=\"{k}\"}} {v}\n"));
            }
        };
        out.push_str("# HELP ferry_data_uploads DataUploads handled by this data mover, by phase.\n# TYPE ferry_data_uploads gauge\n");
        for (phase, n) in self
            .upload_phases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push_str(&format!("ferry_data_uploads{{phase=\"{phase}\"}} {n}\n"));
        }
        counter(
            &mut out,
            "ferry_backup_bytes_total",
            "Bytes read by completed backups.",
            self.bytes_backed_up.load(Ordering::Relaxed),
        );
        labelled(
            &mut out,
            "ferry_backups_total",
            "Backups ended, by outcome (completed, failed, canceled).",
            "outcome",
            &self.backups,
        );
        labelled(
            &mut out,
            "ferry_backup_snapshot_deletions_total",
            "Repository snapshots of deleted DataUploads, by outcome (forgotten, kept, failed).",
            "outcome",
            &self.snapshot_deletions,
        );
        labelled(
            &mut out,
            "ferry_controller_wakeups_total",
            "Watched changes that woke the controller, by resource.",
            "resource",
            &self.wakeups,
        );
        labelled(
            &mut out,
            "ferry_reconcile_passes_total",
            "Reconcile passes, by trigger (watch, resync, leader).",
            "trigger",
            &self.passes,
        );
        out.push_str(&format!(
            "# HELP ferry_controller_leader Whether this replica holds the leader lease.\n# TYPE ferry_controller_leader gauge\nferry_controller_leader {}\n",
            u8::from(self.leader.load(Ordering::Relaxed))
        ));
        out
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    let m = metrics.clone();
    let r = metrics;
    Router::new()
        .route("/metrics", get(move || async move { m.render() }))
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
        m.restore_completed(1000, 1.5);
        m.restore_completed(24, 0.5);
        m.restore_failed();
        m.wakeup("pods");
        m.wakeup("pods");
        m.pass("resync");
        let text = m.render();
        assert!(
            text.contains("ferry_controller_wakeups_total{resource=\"pods\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ferry_reconcile_passes_total{trigger=\"resync\"} 1\n"),
            "{text}"
        );
        assert_eq!(m.passes(), 1);
        assert!(
            text.contains("ferry_data_downloads{phase=\"Completed\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("ferry_restore_bytes_total 1024\n"), "{text}");
        assert!(text.contains("ferry_restores_failed_total 1\n"), "{text}");
        assert!(
            text.contains("ferry_restore_duration_seconds_sum 2.000\n"),
            "{text}"
        );
        assert!(
            text.contains("ferry_restore_duration_seconds_count 2\n"),
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
