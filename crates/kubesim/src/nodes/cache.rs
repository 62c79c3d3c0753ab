//! The informer caches of the objects the node components decide on, kept as one indexed
//! [`ClusterSnapshot`] that watch events update in place, and per-controller change sets
//! (what a real controller's work queue holds) so a round looks only at what changed.
//!
//! Why not kube-rs reflectors plus a snapshot built per round: rebuilding maps of 10,000
//! objects on every event made the node side quadratic in the number of objects (it was
//! most of the CPU of a 5,000-pod run). Here an event costs O(1) and a controller holds the
//! read lock only while it decides (never across an `.await`).

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// PVs by the (namespace, name) their claimRef names.
pub type PvsByClaim<'a> = HashMap<(&'a str, &'a str), Vec<&'a PersistentVolume>>;

/// PVs indexed by claimRef, built once per round so deciding N claims stays O(N).
pub struct PvIndex<'a> {
    pub claimed: PvsByClaim<'a>,
    pub free: Vec<&'a PersistentVolume>,
}

impl<'a> PvIndex<'a> {
    pub fn new(snapshot: &'a ClusterSnapshot) -> Self {
        let (claimed, free) = snapshot.pvs_by_claim_ref();
        PvIndex { claimed, free }
    }
}

/// A consistent-enough view of the cluster for one round of decisions.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    /// Sorted by name.
    pub nodes: Vec<Arc<Node>>,
    /// In no particular order.
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

/// (namespace, name) of a namespaced object.
pub type ObjectKey = (String, String);

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// What changed since a controller last looked: the keys of changed (added, modified or
/// deleted) objects. `everything` is set at the start and after a relist; nodes and
/// classes are few and change rarely, so a flag says they changed.
#[derive(Debug, Default)]
pub struct Changes {
    pub everything: bool,
    pub pods: HashSet<ObjectKey>,
    pub claims: HashSet<ObjectKey>,
    pub volumes: HashSet<String>,
    pub nodes: bool,
    pub classes: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.everything
            && !self.nodes
            && !self.classes
            && self.pods.is_empty()
            && self.claims.is_empty()
            && self.volumes.is_empty()
    }
}

/// The snapshot plus what keeps updating and querying it O(1): where each pod sits in
/// `pods`, and the PVs by the claim their claimRef names (and those without claimRef).
#[derive(Default)]
struct CacheState {
    snapshot: ClusterSnapshot,
    pod_slots: HashMap<ObjectKey, usize>,
    pvs_by_claim: HashMap<ObjectKey, HashSet<String>>,
    free_pvs: HashSet<String>,
}

fn claim_ref_key(pv: &PersistentVolume) -> Option<ObjectKey> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some((
        r.namespace.clone().unwrap_or_default(),
        r.name.clone().unwrap_or_default(),
    ))
}

impl CacheState {
    fn put_pod(&mut self, pod: Arc<Pod>) -> ObjectKey {
        let key = key_of(&pod.metadata);
        match self.pod_slots.get(&key) {
            Some(&slot) => self.snapshot.pods[slot] = pod,
            None => {
                self.pod_slots.insert(key.clone(), self.snapshot.pods.len());
                self.snapshot.pods.push(pod);
            }
        }
        key
    }

    fn remove_pod(&mut self, key: &ObjectKey) {
        let Some(slot) = self.pod_slots.remove(key) else {
            return;
        };
        self.snapshot.pods.swap_remove(slot);
        if let Some(moved) = self.snapshot.pods.get(slot) {
            self.pod_slots.insert(key_of(&moved.metadata), slot);
        }
    }

    fn unindex_pv(&mut self, name: &str) {
        let Some(old) = self.snapshot.pvs.get(name) else {
            return;
        };
        match claim_ref_key(old) {
            Some(key) => {
                if let Some(names) = self.pvs_by_claim.get_mut(&key) {
                    names.remove(name);
                    if names.is_empty() {
                        self.pvs_by_claim.remove(&key);
                    }
                }
            }
            None => {
                self.free_pvs.remove(name);
            }
        }
    }

    fn put_pv(&mut self, name: String, pv: Arc<PersistentVolume>) {
        self.unindex_pv(&name);
        match claim_ref_key(&pv) {
            Some(key) => {
                self.pvs_by_claim
                    .entry(key)
                    .or_default()
                    .insert(name.clone());
            }
            None => {
                self.free_pvs.insert(name.clone());
            }
        }
        self.snapshot.pvs.insert(name, pv);
    }

    fn remove_pv(&mut self, name: &str) {
        self.unindex_pv(name);
        self.snapshot.pvs.remove(name);
    }

    fn put_node(&mut self, node: Arc<Node>) {
        let nodes = &mut self.snapshot.nodes;
        match nodes.binary_search_by(|n| n.metadata.name.cmp(&node.metadata.name)) {
            Ok(i) => nodes[i] = node,
            Err(i) => nodes.insert(i, node),
        }
    }

    fn remove_node(&mut self, name: &Option<String>) {
        let nodes = &mut self.snapshot.nodes;
        if let Ok(i) = nodes.binary_search_by(|n| n.metadata.name.cmp(name)) {
            nodes.remove(i);
        }
    }
}

/// How one kind of object is kept in the cache and reported as a change.
trait Cached:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn put(state: &mut CacheState, object: Arc<Self>, changes: &mut Changes);
    fn remove(state: &mut CacheState, object: &Self, changes: &mut Changes);
    fn clear(state: &mut CacheState);
}

impl Cached for Pod {
    fn put(state: &mut CacheState, object: Arc<Self>, changes: &mut Changes) {
        changes.pods.insert(state.put_pod(object));
    }
    fn remove(state: &mut CacheState, object: &Self, changes: &mut Changes) {
        let key = key_of(&object.metadata);
        state.remove_pod(&key);
        changes.pods.insert(key);
    }
    fn clear(state: &mut CacheState) {
        state.snapshot.pods.clear();
        state.pod_slots.clear();
    }
}

impl Cached for Node {
    fn put(state: &mut CacheState, object: Arc<Self>, changes: &mut Changes) {
        state.put_node(object);
        changes.nodes = true;
    }
    fn remove(state: &mut CacheState, object: &Self, changes: &mut Changes) {
        state.remove_node(&object.metadata.name);
        changes.nodes = true;
    }
    fn clear(state: &mut CacheState) {
        state.snapshot.nodes.clear();
    }
}

impl Cached for PersistentVolumeClaim {
    fn put(state: &mut CacheState, object: Arc<Self>, changes: &mut Changes) {
        let key = key_of(&object.metadata);
        state.snapshot.pvcs.insert(key.clone(), object);
        changes.claims.insert(key);
    }
    fn remove(state: &mut CacheState, object: &Self, changes: &mut Changes) {
        let key = key_of(&object.metadata);
        state.snapshot.pvcs.remove(&key);
        changes.claims.insert(key);
    }
    fn clear(state: &mut CacheState) {
        state.snapshot.pvcs.clear();
    }
}

impl Cached for PersistentVolume {
    fn put(state: &mut CacheState, object: Arc<Self>, changes: &mut Changes) {
        let name = object.metadata.name.clone().unwrap_or_default();
        state.put_pv(name.clone(), object);
        changes.volumes.insert(name);
    }
    fn remove(state: &mut CacheState, object: &Self, changes: &mut Changes) {
        let name = object.metadata.name.clone().unwrap_or_default();
        state.remove_pv(&name);
        changes.volumes.insert(name);
    }
    fn clear(state: &mut CacheState) {
        state.snapshot.pvs.clear();
        state.pvs_by_claim.clear();
        state.free_pvs.clear();
    }
}

impl Cached for StorageClass {
    fn put(state: &mut CacheState, object: Arc<Self>, changes: &mut Changes) {
        let name = object.metadata.name.clone().unwrap_or_default();
        state.snapshot.classes.insert(name, object);
        changes.classes = true;
    }
    fn remove(state: &mut CacheState, object: &Self, changes: &mut Changes) {
        state
            .snapshot
            .classes
            .remove(object.metadata.name.as_deref().unwrap_or(""));
        changes.classes = true;
    }
    fn clear(state: &mut CacheState) {
        state.snapshot.classes.clear();
    }
}

/// State shared by the watch tasks and the readers.
struct Shared {
    state: RwLock<CacheState>,
    subscribers: Mutex<Vec<Arc<Mutex<Changes>>>>,
    /// Bumped after every applied batch of events.
    signal: watch::Sender<u64>,
    /// How many kinds have completed their first list.
    ready: watch::Sender<usize>,
}

impl Shared {
    /// The write lock, without blocking the runtime's worker thread while a controller
    /// reads (which can take milliseconds): the watch task yields and tries again.
    async fn write(&self) -> RwLockWriteGuard<'_, CacheState> {
        loop {
            if let Some(guard) = self.try_write() {
                return guard;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    fn try_write(&self) -> Option<RwLockWriteGuard<'_, CacheState>> {
        match self.state.try_write() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Hands one batch's changes to every subscriber, then wakes them.
    fn publish(&self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        let subscribers = self.subscribers.lock().expect("subscribers");
        for subscriber in subscribers.iter() {
            let mut pending = subscriber.lock().expect("changes");
            pending.everything |= changes.everything;
            pending.nodes |= changes.nodes;
            pending.classes |= changes.classes;
            pending.pods.extend(changes.pods.iter().cloned());
            pending.claims.extend(changes.claims.iter().cloned());
            pending.volumes.extend(changes.volumes.iter().cloned());
        }
        drop(subscribers);
        self.signal.send_modify(|n| *n += 1);
    }
}

/// The watch caches of pods, nodes, claims, PVs and StorageClasses.
pub struct ClusterCache {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// Read access to the snapshot; hold it only while deciding (it blocks the cache's writers
/// and is not `Send`, so it cannot be held across an `.await` in a spawned task).
pub struct SnapshotGuard<'a>(RwLockReadGuard<'a, CacheState>);

impl Deref for SnapshotGuard<'_> {
    type Target = ClusterSnapshot;
    fn deref(&self) -> &ClusterSnapshot {
        &self.0.snapshot
    }
}

impl SnapshotGuard<'_> {
    pub fn pod(&self, key: &ObjectKey) -> Option<&Arc<Pod>> {
        self.0
            .pod_slots
            .get(key)
            .map(|&slot| &self.0.snapshot.pods[slot])
    }

    /// The PVs whose claimRef names this claim.
    pub fn pvs_claiming(&self, claim: &ObjectKey) -> impl Iterator<Item = &Arc<PersistentVolume>> {
        self.0
            .pvs_by_claim
            .get(claim)
            .into_iter()
            .flatten()
            .filter_map(|name| self.0.snapshot.pvs.get(name))
    }

    /// The PV index the decisions need, for these claims only (plus every PV without
    /// claimRef): O(claims) instead of O(all PVs).
    pub fn pv_index<'k>(&self, claims: impl IntoIterator<Item = &'k ObjectKey>) -> PvIndex<'_> {
        let mut claimed: PvsByClaim<'_> = HashMap::new();
        for key in claims {
            for pv in self.pvs_claiming(key) {
                let r = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                let Some(r) = r else { continue };
                let entry = claimed
                    .entry((
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or(""),
                    ))
                    .or_default();
                if !entry.iter().any(|p| std::ptr::eq(*p, pv.as_ref())) {
                    entry.push(pv.as_ref());
                }
            }
        }
        let free = self
            .0
            .free_pvs
            .iter()
            .filter_map(|name| self.0.snapshot.pvs.get(name))
            .map(|pv| pv.as_ref())
            .collect();
        PvIndex { claimed, free }
    }
}

/// One controller's view of the changes: take them, decide, wait for more.
pub struct Subscription {
    pending: Arc<Mutex<Changes>>,
    signal: watch::Receiver<u64>,
}

impl Subscription {
    /// The changes since the last call (everything, the first time).
    pub fn take(&mut self) -> Changes {
        self.signal.borrow_and_update();
        std::mem::take(&mut *self.pending.lock().expect("changes"))
    }

    /// Waits for the next change; false once the cache is gone.
    pub async fn changed(&mut self) -> bool {
        self.signal.changed().await.is_ok()
    }
}

fn spawn_watch<K: Cached>(api: Api<K>, shared: Arc<Shared>) -> JoinHandle<()> {
    // Bursts of events are applied under one write lock and wake the controllers once.
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .ready_chunks(512);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut relist: Option<Vec<Arc<K>>> = None;
        let mut listed_once = false;
        while let Some(batch) = stream.next().await {
            let mut changes = Changes::default();
            let mut became_ready = false;
            {
                let mut state = shared.write().await;
                for event in batch {
                    match event {
                        Ok(watcher::Event::Apply(object)) => {
                            K::put(&mut state, Arc::new(object), &mut changes)
                        }
                        Ok(watcher::Event::Delete(object)) => {
                            K::remove(&mut state, &object, &mut changes)
                        }
                        Ok(watcher::Event::Init) => relist = Some(Vec::new()),
                        Ok(watcher::Event::InitApply(object)) => {
                            relist.get_or_insert_with(Vec::new).push(Arc::new(object))
                        }
                        Ok(watcher::Event::InitDone) => {
                            // A (re)list replaces this kind's objects at once; the
                            // controllers look at everything again.
                            K::clear(&mut state);
                            let mut ignored = Changes::default();
                            for object in relist.take().unwrap_or_default() {
                                K::put(&mut state, object, &mut ignored);
                            }
                            changes.everything = true;
                            if !listed_once {
                                listed_once = true;
                                became_ready = true;
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%error, "kubesim node cache: watch error, retrying")
                        }
                    }
                }
            }
            shared.publish(changes);
            if became_ready {
                shared.ready.send_modify(|n| *n += 1);
            }
        }
    })
}

impl ClusterCache {
    /// Starts the watches and waits for their first full list.
    pub async fn start(client: &kube::Client) -> anyhow::Result<ClusterCache> {
        let shared = Arc::new(Shared {
            state: RwLock::new(CacheState::default()),
            subscribers: Mutex::new(Vec::new()),
            signal: watch::channel(0).0,
            ready: watch::channel(0).0,
        });
        let mut ready = shared.ready.subscribe();
        let tasks = vec![
            spawn_watch(Api::<Pod>::all(client.clone()), shared.clone()),
            spawn_watch(Api::<Node>::all(client.clone()), shared.clone()),
            spawn_watch(
                Api::<PersistentVolumeClaim>::all(client.clone()),
                shared.clone(),
            ),
            spawn_watch(Api::<PersistentVolume>::all(client.clone()), shared.clone()),
            spawn_watch(Api::<StorageClass>::all(client.clone()), shared.clone()),
        ];
        let kinds = tasks.len();
        let cache = ClusterCache { shared, tasks };
        ready.wait_for(|n| *n >= kinds).await?;
        Ok(cache)
    }

    /// A new change feed; its first `take` reports everything.
    pub fn subscribe(&self) -> Subscription {
        let pending = Arc::new(Mutex::new(Changes {
            everything: true,
            ..Default::default()
        }));
        self.shared
            .subscribers
            .lock()
            .expect("subscribers")
            .push(pending.clone());
        Subscription {
            pending,
            signal: self.shared.signal.subscribe(),
        }
    }

    /// The current state of the caches, read-locked.
    pub fn read(&self) -> SnapshotGuard<'_> {
        SnapshotGuard(self.shared.state.read().unwrap_or_else(|e| e.into_inner()))
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

#[cfg(test)]
mod tests {
    use super::super::volume_matching::fixtures::{claim_ref, pv};
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn key(name: &str) -> ObjectKey {
        ("ns".to_string(), name.to_string())
    }

    #[test]
    fn pods_are_found_by_key_after_updates_and_removals() {
        let mut state = CacheState::default();
        let mut changes = Changes::default();
        for name in ["a", "b", "c", "d"] {
            Pod::put(&mut state, pod(name), &mut changes);
        }
        Pod::put(&mut state, pod("b"), &mut changes);
        Pod::remove(&mut state, &pod("a"), &mut changes);
        assert_eq!(state.snapshot.pods.len(), 3);
        for name in ["b", "c", "d"] {
            let slot = state.pod_slots[&key(name)];
            assert_eq!(
                state.snapshot.pods[slot].metadata.name.as_deref(),
                Some(name)
            );
        }
        assert!(!state.pod_slots.contains_key(&key("a")));
        assert_eq!(changes.pods.len(), 4);
        assert!(!changes.is_empty());
    }

    #[test]
    fn pvs_are_indexed_by_the_claim_their_claim_ref_names() {
        let mut state = CacheState::default();
        let mut changes = Changes::default();
        let free = pv("free", "1Gi", "standard", "Available");
        let mut claimed = pv("claimed", "1Gi", "standard", "Bound");
        claimed.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "data", Some("u1")));
        PersistentVolume::put(&mut state, Arc::new(free.clone()), &mut changes);
        PersistentVolume::put(&mut state, Arc::new(claimed.clone()), &mut changes);
        assert_eq!(state.free_pvs, HashSet::from(["free".to_string()]));
        assert_eq!(
            state.pvs_by_claim[&key("data")],
            HashSet::from(["claimed".to_string()])
        );
        // The free PV gets a claimRef: it moves from free to its claim.
        let mut reserved = free;
        reserved.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "other", None));
        PersistentVolume::put(&mut state, Arc::new(reserved), &mut changes);
        assert!(state.free_pvs.is_empty());
        assert_eq!(
            state.pvs_by_claim[&key("other")],
            HashSet::from(["free".to_string()])
        );
        // Removal drops the index entry.
        PersistentVolume::remove(&mut state, &claimed, &mut changes);
        assert!(!state.pvs_by_claim.contains_key(&key("data")));
        assert_eq!(
            changes.volumes,
            HashSet::from(["free".to_string(), "claimed".to_string()])
        );
    }
}
