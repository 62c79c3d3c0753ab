//! The scheduler controller: each round it takes a snapshot of the caches, places every
//! pending pod with [`SchedulingState`], and performs the API calls of the round
//! concurrently. Like kube-scheduler's volume binder it first sets `selected-node` on
//! WaitForFirstConsumer claims (or claims static PVs), keeps the pod "assumed" on the node,
//! and binds the pod (spec.nodeName, through pods/binding) only once all its claims are
//! bound to PVs reachable from that node. Kubernetes gives up after a bind timeout (10 min)
//! and reschedules; kubesim waits indefinitely.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::cache::{Changes, ClusterCache, ClusterSnapshot, ObjectKey, SnapshotGuard};
use super::events::{EventRecorder, object_reference};
use super::scheduling::{
    Placement, SchedulingState, VolumePlan, needs_scheduling, pod_claim_names,
};
use super::volume_matching::{
    SELECTED_NODE_ANNOTATION, annotation, claim_phase, claim_volume_name, name_of, namespace_of,
    pv_reachable_from, uid_of,
};

/// How many API calls the scheduler runs at once.
const CONCURRENCY: usize = 64;
/// How often unschedulable pods are retried without any change.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How long a round may decide while holding the cache's read lock.
const ROUND_BUDGET: Duration = Duration::from_millis(20);
/// How long a round waits for more changes to gather after the first.
const BATCH_DELAY: Duration = Duration::from_millis(5);

/// A pod given a node whose claims are still being provisioned/bound.
struct Waiting {
    node: String,
    pod: Arc<Pod>,
}

enum Action {
    SelectNode {
        namespace: String,
        claim: String,
        node: String,
    },
    ClaimStaticPv {
        pv: String,
        claim: Arc<PersistentVolumeClaim>,
    },
    Bind {
        pod: Arc<Pod>,
        node: String,
    },
    ReportUnschedulable {
        pod: Arc<Pod>,
        message: String,
    },
}

pub struct Scheduler {
    client: kube::Client,
    recorder: EventRecorder,
    /// Whether the server serves pods/binding (else spec.nodeName is patched).
    binding_subresource: AtomicBool,
}

fn object_key<K: kube::Resource>(object: &K) -> ObjectKey {
    (
        namespace_of(object).to_string(),
        name_of(object).to_string(),
    )
}

/// The scheduling queue and the scheduler's own not-yet-visible decisions, by pod
/// (namespace, name). Kept across rounds and updated from the cache's change feed, so a
/// round costs O(changed pods), not O(all pods).
#[derive(Default)]
struct Queue {
    /// Pods that need a node and have none planned.
    pending: HashMap<ObjectKey, Arc<Pod>>,
    /// Pending pods to try this round (new or changed ones; all after a relevant change).
    to_try: HashSet<ObjectKey>,
    /// Pods bound by this scheduler that the cache does not show bound yet.
    assumed: HashMap<ObjectKey, (String, Arc<Pod>)>,
    /// Pods given a node whose claims are still being provisioned/bound.
    waiting: HashMap<ObjectKey, Waiting>,
    /// Claim → waiting pods using it, to recheck only those when the claim changes.
    waiting_by_claim: HashMap<ObjectKey, HashSet<ObjectKey>>,
    /// Waiting pods to check this round.
    recheck: HashSet<ObjectKey>,
    /// Static PVs promised to claims and not yet visible as claimed.
    reserved_pvs: HashSet<String>,
    /// The Unschedulable message last sent per pod.
    reported: HashMap<ObjectKey, String>,
}

impl Queue {
    fn claim_keys(pod: &Pod) -> impl Iterator<Item = ObjectKey> + '_ {
        pod_claim_names(pod)
            .into_iter()
            .map(|c| (namespace_of(pod).to_string(), c))
    }

    fn index_waiting(&mut self, key: &ObjectKey, pod: &Pod) {
        for claim in Self::claim_keys(pod) {
            self.waiting_by_claim
                .entry(claim)
                .or_default()
                .insert(key.clone());
        }
    }

    fn unindex_waiting(&mut self, key: &ObjectKey, pod: &Pod) {
        for claim in Self::claim_keys(pod) {
            if let Some(pods) = self.waiting_by_claim.get_mut(&claim) {
                pods.remove(key);
                if pods.is_empty() {
                    self.waiting_by_claim.remove(&claim);
                }
            }
        }
    }

    fn forget(&mut self, key: &ObjectKey) {
        self.pending.remove(key);
        self.to_try.remove(key);
        self.assumed.remove(key);
        self.reported.remove(key);
        self.recheck.remove(key);
        if let Some(w) = self.waiting.remove(key) {
            self.unindex_waiting(key, &w.pod);
        }
    }

    /// A pod whose API call failed: schedule it again from scratch.
    fn failed(&mut self, key: ObjectKey) {
        if let Some((_, pod)) = self.assumed.remove(&key) {
            self.pending.insert(key.clone(), pod);
            self.to_try.insert(key);
        } else if let Some(w) = self.waiting.remove(&key) {
            self.unindex_waiting(&key, &w.pod);
            self.pending.insert(key.clone(), w.pod);
            self.to_try.insert(key);
        }
    }

    /// Applies the cache's changes: new, changed, bound and deleted pods, and what makes
    /// waiting or unschedulable pods worth another look.
    fn update(&mut self, snapshot: &SnapshotGuard, changes: &Changes, retry_all: bool) {
        let everything = changes.everything;
        let keys: Vec<ObjectKey> = if everything {
            let mut keys: HashSet<ObjectKey> = snapshot
                .pods
                .iter()
                .map(|p| object_key(p.as_ref()))
                .collect();
            keys.extend(self.pending.keys().cloned());
            keys.extend(self.assumed.keys().cloned());
            keys.extend(self.waiting.keys().cloned());
            keys.into_iter().collect()
        } else {
            changes.pods.iter().cloned().collect()
        };
        // A pod leaving the queue for good (bound, finished, deleted) frees room.
        let mut freed = false;
        for key in keys {
            let pod = snapshot.pod(&key).filter(|p| needs_scheduling(p));
            let Some(pod) = pod else {
                freed = true;
                self.forget(&key);
                continue;
            };
            let same = |other: &Pod| uid_of(other) == uid_of(pod.as_ref());
            if self.assumed.get(&key).is_some_and(|(_, p)| same(p))
                || self.waiting.get(&key).is_some_and(|w| same(&w.pod))
            {
                continue;
            }
            if self.pending.get(&key).is_some_and(|p| !same(p)) || !self.pending.contains_key(&key)
            {
                // New, or recreated under the same name.
                self.forget(&key);
            }
            self.pending.insert(key.clone(), pod.clone());
            self.to_try.insert(key);
        }
        // Reservations end once the PV shows a claimRef.
        self.reserved_pvs.retain(|pv| {
            snapshot
                .pvs
                .get(pv)
                .is_some_and(|p| p.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none())
        });
        // Waiting pods: recheck those whose claims or their PVs changed.
        if everything || changes.nodes {
            self.recheck.extend(self.waiting.keys().cloned());
        } else {
            let mut claims: Vec<&ObjectKey> = changes.claims.iter().collect();
            let pv_claims: Vec<ObjectKey> = changes
                .volumes
                .iter()
                .filter_map(|name| snapshot.pvs.get(name))
                .filter_map(|pv| pv.spec.as_ref()?.claim_ref.as_ref())
                .map(|r| {
                    (
                        r.namespace.clone().unwrap_or_default(),
                        r.name.clone().unwrap_or_default(),
                    )
                })
                .collect();
            claims.extend(pv_claims.iter());
            for claim in claims {
                if let Some(pods) = self.waiting_by_claim.get(claim) {
                    self.recheck.extend(pods.iter().cloned());
                }
            }
        }
        let relevant = everything
            || retry_all
            || freed
            || changes.nodes
            || changes.classes
            || !changes.claims.is_empty()
            || !changes.volumes.is_empty();
        if relevant {
            self.to_try.extend(self.pending.keys().cloned());
        }
    }
}

impl Scheduler {
    pub fn new(client: kube::Client) -> Self {
        Scheduler {
            recorder: EventRecorder::new(client.clone(), "default-scheduler"),
            client,
            binding_subresource: AtomicBool::new(true),
        }
    }

    pub async fn run(self, cache: Arc<ClusterCache>, stop: CancellationToken) {
        let this = Arc::new(self);
        let mut feed = cache.subscribe();
        let mut queue = Queue::default();
        // Pods whose API calls failed come back here to be scheduled again.
        let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectKey>();
        let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut last_retry = tokio::time::Instant::now();
        loop {
            let changes = feed.take();
            while let Ok(key) = failed_rx.try_recv() {
                queue.failed(key);
            }
            // Unschedulable pods are retried whenever the cluster changes, and every 5 s.
            let retry_all = last_retry.elapsed() >= RETRY_INTERVAL;
            if retry_all {
                last_retry = tokio::time::Instant::now();
            }
            let (actions, more) = {
                let snapshot = cache.read();
                queue.update(&snapshot, &changes, retry_all);
                this.plan_round(&snapshot, &mut queue)
            };
            if !actions.is_empty() {
                let (this, limit, failed_tx) = (this.clone(), limit.clone(), failed_tx.clone());
                // The calls run while the next round plans; the queue already counts the
                // pods as assumed or waiting, so they are not planned twice.
                tokio::spawn(async move {
                    futures::stream::iter(actions)
                        .for_each_concurrent(None, |action| {
                            let (this, limit, failed_tx) = (&this, &limit, &failed_tx);
                            async move {
                                let _permit = limit.acquire().await;
                                if let Err(key) = this.perform(action).await {
                                    let _ = failed_tx.send(key);
                                }
                            }
                        })
                        .await;
                });
            }
            if more {
                // A round stops after its time budget so the cache's lock is not held for
                // long; give the runtime a turn and go on.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                r = feed.changed() => if !r { return },
                Some(key) = failed_rx.recv() => queue.failed(key),
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
            }
            // Let a burst of changes gather into one round (the state a round builds is
            // O(nodes + pods), its decisions O(changed pods)).
            tokio::time::sleep(BATCH_DELAY).await;
        }
    }

    /// Plans one round; the second value says the time budget ran out with pods left.
    fn plan_round(&self, snapshot: &SnapshotGuard, queue: &mut Queue) -> (Vec<Action>, bool) {
        let mut actions = Vec::new();
        // Waiting pods whose volumes are now bound get bound to their node; a claim bound
        // elsewhere sends the pod back to scheduling.
        for key in std::mem::take(&mut queue.recheck) {
            let Some(w) = queue.waiting.get(&key) else {
                continue;
            };
            match claims_ready(&w.pod, &w.node, snapshot) {
                ClaimsState::Ready => {
                    let w = queue.waiting.remove(&key).expect("present");
                    queue.unindex_waiting(&key, &w.pod);
                    queue.assumed.insert(key, (w.node.clone(), w.pod.clone()));
                    actions.push(Action::Bind {
                        pod: w.pod,
                        node: w.node,
                    });
                }
                ClaimsState::Pending => {}
                ClaimsState::Conflict => {
                    let w = queue.waiting.remove(&key).expect("present");
                    queue.unindex_waiting(&key, &w.pod);
                    queue.to_try.insert(key.clone());
                    queue.pending.insert(key, w.pod);
                }
            }
        }
        if queue.to_try.is_empty() {
            return (actions, false);
        }
        let mut pending: Vec<(&ObjectKey, &Arc<Pod>)> = queue
            .to_try
            .iter()
            .filter_map(|k| queue.pending.get_key_value(k))
            .collect();
        // Higher priority first, then oldest first (kube-scheduler's queue order).
        pending.sort_by(|(_, a), (_, b)| {
            let order = |p: &Pod| {
                (
                    std::cmp::Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)),
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                )
            };
            order(a)
                .cmp(&order(b))
                .then_with(|| name_of(a.as_ref()).cmp(name_of(b.as_ref())))
        });
        let pending: Vec<(ObjectKey, Arc<Pod>)> = pending
            .into_iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        let placed = queue
            .assumed
            .values()
            .map(|(n, p)| (n.clone(), p.clone()))
            .chain(
                queue
                    .waiting
                    .values()
                    .map(|w| (w.node.clone(), w.pod.clone())),
            )
            .collect::<Vec<_>>();
        let claim_keys: Vec<ObjectKey> = pending
            .iter()
            .flat_map(|(_, p)| {
                let namespace = namespace_of(p.as_ref()).to_string();
                pod_claim_names(p)
                    .into_iter()
                    .map(move |c| (namespace.clone(), c))
            })
            .collect();
        let index = snapshot.pv_index(&claim_keys);
        let mut state =
            SchedulingState::with_pv_index(snapshot, placed, queue.reserved_pvs.clone(), index);
        let started = std::time::Instant::now();
        let mut more = false;
        for (key, pod) in pending {
            if started.elapsed() >= ROUND_BUDGET {
                more = true;
                break;
            }
            queue.to_try.remove(&key);
            match state.schedule(&pod) {
                Ok(placement) => {
                    state.assume(pod.clone(), &placement);
                    queue.pending.remove(&key);
                    queue.reported.remove(&key);
                    self.placement_actions(
                        &pod,
                        &placement,
                        snapshot,
                        &mut actions,
                        &mut queue.reserved_pvs,
                    );
                    if placement.volumes_ready() {
                        queue
                            .assumed
                            .insert(key, (placement.node.clone(), pod.clone()));
                        actions.push(Action::Bind {
                            pod,
                            node: placement.node,
                        });
                    } else {
                        queue.index_waiting(&key, &pod);
                        queue.waiting.insert(
                            key,
                            Waiting {
                                node: placement.node,
                                pod,
                            },
                        );
                    }
                }
                Err(unschedulable) => {
                    let current = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
                        .and_then(|c| c.message.as_deref());
                    // Reported already (the cache may not show it yet): not again.
                    let reported = queue.reported.get(&key).map(String::as_str);
                    if current != Some(unschedulable.message.as_str())
                        && reported != Some(unschedulable.message.as_str())
                    {
                        queue
                            .reported
                            .insert(key.clone(), unschedulable.message.clone());
                        actions.push(Action::ReportUnschedulable {
                            pod: pod.clone(),
                            message: unschedulable.message,
                        });
                    }
                }
            }
        }
        (actions, more)
    }

    fn placement_actions(
        &self,
        pod: &Pod,
        placement: &Placement,
        snapshot: &ClusterSnapshot,
        actions: &mut Vec<Action>,
        reserved_pvs: &mut HashSet<String>,
    ) {
        let namespace = namespace_of(pod);
        for plan in &placement.volumes {
            match plan {
                VolumePlan::Bound { .. } => {}
                VolumePlan::SelectNode { claim } => {
                    let current = snapshot
                        .pvc(namespace, claim)
                        .and_then(|c| annotation(c.as_ref(), SELECTED_NODE_ANNOTATION));
                    if current != Some(placement.node.as_str()) {
                        actions.push(Action::SelectNode {
                            namespace: namespace.into(),
                            claim: claim.clone(),
                            node: placement.node.clone(),
                        });
                    }
                }
                VolumePlan::BindStaticPv { claim, pv } => {
                    reserved_pvs.insert(pv.clone());
                    if let Some(claim) = snapshot.pvc(namespace, claim) {
                        actions.push(Action::ClaimStaticPv {
                            pv: pv.clone(),
                            claim: claim.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Performs one action; on failure returns the pod to schedule again.
    async fn perform(&self, action: Action) -> Result<(), ObjectKey> {
        match action {
            Action::SelectNode { namespace, claim, node } => {
                let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
                let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
                if let Err(error) = api.patch(&claim, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::warn!(%error, namespace, claim, "kubesim scheduler: could not set selected-node");
                }
                Ok(())
            }
            Action::ClaimStaticPv { pv, claim } => {
                // As kube-scheduler's binder: claimRef with uid and bound-by-controller; the
                // PV controller completes the binding.
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                let patch = serde_json::json!({
                    "metadata": {"annotations": {super::volume_matching::BOUND_BY_CONTROLLER_ANNOTATION: "yes"}},
                    "spec": {"claimRef": {
                        "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                        "namespace": namespace_of(claim.as_ref()), "name": name_of(claim.as_ref()),
                        "uid": uid_of(claim.as_ref()), "resourceVersion": claim.metadata.resource_version,
                    }}
                });
                if let Err(error) = api.patch(&pv, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::warn!(%error, pv, "kubesim scheduler: could not claim static PV");
                }
                Ok(())
            }
            Action::Bind { pod, node } => self.bind(&pod, &node).await.map_err(|error| {
                tracing::warn!(%error, pod = name_of(pod.as_ref()), node, "kubesim scheduler: binding failed");
                object_key(pod.as_ref())
            }),
            Action::ReportUnschedulable { pod, message } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace_of(pod.as_ref()));
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let patch = serde_json::json!({"status": {"phase": "Pending", "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": message, "lastTransitionTime": now, "lastProbeTime": null,
                }]}});
                if let Err(error) = api
                    .patch_status(name_of(pod.as_ref()), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(%error, "kubesim scheduler: could not set PodScheduled=False");
                }
                self.recorder
                    .record(object_reference(pod.as_ref()), "Warning", "FailedScheduling", &message)
                    .await;
                Ok(())
            }
        }
    }

    async fn bind(&self, pod: &Pod, node: &str) -> kube::Result<()> {
        let name = name_of(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace_of(pod));
        if self.binding_subresource.load(Ordering::Relaxed) {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(namespace_of(pod).into()),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    api_version: Some("v1".into()),
                    name: Some(node.into()),
                    ..Default::default()
                },
            };
            match api
                .create_subresource::<Binding, serde_json::Value>(
                    "binding",
                    name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => {
                    self.recorder
                        .record(
                            object_reference(pod),
                            "Normal",
                            "Scheduled",
                            &format!(
                                "Successfully assigned {}/{name} to {node}",
                                namespace_of(pod)
                            ),
                        )
                        .await;
                    return Ok(());
                }
                Err(kube::Error::Api(e))
                    if e.code == 404 && e.reason != "NotFound" || e.code == 405 =>
                {
                    tracing::info!(
                        "kubesim scheduler: pods/binding not served, patching spec.nodeName instead"
                    );
                    self.binding_subresource.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let patch = serde_json::json!({"spec": {"nodeName": node}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // What the API server's binding does: PodScheduled=True.
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "True", "lastTransitionTime": now, "lastProbeTime": null,
        }]}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        self.recorder
            .record(
                object_reference(pod),
                "Normal",
                "Scheduled",
                &format!(
                    "Successfully assigned {}/{name} to {node}",
                    namespace_of(pod)
                ),
            )
            .await;
        Ok(())
    }
}

enum ClaimsState {
    Ready,
    Pending,
    /// A claim bound to a PV the node cannot reach: schedule again.
    Conflict,
}

fn claims_ready(pod: &Pod, node: &str, snapshot: &ClusterSnapshot) -> ClaimsState {
    let Some(node) = snapshot.node(node) else {
        return ClaimsState::Conflict;
    };
    let mut all_bound = true;
    for claim_name in pod_claim_names(pod) {
        let Some(claim) = snapshot.pvc(namespace_of(pod), &claim_name) else {
            return ClaimsState::Conflict;
        };
        match claim_volume_name(claim).and_then(|v| snapshot.pvs.get(v)) {
            Some(pv) if claim_phase(claim) == "Bound" => {
                if !pv_reachable_from(pv, node) {
                    return ClaimsState::Conflict;
                }
            }
            _ => all_bound = false,
        }
    }
    if all_bound {
        ClaimsState::Ready
    } else {
        ClaimsState::Pending
    }
}
