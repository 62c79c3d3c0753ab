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

use super::cache::{ClusterCache, ClusterSnapshot};
use super::events::{EventRecorder, object_reference};
use super::scheduling::{
    Placement, SchedulingState, VolumePlan, needs_scheduling, pod_claim_names,
};
use super::volume_matching::{
    SELECTED_NODE_ANNOTATION, annotation, claim_phase, claim_volume_name, name_of, namespace_of,
    pv_reachable_from, uid_of,
};

/// How many API calls a round runs at once.
const CONCURRENCY: usize = 64;

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

fn pod_key(pod: &Pod) -> String {
    uid_of(pod).to_string()
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
        let mut changes = cache.subscribe();
        // Pods bound by this scheduler that the cache does not show bound yet.
        let mut assumed: HashMap<String, (String, Arc<Pod>)> = HashMap::new();
        let mut waiting: HashMap<String, Waiting> = HashMap::new();
        let mut reserved_pvs: HashSet<String> = HashSet::new();
        loop {
            changes.borrow_and_update();
            let snapshot = cache.snapshot();
            let actions = self.plan_round(&snapshot, &mut assumed, &mut waiting, &mut reserved_pvs);
            if !actions.is_empty() {
                let failed: Vec<String> = futures::stream::iter(actions)
                    .map(|action| self.perform(action))
                    .buffer_unordered(CONCURRENCY)
                    .filter_map(|r| async move { r.err() })
                    .collect()
                    .await;
                // A failed bind is retried next round.
                for uid in failed {
                    assumed.remove(&uid);
                    waiting.remove(&uid);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
                // Retry unschedulable pods now and then even without changes.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    fn plan_round(
        &self,
        snapshot: &ClusterSnapshot,
        assumed: &mut HashMap<String, (String, Arc<Pod>)>,
        waiting: &mut HashMap<String, Waiting>,
        reserved_pvs: &mut HashSet<String>,
    ) -> Vec<Action> {
        let pods: HashMap<&str, &Arc<Pod>> = snapshot
            .pods
            .iter()
            .map(|p| (uid_of(p.as_ref()), p))
            .collect();
        assumed.retain(|uid, _| pods.get(uid.as_str()).is_some_and(|p| needs_scheduling(p)));
        waiting.retain(|uid, _| pods.get(uid.as_str()).is_some_and(|p| needs_scheduling(p)));
        // Reservations end once the PV shows a claimRef.
        reserved_pvs.retain(|pv| {
            snapshot
                .pvs
                .get(pv)
                .is_some_and(|p| p.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none())
        });
        let mut actions = Vec::new();
        // Waiting pods whose volumes are now bound get bound to their node; a claim bound
        // elsewhere sends the pod back to scheduling.
        let mut ready = Vec::new();
        waiting.retain(|uid, w| match claims_ready(&w.pod, &w.node, snapshot) {
            ClaimsState::Ready => {
                ready.push((uid.clone(), w.node.clone(), w.pod.clone()));
                false
            }
            ClaimsState::Pending => true,
            ClaimsState::Conflict => false,
        });
        for (uid, node, pod) in ready {
            assumed.insert(uid, (node.clone(), pod.clone()));
            actions.push(Action::Bind { pod, node });
        }
        let mut pending: Vec<&Arc<Pod>> = snapshot
            .pods
            .iter()
            .filter(|p| needs_scheduling(p))
            .filter(|p| {
                !assumed.contains_key(uid_of(p.as_ref()))
                    && !waiting.contains_key(uid_of(p.as_ref()))
            })
            .collect();
        if pending.is_empty() {
            return actions;
        }
        // Higher priority first, then oldest first (kube-scheduler's queue order).
        pending.sort_by_key(|p| {
            (
                std::cmp::Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)),
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                name_of(p.as_ref()).to_string(),
            )
        });
        let placed = assumed
            .values()
            .map(|(n, p)| (n.clone(), p.clone()))
            .chain(waiting.values().map(|w| (w.node.clone(), w.pod.clone())))
            .collect::<Vec<_>>();
        let mut state = SchedulingState::new(snapshot, placed, reserved_pvs.clone());
        for pod in pending {
            match state.schedule(pod) {
                Ok(placement) => {
                    state.assume(pod.clone(), &placement);
                    self.placement_actions(pod, &placement, snapshot, &mut actions, reserved_pvs);
                    let uid = pod_key(pod);
                    if placement.volumes_ready() {
                        assumed.insert(uid, (placement.node.clone(), pod.clone()));
                        actions.push(Action::Bind {
                            pod: pod.clone(),
                            node: placement.node,
                        });
                    } else {
                        waiting.insert(
                            uid,
                            Waiting {
                                node: placement.node,
                                pod: pod.clone(),
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
                        .and_then(|c| c.message.clone());
                    if current.as_deref() != Some(unschedulable.message.as_str()) {
                        actions.push(Action::ReportUnschedulable {
                            pod: pod.clone(),
                            message: unschedulable.message,
                        });
                    }
                }
            }
        }
        actions
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

    /// Performs one action; on failure returns the uid of the pod to retry.
    async fn perform(&self, action: Action) -> Result<(), String> {
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
                pod_key(&pod)
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
