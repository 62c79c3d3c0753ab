//! Progress of a running data mover, merge-patched into `status.progress` of the DataDownload
//! or DataUpload it works for: what `kubectl get` and Velero show while a volume moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_repo::RestoreProgress;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// Merge-patches `status.progress` of the DataDownload or DataUpload the data mover works
/// for, every interval while it changes, and once more at the end.
pub(crate) struct ProgressReporter<K: Clone> {
    api: Api<K>,
    name: String,
    total: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> ProgressReporter<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pub(crate) fn start(api: Api<K>, name: &str, interval: Duration) -> Self {
        let total = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let task = {
            let (api, name) = (api.clone(), name.to_string());
            let (total, done) = (total.clone(), done.clone());
            tokio::spawn(async move {
                let mut last = (u64::MAX, u64::MAX);
                loop {
                    tokio::time::sleep(interval).await;
                    let now = (total.load(Ordering::Relaxed), done.load(Ordering::Relaxed));
                    if now != last {
                        report_progress(&api, &name, now.0, now.1).await;
                        last = now;
                    }
                }
            })
        };
        ProgressReporter {
            api,
            name: name.to_string(),
            total,
            done,
            task,
        }
    }

    /// The engine's progress callback, feeding this reporter.
    pub(crate) fn callback(&self) -> ferry_repo::restore::ProgressFn {
        let (total, done) = (self.total.clone(), self.done.clone());
        Arc::new(move |p: &RestoreProgress| {
            total.store(p.total_bytes, Ordering::Relaxed);
            done.store(p.bytes_done, Ordering::Relaxed);
        })
    }

    /// Sets the total before the engine knows it (a block device's size).
    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// Stops the periodic reports and reports `total` bytes, all done.
    pub(crate) async fn finish(self, total: u64) {
        self.task.abort();
        report_progress(&self.api, &self.name, total, total).await;
    }
}

impl<K: Clone> Drop for ProgressReporter<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn report_progress<K>(api: &Api<K>, name: &str, total: u64, done: u64)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({ "status": { "progress": { "totalBytes": total, "bytesDone": done } } });
    if let Err(err) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(object = name, error = %err, "cannot report progress");
    }
}
