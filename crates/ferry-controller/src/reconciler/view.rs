//! What one pass sees: the DataDownloads (from the watch stores, or the API server where the
//! store lags this controller's own writes), the nodes, and the facts read off an object
//! (its finalizer, whether its data moved, when it was created).

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;

use crate::crds::DataDownload;
use crate::queue::QueuedRestore;
use crate::wakeups::RecordedApi;

use super::controller::Controller;

/// Set on a DataDownload once its data mover finished successfully: rebind may proceed even
/// after the restore pod is gone.
pub const DATA_MOVED_ANNOTATION: &str = "ferry.io/data-moved";

/// Held on a DataDownload from acceptance until it ends or its restore objects are removed:
/// deleting an unfinished DataDownload (`kubectl delete datadownload`) cancels it and cleans
/// up first, as Velero's finalizer does (owner references alone would leave a PV rebind had
/// marked).
pub const CLEANUP_FINALIZER: &str = "ferry.io/data-download-cleanup";

impl Controller {
    /// The DataDownloads in the namespace: from the store, except those the store shows older
    /// than this controller's last write to them (read from the API server instead).
    pub(super) async fn observe_downloads(&self) -> Result<Vec<DataDownload>, kube::Error> {
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
    pub(super) async fn observe<K>(
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

    pub(super) async fn observe_nodes(&self) -> Result<Vec<Node>, kube::Error> {
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
}

/// One DataDownload as a pass sees it.
pub(super) struct Observed {
    pub(super) dd: DataDownload,
    pub(super) name: String,
}

/// `meta`'s finalizers with `finalizer` (`keep`) or without it (a merge patch replaces the
/// whole list).
pub(super) fn finalizers_with(meta: &ObjectMeta, finalizer: &str, keep: bool) -> Vec<String> {
    let mut list = meta.finalizers.clone().unwrap_or_default();
    list.retain(|f| f != finalizer);
    if keep {
        list.push(finalizer.to_string());
    }
    list
}

pub(super) fn has_finalizer(dd: &DataDownload) -> bool {
    dd.holds_finalizer(CLEANUP_FINALIZER)
}

pub(super) fn with_finalizer(dd: &DataDownload) -> Vec<String> {
    finalizers_with(&dd.metadata, CLEANUP_FINALIZER, true)
}

pub(super) fn without_finalizer(dd: &DataDownload) -> Vec<String> {
    finalizers_with(&dd.metadata, CLEANUP_FINALIZER, false)
}

/// When the data mover of `dd` finished (None: not yet, or marked by a ferry that did not
/// record the time).
pub(super) fn data_moved_at(dd: &DataDownload) -> Option<Time> {
    let value = dd
        .metadata
        .annotations
        .as_ref()?
        .get(DATA_MOVED_ANNOTATION)?;
    value.parse::<k8s_openapi::jiff::Timestamp>().ok().map(Time)
}

/// Whether the data mover of `dd` finished successfully (rebind may be under way).
pub(super) fn data_moved(dd: &DataDownload) -> bool {
    dd.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DATA_MOVED_ANNOTATION))
}

pub(super) fn queued(o: &Observed) -> QueuedRestore {
    QueuedRestore {
        name: o.name.clone(),
        phase: o.dd.phase(),
        node: o.dd.status.as_ref().and_then(|s| s.node.clone()),
        created: created(&o.dd),
        data_moved: data_moved(&o.dd),
    }
}

pub(super) fn created(dd: &DataDownload) -> Option<Timestamp> {
    created_at(&dd.metadata)
}

/// When the object was created (its order in the queue).
pub(super) fn created_at(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

pub(super) fn pod_phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into())
}
