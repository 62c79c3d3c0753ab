//! What wakes the controller: watches (kube-runtime watchers feeding reflector stores) on
//! everything a restore waits for — the DataDownloads in the namespace, the restore pods and
//! PVCs (by label), the target PVCs and PVs, the nodes, the StorageClasses and the node-agent
//! ConfigMap; for backups the DataUploads, the backup pods, and the VolumeSnapshots and their
//! contents. A relevant change wakes a pass at once; wakes that arrive while a pass runs
//! are coalesced into one next pass. The stores also serve the reads of a pass, so a pass
//! costs no API reads unless a store is behind the controller's own writes (see
//! [`OwnWrites`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::crds::{DATA_DOWNLOAD_LABEL, DATA_UPLOAD_LABEL, DataDownload, DataUpload};
use crate::metrics::Metrics;

/// What the controller watches.
#[derive(Debug, Clone)]
pub struct WatchScope {
    /// ferry's namespace: DataDownloads, restore pods and PVCs, the ConfigMap.
    pub namespace: String,
    pub node_agent_configmap: String,
    /// Only DataDownloads with this `spec.datamover` (and what they wait on) wake a pass.
    pub data_mover_name: String,
}

/// Wakes the reconcile loop; wakes while nobody waits are kept as one (coalesced).
#[derive(Clone)]
pub struct Waker {
    notify: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Waker {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            notify: Arc::new(Notify::new()),
            metrics,
        }
    }

    /// Asks for a pass because of a change to `source` (a resource name, for metrics).
    pub fn wake(&self, source: &str) {
        self.metrics.wakeup(source);
        self.notify.notify_one();
    }

    /// Resolves once a wake arrived since the last call.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

/// The watches and their stores.
pub struct Watches {
    pub downloads: Store<DataDownload>,
    /// DataUploads and backup pods: not part of [`Watches::synced`] (a cluster without the
    /// DataUpload CRD must not slow restores down); see [`Watches::uploads_synced`].
    pub uploads: Store<DataUpload>,
    pub backup_pods: Store<Pod>,
    /// VolumeSnapshots (cluster-wide: a backup's source is in its workload's namespace) and
    /// VolumeSnapshotContents. Not part of [`Watches::uploads_synced`] either: without the
    /// snapshot CRDs, or with RBAC from before ferry watched them, these never sync and
    /// backups read snapshots from the API server (see [`Watches::snapshots_synced`]).
    pub snapshots: Store<DynamicObject>,
    pub snapshot_contents: Store<DynamicObject>,
    pub pods: Store<Pod>,
    pub pvcs: Store<PersistentVolumeClaim>,
    pub pvs: Store<PersistentVolume>,
    pub nodes: Store<Node>,
    pub configmaps: Store<ConfigMap>,
    pub storage_classes: Store<StorageClass>,
    pub own_writes: OwnWrites,
    pub waker: Waker,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Watches {
    /// Starts every watch; the first lists run in the background (see [`Watches::synced`]).
    pub fn start(client: kube::Client, scope: WatchScope, waker: Waker) -> Watches {
        let ns = scope.namespace.as_str();
        let mut tasks = Vec::new();

        let mover = scope.data_mover_name.clone();
        let (downloads, t) = watch(
            Api::<DataDownload>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            "datadownloads",
            &waker,
            move |dd: &DataDownload, old: Option<&DataDownload>| {
                dd.spec.is_for_data_mover(&mover) && changed(dd, old)
            },
        );
        tasks.push(t);
        let mover = scope.data_mover_name.clone();
        let (uploads, uploads_task) = watch(
            Api::<DataUpload>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            "datauploads",
            &waker,
            move |du: &DataUpload, old: Option<&DataUpload>| {
                du.spec.is_for_data_mover(&mover) && changed(du, old)
            },
        );
        let (backup_pods, backup_pods_task) = watch(
            Api::<Pod>::namespaced(client.clone(), ns),
            watcher::Config::default().labels(DATA_UPLOAD_LABEL),
            "pods",
            &waker,
            |pod: &Pod, old: Option<&Pod>| changed(pod, old),
        );
        let backing_up = BackingUp {
            uploads: uploads.clone(),
            data_mover_name: scope.data_mover_name.clone(),
        };
        let b = backing_up.clone();
        let (snapshots, snapshots_task) = watch_dynamic(
            &client,
            crate::crds::snapshot_resource(),
            "volumesnapshots",
            &waker,
            move |vs, old| changed(vs, old) && b.any(),
        );
        let b = backing_up;
        let (snapshot_contents, contents_task) = watch_dynamic(
            &client,
            crate::crds::content_resource(),
            "volumesnapshotcontents",
            &waker,
            move |vsc, old| changed(vsc, old) && b.any(),
        );
        let active = Active {
            downloads: downloads.clone(),
            data_mover_name: scope.data_mover_name.clone(),
            namespace: scope.namespace.clone(),
        };

        // Restore pods carry the DataDownload label; nothing else in the namespace matters.
        let (pods, t) = watch(
            Api::<Pod>::namespaced(client.clone(), ns),
            watcher::Config::default().labels(DATA_DOWNLOAD_LABEL),
            "pods",
            &waker,
            |pod: &Pod, old: Option<&Pod>| changed(pod, old),
        );
        tasks.push(t);

        // Target PVCs live in the workloads' namespaces, so PVCs are watched cluster-wide;
        // only restore PVCs and targets of unfinished restores wake a pass.
        let a = active.clone();
        let (pvcs, t) = watch(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
            "persistentvolumeclaims",
            &waker,
            move |pvc: &PersistentVolumeClaim, old: Option<&PersistentVolumeClaim>| {
                changed(pvc, old) && a.pvc_matters(pvc)
            },
        );
        tasks.push(t);

        let a = active.clone();
        let (pvs, t) = watch(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
            "persistentvolumes",
            &waker,
            move |pv: &PersistentVolume, old: Option<&PersistentVolume>| {
                changed(pv, old) && a.pv_matters(pv)
            },
        );
        tasks.push(t);

        // Nodes change often (status heartbeats); only what placement reads wakes a pass.
        let a = active.clone();
        let (nodes, t) = watch(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            "nodes",
            &waker,
            move |node: &Node, old: Option<&Node>| {
                old.is_none_or(|o| placement_view(o) != placement_view(node)) && a.any()
            },
        );
        tasks.push(t);

        let a = active;
        let (storage_classes, t) = watch(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
            "storageclasses",
            &waker,
            move |sc: &StorageClass, old: Option<&StorageClass>| changed(sc, old) && a.any(),
        );
        tasks.push(t);

        let (configmaps, t) = watch(
            Api::<ConfigMap>::namespaced(client, ns),
            watcher::Config::default()
                .fields(&format!("metadata.name={}", scope.node_agent_configmap)),
            "configmaps",
            &waker,
            |cm: &ConfigMap, old: Option<&ConfigMap>| changed(cm, old),
        );
        tasks.push(t);

        tasks.push(uploads_task);
        tasks.push(backup_pods_task);
        tasks.push(snapshots_task);
        tasks.push(contents_task);
        Watches {
            downloads,
            uploads,
            backup_pods,
            snapshots,
            snapshot_contents,
            pods,
            pvcs,
            pvs,
            nodes,
            configmaps,
            storage_classes,
            own_writes: OwnWrites::default(),
            waker,
            tasks,
        }
    }

    /// Whether every store holds a complete list (until then, reads go to the API server).
    pub fn synced(&self) -> bool {
        is_ready(&self.downloads)
            && is_ready(&self.pods)
            && is_ready(&self.pvcs)
            && is_ready(&self.pvs)
            && is_ready(&self.nodes)
            && is_ready(&self.storage_classes)
            && is_ready(&self.configmaps)
    }

    /// Whether the DataUpload and backup pod stores hold a complete list.
    pub fn uploads_synced(&self) -> bool {
        is_ready(&self.uploads) && is_ready(&self.backup_pods)
    }

    /// Whether the VolumeSnapshot and VolumeSnapshotContent stores hold a complete list.
    pub fn snapshots_synced(&self) -> bool {
        is_ready(&self.snapshots) && is_ready(&self.snapshot_contents)
    }

    /// Whether the backup pods' store holds a complete list (it does without DataUploads).
    pub fn backup_pods_synced(&self) -> bool {
        is_ready(&self.backup_pods)
    }
}

/// Whether a DataUpload of this data mover is unfinished, to tell whether a snapshot change
/// matters.
#[derive(Clone)]
struct BackingUp {
    uploads: Store<DataUpload>,
    data_mover_name: String,
}

impl BackingUp {
    fn any(&self) -> bool {
        self.uploads
            .state()
            .iter()
            .any(|du| du.spec.is_for_data_mover(&self.data_mover_name) && du.unfinished())
    }
}

/// Which DataDownloads are unfinished, to tell whether a PVC, PV or node change matters.
#[derive(Clone)]
struct Active {
    downloads: Store<DataDownload>,
    data_mover_name: String,
    namespace: String,
}

impl Active {
    fn unfinished(&self) -> impl Iterator<Item = Arc<DataDownload>> + '_ {
        self.downloads
            .state()
            .into_iter()
            .filter(|dd| dd.spec.is_for_data_mover(&self.data_mover_name))
            .filter(|dd| !dd.phase().is_terminal())
    }

    fn any(&self) -> bool {
        self.unfinished().next().is_some()
    }

    fn is_target(&self, ns: Option<&str>, name: Option<&str>) -> bool {
        self.unfinished().any(|dd| {
            let t = &dd.spec.target_volume;
            ns == Some(t.namespace.as_str()) && name == Some(t.pvc.as_str())
        })
    }

    fn pvc_matters(&self, pvc: &PersistentVolumeClaim) -> bool {
        let m = &pvc.metadata;
        (m.namespace.as_deref() == Some(self.namespace.as_str()) && has_label(m.labels.as_ref()))
            || self.is_target(m.namespace.as_deref(), m.name.as_deref())
    }

    fn pv_matters(&self, pv: &PersistentVolume) -> bool {
        let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        has_label(pv.metadata.labels.as_ref())
            || claim.is_some_and(|c| {
                c.namespace.as_deref() == Some(self.namespace.as_str())
                    || self.is_target(c.namespace.as_deref(), c.name.as_deref())
            })
    }
}

/// A restore's or a backup's own object (a backup pod waits for its PVC to be bound too).
fn has_label(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| l.contains_key(DATA_DOWNLOAD_LABEL) || l.contains_key(DATA_UPLOAD_LABEL))
}

/// A new object, or one whose resourceVersion moved.
fn changed<K: Resource>(new: &K, old: Option<&K>) -> bool {
    old.is_none_or(|o| o.meta().resource_version != new.meta().resource_version)
}

/// The parts of a node placement reads: labels, taints, schedulability, readiness.
fn placement_view(node: &Node) -> impl PartialEq + use<> {
    let spec = node.spec.clone().unwrap_or_default();
    let ready = crate::placement::ready_status(node).map(str::to_string);
    (
        node.metadata.labels.clone(),
        spec.taints,
        spec.unschedulable,
        ready,
    )
}

/// One watch feeding one store; `relevant(new, old)` decides whether a change wakes a pass.
/// A (re)list that completes always wakes one: it may hide changes missed meanwhile.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    source: &'static str,
    waker: &Waker,
    relevant: impl Fn(&K, Option<&K>) -> bool + Send + 'static,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let writer = reflector::store::Writer::default();
    let reader = writer.as_reader();
    let task = follow(
        api,
        config,
        (),
        writer,
        source,
        waker,
        relevant,
        Failures::Warn,
    );
    (reader, task)
}

/// A watch of objects kube-rs knows only at run time (the snapshot CRDs), as [`watch`]. The
/// CRDs may be missing and the RBAC of an older install may not allow the watch: then the
/// store never fills, said once, and the watch keeps retrying with backoff.
fn watch_dynamic(
    client: &kube::Client,
    resource: ApiResource,
    source: &'static str,
    waker: &Waker,
    relevant: impl Fn(&DynamicObject, Option<&DynamicObject>) -> bool + Send + 'static,
) -> (Store<DynamicObject>, JoinHandle<()>) {
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    let config = watcher::Config::default();
    let task = follow(
        api,
        config,
        resource,
        writer,
        source,
        waker,
        relevant,
        Failures::SayOnce,
    );
    (reader, task)
}

/// How a watch reports that it failed (it retries with backoff either way).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failures {
    /// Every failure, as a warning: the watch is needed.
    Warn,
    /// The first as information, the rest at debug: the watch is optional.
    SayOnce,
}

/// Feeds `writer` from the watch and wakes a pass on a relevant change.
#[allow(clippy::too_many_arguments)]
fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    dyntype: K::DynamicType,
    mut writer: reflector::store::Writer<K>,
    source: &'static str,
    waker: &Waker,
    relevant: impl Fn(&K, Option<&K>) -> bool + Send + 'static,
    failures: Failures,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let store = writer.as_reader();
    let waker = waker.clone();
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut failed_before = false;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(e) => e,
                Err(err) => {
                    match failures {
                        Failures::Warn => {
                            tracing::warn!(resource = source, error = %err, "watch failed; retrying with backoff")
                        }
                        Failures::SayOnce if !failed_before => {
                            tracing::info!(resource = source, error = %err, "cannot watch; backups read them from the API server while the watch retries")
                        }
                        Failures::SayOnce => {
                            tracing::debug!(resource = source, error = %err, "watch failed; retrying with backoff")
                        }
                    }
                    failed_before = true;
                    continue;
                }
            };
            let wake = match &event {
                Event::Apply(obj) => {
                    let old = store.get(&ObjectRef::from_obj_with(obj, dyntype.clone()));
                    relevant(obj, old.as_deref())
                }
                Event::Delete(obj) => relevant(obj, None),
                Event::InitDone => true,
                Event::Init | Event::InitApply(_) => false,
            };
            // The first InitDone marks the store ready (`Store::wait_until_ready`).
            writer.apply_watcher_event(&event);
            if wake {
                waker.wake(source);
            }
        }
    })
}

/// Whether `store` holds its first complete list, without waiting for it.
fn is_ready<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

/// Read-your-own-writes for the stores: every write the controller makes records the
/// resourceVersion the API server answered with; until a store shows that version (or a later
/// one), reads of that object go to the API server instead. Without this, a pass woken by an
/// unrelated event could act on a DataDownload as it was before the controller's last step
/// (accepting it twice, or counting a node slot it already took).
///
/// resourceVersions are compared as integers, which holds on every etcd-backed API server;
/// one that does not parse never counts as seen, so that object is read from the API server
/// until the record expires.
#[derive(Default)]
pub struct OwnWrites {
    written: Mutex<HashMap<WriteKey, (u64, Instant)>>,
}

/// Kind and `namespace/name` of a written object.
type WriteKey = (&'static str, String);

/// How long a write is remembered; a store normally catches up within milliseconds.
const OWN_WRITE_MEMORY: Duration = Duration::from_secs(60);

fn version<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

fn key<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default()
    )
}

impl OwnWrites {
    /// Remembers the object the API server returned from a write of `kind`.
    pub fn wrote<K: Resource>(&self, kind: &'static str, written: &K) {
        let v = version(written).unwrap_or(u64::MAX);
        let mut map = self.written.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at)| at.elapsed() < OWN_WRITE_MEMORY);
        map.insert((kind, key(written)), (v, Instant::now()));
    }

    /// Whether `cached` (the store's copy of `namespace/name`, None if absent) reflects every
    /// write this controller made to it; forgets the write once it does.
    pub fn caught_up<K: Resource>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        cached: Option<&K>,
    ) -> bool {
        let k = (kind, format!("{namespace}/{name}"));
        let mut map = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let Some((wrote, at)) = map.get(&k).copied() else {
            return true;
        };
        let seen = cached.and_then(version).is_some_and(|v| v >= wrote);
        if seen || at.elapsed() >= OWN_WRITE_MEMORY {
            map.remove(&k);
            return true;
        }
        false
    }

    /// Whether any write of `kind` is not yet visible in `store`.
    pub fn any_pending<K>(&self, kind: &'static str, store: &Store<K>) -> bool
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        let pending: Vec<String> = {
            let map = self.written.lock().unwrap_or_else(|e| e.into_inner());
            map.keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, key)| key.clone())
                .collect()
        };
        pending.iter().any(|key| {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            let cached = if ns.is_empty() {
                store.get(&ObjectRef::new(name))
            } else {
                store.get(&ObjectRef::new(name).within(ns))
            };
            !self.caught_up(kind, ns, name, cached.as_deref())
        })
    }
}

/// An [`Api`] whose patches are recorded in [`OwnWrites`], so reads from the store never go
/// back behind them. Everything else derefs to the plain [`Api`] and is not recorded: a write
/// other than `patch` (say `replace`) needs a recording wrapper here before the reconciler uses it.
pub struct RecordedApi<K> {
    api: Api<K>,
    watches: Arc<Watches>,
    kind: &'static str,
}

impl<K> RecordedApi<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    pub fn new(api: Api<K>, watches: Arc<Watches>, kind: &'static str) -> Self {
        Self { api, watches, kind }
    }

    pub async fn patch<P: serde::Serialize + Debug>(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &Patch<P>,
    ) -> kube::Result<K> {
        let written = self.api.patch(name, params, patch).await?;
        self.watches.own_writes.wrote(self.kind, &written);
        Ok(written)
    }
}

impl<K> std::ops::Deref for RecordedApi<K> {
    type Target = Api<K>;
    fn deref(&self) -> &Api<K> {
        &self.api
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn a_store_is_ready_once_its_first_list_is_done_and_stays_ready() {
        let (store, mut writer) = reflector::store::<Pod>();
        assert!(!is_ready(&store));
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(pod("a", "1")));
        assert!(!is_ready(&store), "half a list is not a list");
        writer.apply_watcher_event(&Event::InitDone);
        assert!(is_ready(&store));
        // A relist after a watch error keeps serving the old list meanwhile.
        writer.apply_watcher_event(&Event::Init);
        assert!(is_ready(&store));
        assert_eq!(store.state().len(), 1);
    }

    fn pod(name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn a_store_is_behind_until_it_shows_the_written_version() {
        let w = OwnWrites::default();
        assert!(
            w.caught_up::<Pod>("pods", "ns", "p", None),
            "nothing written"
        );
        w.wrote("pods", &pod("p", "12"));
        assert!(
            !w.caught_up::<Pod>("pods", "ns", "p", None),
            "not in the store yet"
        );
        assert!(
            !w.caught_up("pods", "ns", "p", Some(&pod("p", "11"))),
            "older copy"
        );
        assert!(
            w.caught_up("pods", "ns", "p", Some(&pod("p", "13"))),
            "a later version"
        );
        // Forgotten once seen.
        assert!(w.caught_up("pods", "ns", "p", Some(&pod("p", "5"))));
    }

    #[test]
    fn a_version_that_does_not_parse_is_never_seen() {
        let w = OwnWrites::default();
        w.wrote("pods", &pod("p", "opaque"));
        assert!(!w.caught_up("pods", "ns", "p", Some(&pod("p", "opaque"))));
    }

    #[test]
    fn pending_writes_are_checked_against_the_store() {
        let (store, mut writer) = reflector::store::<Pod>();
        let w = OwnWrites::default();
        assert!(!w.any_pending("pods", &store));
        w.wrote("pods", &pod("p", "7"));
        assert!(w.any_pending("pods", &store));
        writer.apply_watcher_event(&Event::Apply(pod("p", "7")));
        assert!(!w.any_pending("pods", &store));
    }

    #[test]
    fn node_heartbeats_do_not_change_the_placement_view() {
        let mut a = Node::default();
        a.metadata.labels = Some([("zone".to_string(), "z1".to_string())].into());
        let mut b = a.clone();
        b.metadata.resource_version = Some("99".into());
        assert!(placement_view(&a) == placement_view(&b));
        b.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            unschedulable: Some(true),
            ..Default::default()
        });
        assert!(placement_view(&a) != placement_view(&b));
    }

    #[tokio::test]
    async fn wakes_coalesce_into_one() {
        let waker = Waker::new(Arc::new(Metrics::default()));
        waker.wake("pods");
        waker.wake("pods");
        waker.woken().await;
        let again = tokio::time::timeout(Duration::from_millis(50), waker.woken()).await;
        assert!(again.is_err(), "two wakes before a wait are one pass");
    }
}
