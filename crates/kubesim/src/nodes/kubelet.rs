//! The kubelets: one manager plays the kubelet of every node kubesim registered (one task
//! per pod, so 1,000 nodes cost nothing while idle). A pod bound to one of these nodes
//! starts once each of its claims is Bound to a PV reachable from the node; a deleted pod's
//! processes get SIGTERM, then SIGKILL after the grace period, and a pod marked for
//! deletion is removed once its processes are gone. A NotReady node's kubelet is "down":
//! it starts nothing new.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cache::{Changes, ClusterCache, ClusterSnapshot, ObjectKey, SnapshotGuard};
use super::pod_access::PodAccess;
use super::pod_runtime::{PodLaunch, PodStop, VolumeTarget, run_pod};
use super::scheduling::{is_terminal, pod_claim_names};
use super::volume_data::pv_data_path;
use super::volume_matching::{
    claim_phase, claim_volume_name, name_of, namespace_of, pv_reachable_from, pv_volume_mode,
    uid_of,
};

struct RunningPod {
    stop: PodStop,
    /// The pod's terminationGracePeriodSeconds, for when it vanishes without notice.
    grace_seconds: i64,
    task: JoinHandle<()>,
}

pub struct Kubelets {
    client: kube::Client,
    data_dir: PathBuf,
    image_binaries: BTreeMap<String, PathBuf>,
    extra_env: BTreeMap<String, String>,
    access: PodAccess,
    /// The nodes these kubelets serve.
    nodes: HashSet<String>,
    running: HashMap<String, RunningPod>,
    /// Pods whose run ended (kept so they are not started again).
    finished: HashSet<String>,
    /// Pods already asked to be removed.
    deleting: HashSet<String>,
    /// Running pods' uids by (namespace, name), to stop a pod the cache no longer has.
    uids: HashMap<ObjectKey, String>,
    /// Pods not started because a claim was not usable yet, by that claim.
    blocked_by_claim: HashMap<ObjectKey, HashSet<ObjectKey>>,
    next_ip: u32,
}

/// How often every pod is looked at (finished processes do not show in the cache).
const FULL_SYNC: Duration = Duration::from_millis(500);

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn node_ip(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// The grace period a deletion gives: deletionGracePeriodSeconds, else the pod's
/// terminationGracePeriodSeconds, else 30 s.
fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
}

/// `<namespace>_<name>` under `DATA_DIR/pods`.
pub fn pod_dir(data_dir: &std::path::Path, namespace: &str, name: &str) -> PathBuf {
    data_dir.join("pods").join(format!("{namespace}_{name}"))
}

impl Kubelets {
    pub fn new(
        client: kube::Client,
        data_dir: PathBuf,
        image_binaries: BTreeMap<String, PathBuf>,
        extra_env: BTreeMap<String, String>,
        access: PodAccess,
        nodes: HashSet<String>,
    ) -> Self {
        Kubelets {
            client,
            data_dir,
            image_binaries,
            extra_env,
            access,
            nodes,
            running: HashMap::new(),
            finished: HashSet::new(),
            deleting: HashSet::new(),
            uids: HashMap::new(),
            blocked_by_claim: HashMap::new(),
            next_ip: 0,
        }
    }

    pub async fn run(mut self, cache: Arc<ClusterCache>, stop: CancellationToken) {
        let mut feed = cache.subscribe();
        let mut last_full = tokio::time::Instant::now();
        loop {
            let changes = feed.take();
            // Finished pod tasks do not show in the cache: every pod is looked at again
            // now and then; otherwise only changed pods and pods waiting on changed volumes.
            let full = changes.everything || changes.nodes || last_full.elapsed() >= FULL_SYNC;
            {
                let snapshot = cache.read();
                if full {
                    last_full = tokio::time::Instant::now();
                    self.sync(&snapshot);
                } else {
                    self.sync_changed(&snapshot, &changes);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                r = feed.changed() => if !r { break },
                _ = tokio::time::sleep(FULL_SYNC) => {}
            }
        }
        // Shutting down: every process goes at once.
        for pod in self.running.values() {
            pod.stop.stop(0);
        }
        for (_, pod) in self.running.drain() {
            let _ = pod.task.await;
        }
    }

    /// Looks at the changed pods, and at the pods whose claims (or their PVs) changed while
    /// they waited for them.
    fn sync_changed(&mut self, snapshot: &SnapshotGuard, changes: &Changes) {
        let mut keys: HashSet<ObjectKey> = changes.pods.clone();
        let pv_claims = changes
            .volumes
            .iter()
            .filter_map(|name| snapshot.pvs.get(name))
            .filter_map(|pv| pv.spec.as_ref()?.claim_ref.as_ref())
            .map(|r| {
                (
                    r.namespace.clone().unwrap_or_default(),
                    r.name.clone().unwrap_or_default(),
                )
            });
        for claim in changes.claims.iter().cloned().chain(pv_claims) {
            if let Some(pods) = self.blocked_by_claim.remove(&claim) {
                keys.extend(pods);
            }
        }
        for key in keys {
            let pod = snapshot.pod(&key).filter(|p| self.serves(p));
            match pod {
                Some(pod) => self.sync_pod(pod, snapshot),
                None => {
                    // Gone (or moved away from these nodes): stop what runs.
                    if let Some(uid) = self.uids.get(&key)
                        && let Some(running) = self.running.get(uid)
                    {
                        running.stop.stop(running.grace_seconds);
                    }
                }
            }
        }
    }

    fn serves(&self, pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| self.nodes.contains(n))
    }

    /// One pod that is on these nodes: stop it if deleted, else start it when it can.
    fn sync_pod(&mut self, pod: &Arc<Pod>, snapshot: &ClusterSnapshot) {
        let uid = uid_of(pod.as_ref());
        if let Some(running) = self.running.get(uid) {
            if pod.metadata.deletion_timestamp.is_some() {
                running.stop.stop(grace_seconds(pod));
            }
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            // Nothing runs (any more): complete the deletion, as the kubelet does.
            if self.deleting.insert(uid.to_string()) {
                self.remove_pod(pod);
            }
            return;
        }
        if self.finished.contains(uid) || is_terminal(pod) {
            return;
        }
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let Some(node) = snapshot.node(node_name) else {
            return;
        };
        if !node_ready(node) {
            return;
        }
        let Some(volumes) = self.pod_volumes(pod, node, snapshot) else {
            let key = (
                namespace_of(pod.as_ref()).to_string(),
                name_of(pod.as_ref()).to_string(),
            );
            for claim in pod_claim_names(pod) {
                self.blocked_by_claim
                    .entry((key.0.clone(), claim))
                    .or_default()
                    .insert(key.clone());
            }
            return;
        };
        self.start(Arc::clone(pod), node, volumes);
    }

    fn sync(&mut self, snapshot: &ClusterSnapshot) {
        self.blocked_by_claim.clear();
        let pods: HashMap<&str, &Arc<Pod>> = snapshot
            .pods
            .iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| self.nodes.contains(n))
            })
            .map(|p| (uid_of(p.as_ref()), p))
            .collect();
        // Deleted pods: stop their processes.
        for (uid, running) in &self.running {
            match pods.get(uid.as_str()) {
                None => running.stop.stop(running.grace_seconds),
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    running.stop.stop(grace_seconds(pod))
                }
                Some(_) => {}
            }
        }
        let ended: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in ended {
            self.running.remove(&uid);
            self.finished.insert(uid);
        }
        self.finished.retain(|uid| pods.contains_key(uid.as_str()));
        self.deleting.retain(|uid| pods.contains_key(uid.as_str()));
        let running = &self.running;
        self.uids.retain(|_, uid| running.contains_key(uid));
        for pod in pods.into_values() {
            self.sync_pod(pod, snapshot);
        }
    }

    /// Where each of the pod's volumes is, or None while a claim is not usable here yet.
    fn pod_volumes(
        &self,
        pod: &Pod,
        node: &Node,
        snapshot: &ClusterSnapshot,
    ) -> Option<BTreeMap<String, VolumeTarget>> {
        let namespace = namespace_of(pod);
        let dir = pod_dir(&self.data_dir, namespace, name_of(pod));
        let mut volumes = BTreeMap::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let target = if let Some(source) = &volume.persistent_volume_claim {
                let claim = snapshot.pvc(namespace, &source.claim_name)?;
                if claim_phase(claim) != "Bound" {
                    return None;
                }
                let pv = snapshot.pvs.get(claim_volume_name(claim)?)?;
                if !pv_reachable_from(pv, node) {
                    return None;
                }
                // A CSI volume of kubesim's driver is mounted by its handle.
                let path = pv_data_path(pv, &self.data_dir)?;
                if pv_volume_mode(pv) == "Block" {
                    VolumeTarget::File(path)
                } else {
                    VolumeTarget::Dir(path)
                }
            } else if let Some(host) = &volume.host_path {
                VolumeTarget::Dir(host.path.clone().into())
            } else {
                // emptyDir, configMap, secret, projected (service account token: left
                // empty), downwardAPI (left empty) and anything else: a pod-local directory.
                VolumeTarget::Dir(dir.join("volumes").join(&volume.name))
            };
            volumes.insert(volume.name.clone(), target);
        }
        Some(volumes)
    }

    fn start(&mut self, pod: Arc<Pod>, node: &Node, volumes: BTreeMap<String, VolumeTarget>) {
        self.next_ip += 1;
        let n = self.next_ip;
        let launch = PodLaunch {
            client: self.client.clone(),
            pod_dir: pod_dir(
                &self.data_dir,
                namespace_of(pod.as_ref()),
                name_of(pod.as_ref()),
            ),
            volumes,
            image_binaries: self.image_binaries.clone(),
            extra_env: self.extra_env.clone(),
            access: self.access.clone(),
            cluster_kubeconfig: self.data_dir.join("kubeconfig"),
            host_ip: node_ip(node),
            pod_ip: format!(
                "10.{}.{}.{}",
                244 + (n >> 16) % 12,
                (n >> 8) & 0xff,
                n & 0xff
            ),
            pod,
        };
        let uid = uid_of(launch.pod.as_ref()).to_string();
        self.uids.insert(
            (
                namespace_of(launch.pod.as_ref()).to_string(),
                name_of(launch.pod.as_ref()).to_string(),
            ),
            uid.clone(),
        );
        let grace_seconds = grace_seconds(launch.pod.as_ref());
        let stop = PodStop::new();
        let task = tokio::spawn(run_pod(launch, stop.clone()));
        self.running.insert(
            uid,
            RunningPod {
                stop,
                grace_seconds,
                task,
            },
        );
    }

    fn remove_pod(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace_of(pod));
        let name = name_of(pod).to_string();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        tokio::spawn(async move {
            if let Err(error) = api.delete(&name, &params).await {
                tracing::debug!(%error, name, "kubesim kubelet: could not remove the pod");
            }
        });
    }
}
