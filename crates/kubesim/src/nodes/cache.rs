//! Reflector caches of the objects the node components decide on, and a change signal.
//! Decisions read a snapshot of these caches instead of listing per decision, which is what
//! keeps 1,000 nodes and thousands of pods cheap.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// PVs by the (namespace, name) their claimRef names.
pub type PvsByClaim<'a> = HashMap<(&'a str, &'a str), Vec<&'a PersistentVolume>>;

/// A consistent-enough view of the cluster for one round of decisions.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    /// Sorted by name.
    pub nodes: Vec<Arc<Node>>,
    pub pods: Vec<Arc<Pod>>,
    /// (namespace, name) → claim.
    pub pvcs: HashMap<(String, String), Arc<PersistentVolumeClaim>>,
    pub pvs: HashMap<String, Arc<PersistentVolume>>,
    pub classes: HashMap<String, Arc<StorageClass>>,
}

impl ClusterSnapshot {
    /// PVs whose claimRef names (namespace, name), and PVs without claimRef.
    pub fn pvs_by_claim_ref(&self) -> (PvsByClaim<'_>, Vec<&PersistentVolume>) {
        let mut claimed: HashMap<(&str, &str), Vec<&PersistentVolume>> = HashMap::new();
        let mut free = Vec::new();
        for pv in self.pvs.values() {
            match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                Some(r) => claimed
                    .entry((
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or(""),
                    ))
                    .or_default()
                    .push(pv.as_ref()),
                None => free.push(pv.as_ref()),
            }
        }
        (claimed, free)
    }

    pub fn pvc(&self, namespace: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&(namespace.to_string(), name.to_string()))
    }

    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.nodes
            .binary_search_by(|n| n.metadata.name.as_deref().unwrap_or("").cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// The class a claim uses: its storageClassName, or the default class when unset
    /// (`""` means "no class" and stays that way, as in Kubernetes).
    pub fn class_of_claim(&self, claim: &PersistentVolumeClaim) -> Option<&Arc<StorageClass>> {
        match claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
        {
            Some("") => None,
            Some(name) => self.classes.get(name),
            None => self.default_class(),
        }
    }

    /// The default StorageClass (the newest one wins if several claim it, as in Kubernetes).
    pub fn default_class(&self) -> Option<&Arc<StorageClass>> {
        self.classes
            .values()
            .filter(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(super::bootstrap::DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
            })
            .max_by_key(|c| {
                (
                    c.metadata.creation_timestamp.clone().map(|t| t.0),
                    c.metadata.name.clone(),
                )
            })
    }
}

/// The reflectors and a counter bumped on every event they see.
pub struct ClusterCache {
    pods: Store<Pod>,
    nodes: Store<Node>,
    pvcs: Store<PersistentVolumeClaim>,
    pvs: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    changes: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
    /// The last snapshot and the change count it was built at: the controllers wake on the
    /// same change and share one snapshot instead of building three.
    latest: std::sync::Mutex<Option<(u64, Arc<ClusterSnapshot>)>>,
}

fn spawn_reflector<K>(api: Api<K>, changed: Arc<watch::Sender<u64>>) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::debug!(%error, "kubesim node cache: watch error, retrying");
            }
            changed.send_modify(|n| *n += 1);
        }
    });
    (reader, task)
}

impl ClusterCache {
    /// Starts the reflectors and waits for their first full list.
    pub async fn start(client: &kube::Client) -> anyhow::Result<ClusterCache> {
        let (sender, changes) = watch::channel(0u64);
        let sender = Arc::new(sender);
        let (pods, t1) = spawn_reflector(Api::<Pod>::all(client.clone()), sender.clone());
        let (nodes, t2) = spawn_reflector(Api::<Node>::all(client.clone()), sender.clone());
        let (pvcs, t3) = spawn_reflector(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            sender.clone(),
        );
        let (pvs, t4) =
            spawn_reflector(Api::<PersistentVolume>::all(client.clone()), sender.clone());
        let (classes, t5) = spawn_reflector(Api::<StorageClass>::all(client.clone()), sender);
        let cache = ClusterCache {
            pods,
            nodes,
            pvcs,
            pvs,
            classes,
            changes,
            tasks: vec![t1, t2, t3, t4, t5],
            latest: std::sync::Mutex::new(None),
        };
        cache.pods.wait_until_ready().await?;
        cache.nodes.wait_until_ready().await?;
        cache.pvcs.wait_until_ready().await?;
        cache.pvs.wait_until_ready().await?;
        cache.classes.wait_until_ready().await?;
        Ok(cache)
    }

    /// A receiver that wakes whenever any cached object changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// A snapshot of the caches (shared while nothing changed since it was built).
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        let generation = *self.changes.borrow();
        let mut latest = self.latest.lock().expect("snapshot lock");
        if let Some((built_at, snapshot)) = latest.as_ref()
            && *built_at == generation
        {
            return snapshot.clone();
        }
        let snapshot = Arc::new(self.build_snapshot());
        *latest = Some((generation, snapshot.clone()));
        snapshot
    }

    fn build_snapshot(&self) -> ClusterSnapshot {
        let mut nodes = self.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        ClusterSnapshot {
            nodes,
            pods: self.pods.state(),
            pvcs: self
                .pvcs
                .state()
                .into_iter()
                .map(|c| {
                    let key = (
                        c.metadata.namespace.clone().unwrap_or_default(),
                        c.metadata.name.clone().unwrap_or_default(),
                    );
                    (key, c)
                })
                .collect(),
            pvs: self
                .pvs
                .state()
                .into_iter()
                .map(|v| (v.metadata.name.clone().unwrap_or_default(), v))
                .collect(),
            classes: self
                .classes
                .state()
                .into_iter()
                .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
                .collect(),
        }
    }

    pub fn pods(&self) -> &Store<Pod> {
        &self.pods
    }

    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for ClusterCache {
    fn drop(&mut self) {
        self.stop();
    }
}
