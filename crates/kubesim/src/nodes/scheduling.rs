//! The scheduler's decision for one pod over a snapshot: the filter plugins in Kubernetes'
//! order (NodeUnschedulable, TaintToleration, NodeAffinity, NodeResourcesFit, VolumeBinding,
//! PodTopologySpread), reporting the first failing filter per node, then a score.
//!
//! Simplifications (documented in docs/kubesim-nodes.md): scoring is "ScheduleAnyway spread
//! penalty, then fewest pods", ties broken at random; no preemption, no inter-pod affinity,
//! no host ports, no preferred node affinity, no PreferNoSchedule, no matchLabelKeys.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, TopologySpreadConstraint};

use super::cache::ClusterSnapshot;
use super::matching::{first_untolerated_taint, label_selector_matches, node_selector_terms_match};
use super::quantity::quantity_value;
use super::volume_matching::{
    available_pvs_for, claim_class_name, claim_volume_name, labels_of, name_of, namespace_of,
    prebound_pv_for, pv_reachable_from,
};

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// What the scheduler does for one claim of the chosen node's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumePlan {
    /// Bound to a PV reachable from the node: nothing to do.
    Bound { claim: String },
    /// WaitForFirstConsumer claim to be provisioned: annotate it with the node.
    SelectNode { claim: String },
    /// WaitForFirstConsumer claim matched to an existing PV: set the PV's claimRef.
    BindStaticPv { claim: String, pv: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    /// In the order of the pod's volumes.
    pub volumes: Vec<VolumePlan>,
}

impl Placement {
    /// Whether the pod can be bound to its node right away (all claims already bound).
    pub fn volumes_ready(&self) -> bool {
        self.volumes
            .iter()
            .all(|v| matches!(v, VolumePlan::Bound { .. }))
    }
}

/// Why a pod fits no node, worded like Kubernetes' FitError.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub message: String,
}

/// The pod's PVC claim names, in volume order.
pub fn pod_claim_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        })
        .collect()
}

/// A pod the scheduler should place: default scheduler, no node yet, not terminating, no
/// scheduling gates.
pub fn needs_scheduling(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec.scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// cpu (cores) and memory (bytes) requested by a pod: the sum over its containers, or the
/// largest init container if larger (the effective request in Kubernetes).
pub fn pod_requests(pod: &Pod) -> (f64, f64) {
    let Some(spec) = pod.spec.as_ref() else {
        return (0.0, 0.0);
    };
    let request = |c: &k8s_openapi::api::core::v1::Container, key: &str| {
        quantity_value(
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(key)),
        )
    };
    let sum = |key: &str| spec.containers.iter().map(|c| request(c, key)).sum::<f64>();
    let init_max = |key: &str| {
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| request(c, key))
            .fold(0.0, f64::max)
    };
    (
        sum("cpu").max(init_max("cpu")),
        sum("memory").max(init_max("memory")),
    )
}

/// What is placed on each node: pods bound in the cache plus pods assumed this round.
#[derive(Default)]
struct NodeLoad {
    pods: Vec<Arc<Pod>>,
    cpu: f64,
    memory: f64,
}

/// The scheduler's view for a round: the snapshot plus its own not-yet-visible decisions.
/// Per-node data is kept by the node's position in `snapshot.nodes`, so the per-node filter
/// loop does no hashing.
pub struct SchedulingState<'a> {
    snapshot: &'a ClusterSnapshot,
    /// Node name → position in `snapshot.nodes`.
    node_slots: HashMap<&'a str, usize>,
    load: Vec<NodeLoad>,
    /// Allocatable (pods, cpu, memory) per node, parsed once per round.
    allocatable: Vec<Option<(f64, f64, f64)>>,
    /// Where the next pod's node search starts (kube-scheduler's nextStartNodeIndex).
    next_start: std::cell::Cell<usize>,
    /// PVs with a claimRef, by the claim's (namespace, name).
    claimed_pvs: HashMap<(&'a str, &'a str), Vec<&'a k8s_openapi::api::core::v1::PersistentVolume>>,
    /// Available PVs without claimRef (candidates for static binding).
    free_pvs: Vec<&'a k8s_openapi::api::core::v1::PersistentVolume>,
    /// PVs promised to claims by this scheduler and not yet visible as claimed.
    reserved_pvs: HashSet<String>,
}

/// Per-pod facts computed once before the per-node filters (Kubernetes' PreFilter).
struct PodFacts<'p> {
    claims: Vec<ClaimFacts<'p>>,
    spread: Vec<SpreadFacts<'p>>,
    cpu: f64,
    memory: f64,
}

enum ClaimFacts<'p> {
    Bound {
        claim: &'p str,
        pv: Option<&'p k8s_openapi::api::core::v1::PersistentVolume>,
    },
    /// WaitForFirstConsumer and unbound: a matching static PV on the node, or provisioning
    /// allowed by the class's allowedTopologies.
    Delayed {
        claim: &'p str,
        static_pvs: Vec<&'p k8s_openapi::api::core::v1::PersistentVolume>,
        /// A PV reserved for the claim by claimRef: only its node will do.
        prebound: bool,
        class: Option<&'p k8s_openapi::api::storage::v1::StorageClass>,
    },
}

struct SpreadFacts<'p> {
    constraint: &'p TopologySpreadConstraint,
    /// Domain value → matching pods in that domain (over eligible nodes only).
    counts: HashMap<String, usize>,
    min_count: usize,
    self_match: usize,
}

const NODE_AFFINITY_REASON: &str = "node(s) didn't match Pod's node affinity/selector";
const VOLUME_AFFINITY_REASON: &str = "node(s) had volume node affinity conflict";
const VOLUME_BIND_REASON: &str = "node(s) didn't find available persistent volumes to bind";
const SPREAD_REASON: &str = "node(s) didn't match pod topology spread constraints";
const SPREAD_LABEL_REASON: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

fn node_affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = labels_of(node);
    if let Some(selector) = &spec.node_selector
        && !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(selector) => {
            node_selector_terms_match(&selector.node_selector_terms, name_of(node), labels)
        }
    }
}

/// kube-scheduler's numFeasibleNodesToFind with the default adaptive percentage.
fn feasible_nodes_to_find(total: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if total < MIN_FEASIBLE {
        return total;
    }
    let percentage = (50 - (total / 125) as i64).max(5) as usize;
    (total * percentage / 100).max(MIN_FEASIBLE)
}

fn fits_message(total: usize, reasons: &BTreeMap<String, usize>, resolvable: usize) -> String {
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    // Kubernetes sorts the "count reason" strings.
    parts.sort();
    // Preemption could only free resources: on nodes whose room it could free it finds no
    // victims (kubesim does not model priorities: every pod is equal), the others it cannot
    // help.
    let short = resolvable;
    let mut preemption = Vec::new();
    if short > 0 {
        preemption.push(format!(
            "{short} No preemption victims found for incoming pod"
        ));
    }
    if total > short {
        preemption.push(format!(
            "{} Preemption is not helpful for scheduling",
            total - short
        ));
    }
    preemption.sort();
    format!(
        "0/{total} nodes are available: {}.{POST_FILTER} 0/{total} nodes are available: {}.",
        parts.join(", "),
        preemption.join(", ")
    )
}

/// What kube-scheduler 1.34's PostFilter plugins add: dynamic resources (on by default, with
/// no claims to free), then default preemption.
const POST_FILTER: &str = " no new claims to deallocate, preemption:";

fn prefilter_message(total: usize, reason: &str) -> String {
    format!(
        "0/{total} nodes are available: {reason}.{POST_FILTER} 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    )
}

impl<'a> SchedulingState<'a> {
    /// `assumed`: pods this scheduler placed (or reserved a node for while waiting on
    /// volumes) that the snapshot does not show on a node yet; `reserved_pvs`: static PVs it
    /// promised.
    pub fn new(
        snapshot: &'a ClusterSnapshot,
        assumed: impl IntoIterator<Item = (String, Arc<Pod>)>,
        reserved_pvs: HashSet<String>,
    ) -> Self {
        Self::with_pv_index(
            snapshot,
            assumed,
            reserved_pvs,
            super::cache::PvIndex::new(snapshot),
        )
    }

    /// As `new`, with the PVs already indexed by claimRef (the cache keeps that index; it
    /// needs to hold only the claims of the pods to schedule and the PVs without claimRef).
    pub fn with_pv_index(
        snapshot: &'a ClusterSnapshot,
        assumed: impl IntoIterator<Item = (String, Arc<Pod>)>,
        reserved_pvs: HashSet<String>,
        pv_index: super::cache::PvIndex<'a>,
    ) -> Self {
        let allocatable = snapshot
            .nodes
            .iter()
            .map(|n| {
                let a = n.status.as_ref()?.allocatable.as_ref()?;
                let value = |key: &str| {
                    a.get(key)
                        .map_or(f64::INFINITY, |q| quantity_value(Some(q)))
                };
                Some((value("pods"), value("cpu"), value("memory")))
            })
            .collect();
        let node_slots: HashMap<&str, usize> = snapshot
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (name_of(n.as_ref()), i))
            .collect();
        let start = if snapshot.nodes.is_empty() {
            0
        } else {
            rand::random_range(0..snapshot.nodes.len())
        };
        let mut state = SchedulingState {
            snapshot,
            load: (0..snapshot.nodes.len())
                .map(|_| NodeLoad::default())
                .collect(),
            node_slots,
            allocatable,
            next_start: std::cell::Cell::new(start),
            claimed_pvs: pv_index.claimed,
            free_pvs: pv_index.free,
            reserved_pvs,
        };
        for pod in &snapshot.pods {
            if let Some(node) = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty())
                && !is_terminal(pod)
            {
                state.add_pod(node, pod.clone());
            }
        }
        for (node, pod) in assumed {
            state.add_pod(&node, pod);
        }
        state
    }

    /// Pods on nodes that are not (or no longer) in the snapshot do not matter.
    fn add_pod(&mut self, node: &str, pod: Arc<Pod>) {
        let Some(&slot) = self.node_slots.get(node) else {
            return;
        };
        let (cpu, memory) = pod_requests(&pod);
        let load = &mut self.load[slot];
        load.cpu += cpu;
        load.memory += memory;
        load.pods.push(pod);
    }

    /// Records a placement so later decisions in the same round see it.
    pub fn assume(&mut self, pod: Arc<Pod>, placement: &Placement) {
        for plan in &placement.volumes {
            if let VolumePlan::BindStaticPv { pv, .. } = plan {
                self.reserved_pvs.insert(pv.clone());
            }
        }
        self.add_pod(&placement.node, pod);
    }

    pub fn pods_on(&self, node: &str) -> usize {
        self.node_slots
            .get(node)
            .map_or(0, |&slot| self.load[slot].pods.len())
    }

    fn prefilter<'p>(&'p self, pod: &'p Pod) -> Result<PodFacts<'p>, String> {
        let namespace = namespace_of(pod);
        let mut claims = Vec::new();
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten();
        for volume in volumes {
            let Some(source) = &volume.persistent_volume_claim else {
                continue;
            };
            let claim_name = source.claim_name.as_str();
            let Some(claim) = self.snapshot.pvc(namespace, claim_name) else {
                return Err(format!("persistentvolumeclaim \"{claim_name}\" not found"));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!(
                    "persistentvolumeclaim \"{claim_name}\" is being deleted"
                ));
            }
            claims.push(self.claim_facts(claim_name, claim)?);
        }
        let spread = self.spread_facts(pod);
        let (cpu, memory) = pod_requests(pod);
        Ok(PodFacts {
            claims,
            spread,
            cpu,
            memory,
        })
    }

    fn claim_facts<'p>(
        &'p self,
        claim_name: &'p str,
        claim: &'p PersistentVolumeClaim,
    ) -> Result<ClaimFacts<'p>, String> {
        if let Some(volume) = claim_volume_name(claim) {
            return Ok(ClaimFacts::Bound {
                claim: claim_name,
                pv: self.snapshot.pvs.get(volume).map(|p| p.as_ref()),
            });
        }
        let class = self.snapshot.class_of_claim(claim).map(|c| c.as_ref());
        let delayed =
            class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        if !delayed {
            // The PV controller binds these on its own; the pod waits for it.
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        let claimed = self
            .claimed_pvs
            .get(&(namespace_of(claim), name_of(claim)))
            .into_iter()
            .flatten()
            .copied();
        let prebound = prebound_pv_for(claim, claimed);
        let static_pvs = match prebound {
            Some(pv) => vec![pv],
            None => available_pvs_for(
                claim,
                &claim_class_name(claim, self.snapshot),
                self.free_pvs.iter().copied(),
            )
            .into_iter()
            .filter(|pv| !self.reserved_pvs.contains(name_of(*pv)))
            .collect(),
        };
        Ok(ClaimFacts::Delayed {
            claim: claim_name,
            static_pvs,
            prebound: prebound.is_some(),
            class,
        })
    }

    fn spread_facts<'p>(&'p self, pod: &'p Pod) -> Vec<SpreadFacts<'p>> {
        let constraints = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .into_iter()
            .flatten();
        let namespace = namespace_of(pod);
        constraints
            .map(|constraint| {
                let key = constraint.topology_key.as_str();
                let matches = |other: &Pod| {
                    constraint
                        .label_selector
                        .as_ref()
                        .is_some_and(|s| label_selector_matches(s, labels_of(other)))
                };
                let honor_affinity = constraint
                    .node_affinity_policy
                    .as_deref()
                    .unwrap_or("Honor")
                    == "Honor";
                let honor_taints = constraint.node_taints_policy.as_deref() == Some("Honor");
                let tolerations = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.tolerations.clone())
                    .unwrap_or_default();
                let mut counts: HashMap<String, usize> = HashMap::new();
                for (slot, node) in self.snapshot.nodes.iter().enumerate() {
                    let Some(domain) = labels_of(node.as_ref()).get(key) else {
                        continue;
                    };
                    if honor_affinity && !node_affinity_matches(pod, node) {
                        continue;
                    }
                    if honor_taints && first_untolerated_taint(node, &tolerations).is_some() {
                        continue;
                    }
                    let here = self.load[slot]
                        .pods
                        .iter()
                        .filter(|p| namespace_of(p.as_ref()) == namespace)
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter(|p| matches(p))
                        .count();
                    *counts.entry(domain.clone()).or_default() += here;
                }
                let min_domains = constraint.min_domains.unwrap_or(1).max(1) as usize;
                let min_count = if counts.len() < min_domains {
                    0
                } else {
                    counts.values().copied().min().unwrap_or(0)
                };
                SpreadFacts {
                    constraint,
                    counts,
                    min_count,
                    self_match: usize::from(matches(pod)),
                }
            })
            .collect()
    }

    /// The first failing filter for one node (at `slot` in the snapshot), as the reason
    /// Kubernetes reports.
    fn filter(&self, pod: &Pod, facts: &PodFacts, slot: usize) -> Result<(), String> {
        let node = self.snapshot.nodes[slot].as_ref();
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let node_spec = node.spec.as_ref();
        if node_spec.and_then(|s| s.unschedulable).unwrap_or(false) {
            let unschedulable_taint = k8s_openapi::api::core::v1::Taint {
                key: "node.kubernetes.io/unschedulable".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            };
            if !tolerations
                .iter()
                .any(|t| super::matching::toleration_tolerates(t, &unschedulable_taint))
            {
                return Err("node(s) were unschedulable".into());
            }
        }
        // kube-scheduler 1.34 names no taint (it logs it at verbosity 4).
        if first_untolerated_taint(node, tolerations).is_some() {
            return Err("node(s) had untolerated taint(s)".into());
        }
        if !node_affinity_matches(pod, node) {
            return Err(NODE_AFFINITY_REASON.into());
        }
        self.fits_resources(facts, slot)?;
        self.volume_plans(facts, node, false)?;
        for spread in &facts.spread {
            if spread.constraint.when_unsatisfiable != "DoNotSchedule" {
                continue;
            }
            let Some(domain) = labels_of(node).get(&spread.constraint.topology_key) else {
                return Err(SPREAD_LABEL_REASON.into());
            };
            let count = spread.counts.get(domain).copied().unwrap_or(0);
            if count + spread.self_match
                > spread.min_count + spread.constraint.max_skew.max(0) as usize
            {
                return Err(SPREAD_REASON.into());
            }
        }
        Ok(())
    }

    /// Whether a node refused for `reason` could take the pod once others were evicted: short
    /// of pod slots, or of cpu/memory that its allocatable holds (kube-scheduler's
    /// NodeResourcesFit marks a request beyond allocatable unresolvable).
    fn preemption_could_help(&self, facts: &PodFacts, slot: usize, reason: &str) -> bool {
        let Some((_, max_cpu, max_memory)) = self.allocatable[slot] else {
            return false;
        };
        match reason {
            "Too many pods" => true,
            "Insufficient cpu" => facts.cpu <= max_cpu,
            "Insufficient memory" => facts.memory <= max_memory,
            _ => false,
        }
    }

    fn fits_resources(&self, facts: &PodFacts, slot: usize) -> Result<(), String> {
        let Some((max_pods, max_cpu, max_memory)) = self.allocatable[slot] else {
            return Ok(());
        };
        let load = &self.load[slot];
        let (pods, cpu, memory) = (load.pods.len(), load.cpu, load.memory);
        if (pods + 1) as f64 > max_pods {
            return Err("Too many pods".into());
        }
        if facts.cpu > 0.0 && cpu + facts.cpu > max_cpu {
            return Err("Insufficient cpu".into());
        }
        if facts.memory > 0.0 && memory + facts.memory > max_memory {
            return Err("Insufficient memory".into());
        }
        Ok(())
    }

    /// What to do for each claim on this node, or why the node does not do; with
    /// `want_plans` false only the verdict is computed (no allocation in the node loop).
    fn volume_plans(
        &self,
        facts: &PodFacts,
        node: &Node,
        want_plans: bool,
    ) -> Result<Vec<VolumePlan>, String> {
        let mut plans = Vec::new();
        let mut taken: Vec<&str> = Vec::new();
        for claim in &facts.claims {
            match claim {
                ClaimFacts::Bound { claim, pv } => match pv {
                    None => return Err(
                        "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
                            .into(),
                    ),
                    Some(pv) if !pv_reachable_from(pv, node) => {
                        return Err(VOLUME_AFFINITY_REASON.into());
                    }
                    Some(_) if want_plans => plans.push(VolumePlan::Bound {
                        claim: claim.to_string(),
                    }),
                    Some(_) => {}
                },
                ClaimFacts::Delayed {
                    claim,
                    static_pvs,
                    prebound,
                    class,
                } => {
                    let on_node = static_pvs
                        .iter()
                        .find(|pv| pv_reachable_from(pv, node) && !taken.contains(&name_of(**pv)));
                    if let Some(pv) = on_node {
                        taken.push(name_of(*pv));
                        if want_plans {
                            plans.push(VolumePlan::BindStaticPv {
                                claim: claim.to_string(),
                                pv: name_of(*pv).to_string(),
                            });
                        }
                        continue;
                    }
                    if *prebound {
                        return Err(VOLUME_AFFINITY_REASON.into());
                    }
                    // Dynamic provisioning: a provisioner must exist and the class's
                    // allowedTopologies must admit the node.
                    let Some(class) = class else {
                        return Err(VOLUME_BIND_REASON.into());
                    };
                    if class.provisioner == "kubernetes.io/no-provisioner"
                        || !super::matching::allowed_topologies_match(
                            class.allowed_topologies.as_deref(),
                            labels_of(node),
                        )
                    {
                        return Err(VOLUME_BIND_REASON.into());
                    }
                    if want_plans {
                        plans.push(VolumePlan::SelectNode {
                            claim: claim.to_string(),
                        });
                    }
                }
            }
        }
        Ok(plans)
    }

    /// ScheduleAnyway penalty: how crowded the node's domains already are.
    fn spread_penalty(&self, facts: &PodFacts, node: &Node) -> usize {
        facts
            .spread
            .iter()
            .filter(|s| s.constraint.when_unsatisfiable == "ScheduleAnyway")
            .map(|s| match labels_of(node).get(&s.constraint.topology_key) {
                Some(domain) => s
                    .counts
                    .get(domain)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(s.min_count),
                None => usize::MAX / 1024,
            })
            .sum()
    }

    /// Chooses a node for the pod, or says why none fits.
    ///
    /// As kube-scheduler (percentageOfNodesToScore unset), the search stops once enough
    /// feasible nodes are found: all of them below 100 nodes, else an adaptive share
    /// (50% − nodes/125, at least 5% and 100 nodes), starting where the previous search
    /// stopped. A pod that fits nowhere has every node filtered, so its message counts all.
    pub fn schedule(&self, pod: &Pod) -> Result<Placement, Unschedulable> {
        let total = self.snapshot.nodes.len();
        if total == 0 {
            return Err(Unschedulable {
                message: "no nodes available to schedule pods".into(),
            });
        }
        let facts = self.prefilter(pod).map_err(|reason| Unschedulable {
            message: prefilter_message(total, &reason),
        })?;
        let wanted = feasible_nodes_to_find(total);
        let start = self.next_start.get() % total;
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        // Nodes where evicting pods could make room (preemption's candidates).
        let mut resolvable = 0;
        let mut best: Vec<usize> = Vec::new();
        let mut best_score = (usize::MAX, usize::MAX);
        let mut feasible = 0;
        let mut processed = 0;
        for offset in 0..total {
            if feasible >= wanted {
                break;
            }
            processed += 1;
            let slot = (start + offset) % total;
            match self.filter(pod, &facts, slot) {
                Err(reason) => {
                    if self.preemption_could_help(&facts, slot, &reason) {
                        resolvable += 1;
                    }
                    *reasons.entry(reason).or_default() += 1
                }
                Ok(()) => {
                    feasible += 1;
                    let node = self.snapshot.nodes[slot].as_ref();
                    let score = (
                        self.spread_penalty(&facts, node),
                        self.load[slot].pods.len(),
                    );
                    if score < best_score {
                        best_score = score;
                        best.clear();
                    }
                    if score == best_score {
                        best.push(slot);
                    }
                }
            }
        }
        self.next_start.set((start + processed) % total);
        if best.is_empty() {
            return Err(Unschedulable {
                message: fits_message(total, &reasons, resolvable),
            });
        }
        // Kubernetes picks at random among the best-scored nodes.
        let pick = if best.len() == 1 {
            0
        } else {
            rand::random_range(0..best.len())
        };
        let node = self.snapshot.nodes[best[pick]].as_ref();
        let volumes = self
            .volume_plans(&facts, node, true)
            .expect("the chosen node passed the volume filter");
        Ok(Placement {
            node: name_of(node).to_string(),
            volumes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::bootstrap::{node_object, storage_class};
    use super::super::volume_matching::fixtures::{claim, claim_ref, pv};
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, Container, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        PersistentVolumeClaimVolumeSource, PodSpec, Taint, Toleration, Volume,
    };
    use k8s_openapi::api::core::v1::{
        NodeSelectorTerm as Term, TopologySelectorLabelRequirement, TopologySelectorTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn cluster(nodes: usize, zones: usize) -> ClusterSnapshot {
        let mut s = ClusterSnapshot {
            nodes: (0..nodes)
                .map(|i| Arc::new(node_object(i, zones)))
                .collect(),
            ..Default::default()
        };
        s.nodes
            .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for class in [
            storage_class("standard", "WaitForFirstConsumer", true),
            storage_class("immediate", "Immediate", false),
        ] {
            s.classes
                .insert(class.metadata.name.clone().unwrap(), Arc::new(class));
        }
        s
    }

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    fn with_claim(mut pod: Pod, claim: &str) -> Pod {
        pod.spec
            .as_mut()
            .unwrap()
            .volumes
            .get_or_insert_default()
            .push(Volume {
                name: claim.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    read_only: None,
                }),
                ..Default::default()
            });
        pod
    }

    fn add_claim(s: &mut ClusterSnapshot, c: PersistentVolumeClaim) {
        s.pvcs
            .insert((namespace_of(&c).into(), name_of(&c).into()), Arc::new(c));
    }

    fn node_term(key: &str, op: &str, values: &[&str]) -> Term {
        Term {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        }
    }

    fn required_affinity(pod: &mut Pod, terms: Vec<NodeSelectorTerm>) {
        pod.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Default::default()
        });
    }

    #[test]
    fn node_selector_and_affinity_restrict_nodes() {
        let s = cluster(4, 2);
        let state = SchedulingState::new(&s, [], HashSet::new());
        let mut p = pod("p");
        p.spec.as_mut().unwrap().node_selector = Some(
            [(
                "topology.kubernetes.io/zone".to_string(),
                "zone-2".to_string(),
            )]
            .into(),
        );
        for _ in 0..20 {
            let node = state.schedule(&p).unwrap().node;
            assert!(node == "node-2" || node == "node-4", "{node}");
        }
        let mut q = pod("q");
        required_affinity(
            &mut q,
            vec![node_term(
                "kubernetes.io/hostname",
                "NotIn",
                &["node-1", "node-2", "node-3"],
            )],
        );
        assert_eq!(state.schedule(&q).unwrap().node, "node-4");
        let mut by_field = pod("f");
        required_affinity(
            &mut by_field,
            vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec!["node-3".into()]),
                }]),
            }],
        );
        assert_eq!(state.schedule(&by_field).unwrap().node, "node-3");
    }

    #[test]
    fn large_clusters_stop_the_node_search_as_kube_scheduler_does() {
        assert_eq!(feasible_nodes_to_find(4), 4);
        assert_eq!(feasible_nodes_to_find(99), 99);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
        let s = cluster(1000, 3);
        let mut state = SchedulingState::new(&s, [], HashSet::new());
        // Placements still spread: each search scores 420 feasible nodes and prefers the
        // emptiest, so 1,000 pods leave no node with more than 2 (a node outside one
        // search's window may stay empty a little longer).
        for i in 0..1000 {
            let p = Arc::new(pod(&format!("p{i}")));
            let placement = state.schedule(&p).unwrap();
            state.assume(p, &placement);
        }
        let busiest = s
            .nodes
            .iter()
            .map(|n| state.pods_on(name_of(n.as_ref())))
            .max();
        assert!(busiest <= Some(2), "{busiest:?}");
        let used = s
            .nodes
            .iter()
            .filter(|n| state.pods_on(name_of(n.as_ref())) > 0)
            .count();
        assert!(used >= 900, "{used}");
        // A pod that fits nowhere has every node counted in its message.
        let mut nowhere = pod("nowhere");
        nowhere.spec.as_mut().unwrap().node_selector =
            Some([("disk".to_string(), "ssd".to_string())].into());
        let err = state.schedule(&nowhere).unwrap_err();
        assert!(
            err.message.starts_with(
                "0/1000 nodes are available: 1000 node(s) didn't match Pod's node affinity/selector."
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn unschedulable_message_counts_reasons_per_node() {
        let mut s = cluster(4, 0);
        // node-1 tainted, node-2 cordoned; the pod wants node-1 or node-2 or node-3 by name.
        let mut n1 = (*s.nodes[0]).clone();
        n1.spec.get_or_insert_default().taints = Some(vec![Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }]);
        s.nodes[0] = Arc::new(n1);
        let mut n2 = (*s.nodes[1]).clone();
        n2.spec.get_or_insert_default().unschedulable = Some(true);
        s.nodes[1] = Arc::new(n2);
        let state = SchedulingState::new(&s, [], HashSet::new());
        let mut p = pod("p");
        p.spec.as_mut().unwrap().node_selector =
            Some([("kubernetes.io/hostname".to_string(), "node-1".to_string())].into());
        let err = state.schedule(&p).unwrap_err();
        assert!(
            err.message.starts_with(
                "0/4 nodes are available: 1 node(s) had untolerated taint(s), 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector."
            ),
            "{}",
            err.message
        );
        // Tolerating the taint makes node-1 feasible.
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("node.kubernetes.io/not-ready".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert_eq!(state.schedule(&p).unwrap().node, "node-1");
    }

    #[test]
    fn prefers_nodes_with_fewer_pods() {
        let s = cluster(3, 0);
        let mut state = SchedulingState::new(&s, [], HashSet::new());
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for i in 0..30 {
            let p = Arc::new(pod(&format!("p{i}")));
            let placement = state.schedule(&p).unwrap();
            *per_node.entry(placement.node.clone()).or_default() += 1;
            state.assume(p, &placement);
        }
        assert_eq!(
            per_node.values().copied().collect::<Vec<_>>(),
            vec![10, 10, 10]
        );
    }

    #[test]
    fn topology_spread_do_not_schedule_filters_by_max_skew() {
        let mut s = cluster(4, 0);
        // Three matching pods already on node-1.
        for i in 0..3 {
            let mut p = pod(&format!("old{i}"));
            p.spec.as_mut().unwrap().node_name = Some("node-1".into());
            s.pods.push(Arc::new(p));
        }
        let state = SchedulingState::new(&s, [], HashSet::new());
        let mut p = pod("new");
        p.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "kubernetes.io/hostname".into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    match_expressions: None,
                }),
                ..Default::default()
            }]);
        // Only node-1 allowed by affinity: skew would be 4 - 0 > 1 (min over eligible = node-1 only → 3)...
        // With all four nodes eligible, node-1 is filtered, the others fit.
        for _ in 0..20 {
            assert_ne!(state.schedule(&p).unwrap().node, "node-1");
        }
        p.spec.as_mut().unwrap().node_selector =
            Some([("kubernetes.io/hostname".to_string(), "node-1".to_string())].into());
        p.spec
            .as_mut()
            .unwrap()
            .topology_spread_constraints
            .as_mut()
            .unwrap()[0]
            .node_affinity_policy = Some("Ignore".into());
        let err = state.schedule(&p).unwrap_err();
        assert!(
            err.message
                .contains("1 node(s) didn't match pod topology spread constraints"),
            "{}",
            err.message
        );
    }

    #[test]
    fn wait_for_first_consumer_claim_selects_node_within_allowed_topologies() {
        let mut s = cluster(4, 2);
        let mut zoned = storage_class("zoned", "WaitForFirstConsumer", false);
        zoned.allowed_topologies = Some(vec![TopologySelectorTerm {
            match_label_expressions: Some(vec![TopologySelectorLabelRequirement {
                key: "topology.kubernetes.io/zone".into(),
                values: vec!["zone-1".into()],
            }]),
        }]);
        s.classes.insert("zoned".into(), Arc::new(zoned));
        add_claim(&mut s, claim("ns", "data", "1Gi", Some("zoned")));
        let state = SchedulingState::new(&s, [], HashSet::new());
        let p = with_claim(pod("p"), "data");
        for _ in 0..20 {
            let placement = state.schedule(&p).unwrap();
            assert!(placement.node == "node-1" || placement.node == "node-3");
            assert_eq!(
                placement.volumes,
                vec![VolumePlan::SelectNode {
                    claim: "data".into()
                }]
            );
            assert!(!placement.volumes_ready());
        }
    }

    #[test]
    fn bound_claim_pins_pod_to_volume_node_and_immediate_unbound_waits() {
        let mut s = cluster(3, 0);
        let mut c = claim("ns", "data", "1Gi", Some("standard"));
        c.spec.as_mut().unwrap().volume_name = Some("pv-on-2".into());
        add_claim(&mut s, c);
        let mut p = pv("pv-on-2", "1Gi", "standard", "Bound");
        p.spec.as_mut().unwrap().node_affinity =
            Some(k8s_openapi::api::core::v1::VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![node_term(
                        "kubernetes.io/hostname",
                        "In",
                        &["node-2"],
                    )],
                }),
            });
        s.pvs.insert("pv-on-2".into(), Arc::new(p));
        add_claim(&mut s, claim("ns", "fast", "1Gi", Some("immediate")));
        let state = SchedulingState::new(&s, [], HashSet::new());
        let placement = state.schedule(&with_claim(pod("p"), "data")).unwrap();
        assert_eq!(placement.node, "node-2");
        assert!(placement.volumes_ready());
        let err = state.schedule(&with_claim(pod("q"), "fast")).unwrap_err();
        assert!(
            err.message
                .contains("pod has unbound immediate PersistentVolumeClaims"),
            "{}",
            err.message
        );
        let missing = state.schedule(&with_claim(pod("r"), "nope")).unwrap_err();
        assert!(
            missing
                .message
                .contains("persistentvolumeclaim \"nope\" not found")
        );
    }

    #[test]
    fn prebound_static_pv_decides_the_node() {
        let mut s = cluster(3, 0);
        add_claim(&mut s, claim("ns", "data", "1Gi", Some("standard")));
        let mut p = pv("static", "1Gi", "standard", "Available");
        p.spec.as_mut().unwrap().claim_ref = Some(claim_ref("ns", "data", None));
        p.spec.as_mut().unwrap().node_affinity =
            Some(k8s_openapi::api::core::v1::VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![node_term(
                        "kubernetes.io/hostname",
                        "In",
                        &["node-3"],
                    )],
                }),
            });
        s.pvs.insert("static".into(), Arc::new(p));
        let state = SchedulingState::new(&s, [], HashSet::new());
        let placement = state.schedule(&with_claim(pod("p"), "data")).unwrap();
        assert_eq!(placement.node, "node-3");
        assert_eq!(
            placement.volumes,
            vec![VolumePlan::BindStaticPv {
                claim: "data".into(),
                pv: "static".into()
            }]
        );
    }
}
