//! Which node a restore runs on: a pure function from a snapshot of cluster state to a decision,
//! so it is unit-tested on its own and reusable by scale simulations.
//!
//! With a selected node (WaitForFirstConsumer after the workload was scheduled) the answer is
//! that node, once it has a free data-movement slot. With `restorePVC.ignoreDelayBinding` ferry
//! picks, among nodes that are Ready, schedulable, untainted, selected by the storage class's
//! `loadAffinity` and allowed by the StorageClass's `allowedTopologies`, the node with the fewest
//! restores in flight relative to its `loadConcurrency`; ties go to the node name.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use ferry_config::{LabelSelector, NodeAgentConfig, SelectorOperator};
use k8s_openapi::api::core::v1::{Node, TopologySelectorTerm};

/// What placement needs to know about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub unschedulable: bool,
    /// Taints whose effect keeps a pod without tolerations away (NoSchedule, NoExecute).
    pub blocking_taints: Vec<String>,
    /// Data movements this node may run at once (Velero's loadConcurrency resolution).
    pub concurrency: usize,
}

/// The status of a node's Ready condition ("True", "False", "Unknown"), `None` without one.
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

impl NodeInfo {
    /// Reads a Node object; its concurrency comes from the node-agent configuration.
    pub fn from_node(node: &Node, config: &NodeAgentConfig) -> NodeInfo {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let ready = ready_status(node) == Some("True");
        let spec = node.spec.as_ref();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let blocking_taints = spec
            .and_then(|s| s.taints.as_ref())
            .map(|taints| {
                taints
                    .iter()
                    .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                    .map(|t| format!("{}:{}", t.key, t.effect))
                    .collect()
            })
            .unwrap_or_default();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            concurrency: config.concurrency_for_node(&labels),
            labels,
            ready,
            unschedulable,
            blocking_taints,
        }
    }
}

/// One `allowedTopologies` term of a StorageClass: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologyTerm {
    /// label key → allowed values.
    pub requirements: Vec<(String, Vec<String>)>,
}

impl TopologyTerm {
    pub fn from_k8s(term: &TopologySelectorTerm) -> TopologyTerm {
        TopologyTerm {
            requirements: term
                .match_label_expressions
                .iter()
                .flatten()
                .map(|e| (e.key.clone(), e.values.clone()))
                .collect(),
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|(key, values)| SelectorOperator::In.holds(labels.get(key), values))
    }
}

/// A snapshot of everything the decision depends on.
#[derive(Debug, Clone, Default)]
pub struct PlacementInput {
    pub nodes: Vec<NodeInfo>,
    /// Restores holding a slot on each node (node chosen, not finished).
    pub in_flight: BTreeMap<String, usize>,
    /// Data movements the cluster lists on each node, whatever their phase: among nodes
    /// equally loaded, the one given fewer goes first, so movements that follow one another
    /// spread over the nodes too (not all to the first by name).
    pub placed: BTreeMap<String, usize>,
    /// `volume.kubernetes.io/selected-node` of the target PVC, when the workload was scheduled.
    pub selected_node: Option<String>,
    /// The `loadAffinity` node selector for the volume's storage class, if any.
    pub load_affinity: Option<LabelSelector>,
    /// The StorageClass's `allowedTopologies` (any term may match; empty: anywhere).
    pub allowed_topologies: Vec<TopologyTerm>,
}

/// Why a node was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceReason {
    /// The target PVC's selected node (the workload's node).
    SelectedNode,
    /// Least-loaded eligible node (ignoreDelayBinding).
    LeastLoaded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeChoice {
    pub node: String,
    pub reason: ChoiceReason,
}

/// How many nodes were ruled out, per reason (each node counted once, by its first reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    pub total: usize,
    pub not_ready: usize,
    pub unschedulable: usize,
    pub tainted: usize,
    /// Windows nodes: the data mover is a Linux program.
    pub windows: usize,
    pub load_affinity: usize,
    pub topology: usize,
}

impl fmt::Display for Exclusions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} node(s)", self.total)?;
        let parts: Vec<String> = [
            (self.not_ready, "not Ready"),
            (self.unschedulable, "unschedulable (cordoned)"),
            (self.tainted, "with a NoSchedule/NoExecute taint"),
            (self.windows, "running Windows"),
            (
                self.load_affinity,
                "not matching the loadAffinity nodeSelector",
            ),
            (
                self.topology,
                "outside the StorageClass's allowedTopologies",
            ),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
        if !parts.is_empty() {
            write!(f, ": {}", parts.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Permanent until the cluster or the configuration changes.
    #[error(
        "no node can run the data mover: {0}; check node readiness, loadAffinity in the node-agent ConfigMap and the StorageClass's allowedTopologies"
    )]
    NoEligibleNode(Exclusions),
    #[error("selected node {0} does not exist")]
    SelectedNodeMissing(String),
    /// Wait: every eligible node already runs as many data movers as its loadConcurrency allows.
    #[error("all {eligible} eligible node(s) are at their loadConcurrency limit")]
    AllBusy { eligible: usize },
    /// Wait: the selected node has no free slot.
    #[error(
        "selected node {node} runs {in_flight} data movement(s), its loadConcurrency is {limit}"
    )]
    NodeBusy {
        node: String,
        in_flight: usize,
        limit: usize,
    },
}

impl PlacementError {
    /// Whether waiting (for a restore to finish) can resolve it.
    pub fn is_wait(&self) -> bool {
        matches!(
            self,
            PlacementError::AllBusy { .. } | PlacementError::NodeBusy { .. }
        )
    }
}

/// The node's operating system label; the restore pod asks for `linux`.
pub const OS_LABEL: &str = "kubernetes.io/os";

/// Decides the node for one data mover, restore or backup (their slots are shared).
pub fn choose_node(input: &PlacementInput) -> Result<NodeChoice, PlacementError> {
    let load = |name: &str| input.in_flight.get(name).copied().unwrap_or(0);
    let placed = |name: &str| input.placed.get(name).copied().unwrap_or(0);
    if let Some(selected) = &input.selected_node {
        // The workload's node is the only place the volume is usable; the scheduler already
        // checked it, so only the slot limit applies.
        let node = input
            .nodes
            .iter()
            .find(|n| &n.name == selected)
            .ok_or_else(|| PlacementError::SelectedNodeMissing(selected.clone()))?;
        let in_flight = load(&node.name);
        let limit = node.concurrency.max(1);
        if in_flight >= limit {
            return Err(PlacementError::NodeBusy {
                node: node.name.clone(),
                in_flight,
                limit,
            });
        }
        return Ok(NodeChoice {
            node: node.name.clone(),
            reason: ChoiceReason::SelectedNode,
        });
    }

    let mut exclusions = Exclusions {
        total: input.nodes.len(),
        ..Exclusions::default()
    };
    let mut eligible: Vec<&NodeInfo> = Vec::new();
    for node in &input.nodes {
        if !node.ready {
            exclusions.not_ready += 1;
        } else if node.unschedulable {
            exclusions.unschedulable += 1;
        } else if !node.blocking_taints.is_empty() {
            exclusions.tainted += 1;
        } else if node.labels.get(OS_LABEL).is_some_and(|os| os == "windows") {
            exclusions.windows += 1;
        } else if input
            .load_affinity
            .as_ref()
            .is_some_and(|s| !s.matches(&node.labels))
        {
            exclusions.load_affinity += 1;
        } else if !input.allowed_topologies.is_empty()
            && !input
                .allowed_topologies
                .iter()
                .any(|t| t.matches(&node.labels))
        {
            exclusions.topology += 1;
        } else {
            eligible.push(node);
        }
    }
    if eligible.is_empty() {
        return Err(PlacementError::NoEligibleNode(exclusions));
    }
    let count = eligible.len();
    eligible
        .into_iter()
        .filter(|n| load(&n.name) < n.concurrency.max(1))
        .min_by(|a, b| {
            compare_load(load(&a.name), a, load(&b.name), b)
                .then(placed(&a.name).cmp(&placed(&b.name)))
                .then_with(|| a.name.cmp(&b.name))
        })
        .map(|n| NodeChoice {
            node: n.name.clone(),
            reason: ChoiceReason::LeastLoaded,
        })
        .ok_or(PlacementError::AllBusy { eligible: count })
}

/// Orders nodes by in-flight / concurrency (compared exactly by cross-multiplication), then
/// by fewer restores in flight.
fn compare_load(load_a: usize, a: &NodeInfo, load_b: usize, b: &NodeInfo) -> Ordering {
    let (ca, cb) = (a.concurrency.max(1), b.concurrency.max(1));
    (load_a * cb).cmp(&(load_b * ca)).then(load_a.cmp(&load_b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_config::{LabelSelectorRequirement, SelectorOperator};

    fn node(name: &str, zone: &str, concurrency: usize) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: BTreeMap::from([
                ("kubernetes.io/hostname".into(), name.into()),
                ("topology.kubernetes.io/zone".into(), zone.into()),
            ]),
            ready: true,
            unschedulable: false,
            blocking_taints: vec![],
            concurrency,
        }
    }

    fn four_nodes(concurrency: usize) -> Vec<NodeInfo> {
        (1..=4)
            .map(|i| {
                node(
                    &format!("node-{i}"),
                    &format!("zone-{}", (i - 1) % 2 + 1),
                    concurrency,
                )
            })
            .collect()
    }

    /// Places `n` restores one after another, each taking a slot.
    fn place_many(input: &mut PlacementInput, n: usize) -> Vec<Result<String, PlacementError>> {
        (0..n)
            .map(|_| {
                let choice = choose_node(input)?;
                *input.in_flight.entry(choice.node.clone()).or_default() += 1;
                Ok(choice.node)
            })
            .collect()
    }

    #[test]
    fn selected_node_is_used_when_present() {
        let input = PlacementInput {
            nodes: four_nodes(1),
            selected_node: Some("node-3".into()),
            // Even a loadAffinity excluding it does not move the workload's volume.
            load_affinity: Some(LabelSelector {
                match_labels: BTreeMap::from([("kubernetes.io/hostname".into(), "node-1".into())]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            choose_node(&input).unwrap(),
            NodeChoice {
                node: "node-3".into(),
                reason: ChoiceReason::SelectedNode
            }
        );
    }

    #[test]
    fn selected_node_waits_for_a_free_slot() {
        let mut input = PlacementInput {
            nodes: four_nodes(1),
            selected_node: Some("node-2".into()),
            ..Default::default()
        };
        input.in_flight.insert("node-2".into(), 1);
        let err = choose_node(&input).unwrap_err();
        assert!(err.is_wait());
        assert_eq!(
            err,
            PlacementError::NodeBusy {
                node: "node-2".into(),
                in_flight: 1,
                limit: 1
            }
        );
    }

    #[test]
    fn windows_nodes_are_not_chosen() {
        let mut nodes = four_nodes(1);
        for node in &mut nodes[..3] {
            node.labels.insert(OS_LABEL.into(), "windows".into());
        }
        let input = PlacementInput {
            nodes,
            ..Default::default()
        };
        assert_eq!(choose_node(&input).unwrap().node, "node-4");
    }

    #[test]
    fn missing_selected_node_is_an_error() {
        let input = PlacementInput {
            nodes: four_nodes(1),
            selected_node: Some("gone".into()),
            ..Default::default()
        };
        assert_eq!(
            choose_node(&input).unwrap_err(),
            PlacementError::SelectedNodeMissing("gone".into())
        );
    }

    #[test]
    fn least_loaded_ties_go_to_the_first_name() {
        let input = PlacementInput {
            nodes: four_nodes(2),
            ..Default::default()
        };
        assert_eq!(choose_node(&input).unwrap().node, "node-1");
    }

    #[test]
    fn movements_that_follow_one_another_rotate_over_equally_loaded_nodes() {
        let mut input = PlacementInput {
            nodes: four_nodes(2),
            ..Default::default()
        };
        // Each finishes before the next is placed: no load, only what each node was given.
        let mut order = Vec::new();
        for _ in 0..6 {
            let node = choose_node(&input).unwrap().node;
            *input.placed.entry(node.clone()).or_default() += 1;
            order.push(node);
        }
        assert_eq!(
            order,
            ["node-1", "node-2", "node-3", "node-4", "node-1", "node-2"]
        );
        // Load comes first: a node with a slot taken waits, however little it was given.
        input.in_flight.insert("node-3".into(), 1);
        input.placed.insert("node-3".into(), 0);
        assert_eq!(choose_node(&input).unwrap().node, "node-4");
    }

    #[test]
    fn load_is_relative_to_concurrency() {
        let mut nodes = four_nodes(1);
        nodes.truncate(2);
        nodes[1].concurrency = 4;
        let mut input = PlacementInput {
            nodes,
            ..Default::default()
        };
        // node-1: 0/1, node-2: 1/4 → node-1 is emptier.
        input.in_flight.insert("node-2".into(), 1);
        assert_eq!(choose_node(&input).unwrap().node, "node-1");
        // node-1 full → node-2 until its 4 slots are taken, then everyone waits.
        input.in_flight.insert("node-1".into(), 1);
        let placed = place_many(&mut input, 4);
        assert_eq!(
            placed[..3],
            [
                Ok("node-2".into()),
                Ok("node-2".into()),
                Ok("node-2".into())
            ]
        );
        assert_eq!(placed[3], Err(PlacementError::AllBusy { eligible: 2 }));
    }

    #[test]
    fn weighted_spread_follows_concurrency() {
        let mut nodes = four_nodes(1);
        nodes.truncate(2);
        nodes[0].concurrency = 1;
        nodes[1].concurrency = 3;
        let mut input = PlacementInput {
            nodes,
            ..Default::default()
        };
        place_many(&mut input, 4);
        assert_eq!(input.in_flight["node-1"], 1);
        assert_eq!(input.in_flight["node-2"], 3);
    }

    #[test]
    fn load_affinity_limits_the_nodes() {
        let mut input = PlacementInput {
            nodes: four_nodes(8),
            load_affinity: Some(LabelSelector {
                match_expressions: vec![LabelSelectorRequirement {
                    key: "kubernetes.io/hostname".into(),
                    operator: SelectorOperator::In,
                    values: vec!["node-2".into(), "node-4".into()],
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        place_many(&mut input, 8);
        assert_eq!(
            input.in_flight,
            BTreeMap::from([("node-2".into(), 4), ("node-4".into(), 4)])
        );
    }

    #[test]
    fn allowed_topologies_limit_the_nodes() {
        let mut input = PlacementInput {
            nodes: four_nodes(8),
            allowed_topologies: vec![TopologyTerm {
                requirements: vec![("topology.kubernetes.io/zone".into(), vec!["zone-2".into()])],
            }],
            ..Default::default()
        };
        place_many(&mut input, 6);
        assert_eq!(
            input.in_flight,
            BTreeMap::from([("node-2".into(), 3), ("node-4".into(), 3)])
        );
    }

    #[test]
    fn unready_cordoned_and_tainted_nodes_are_skipped() {
        let mut nodes = four_nodes(4);
        nodes[0].ready = false;
        nodes[1].unschedulable = true;
        nodes[2].blocking_taints = vec!["dedicated:NoSchedule".into()];
        let input = PlacementInput {
            nodes,
            ..Default::default()
        };
        assert_eq!(choose_node(&input).unwrap().node, "node-4");
    }

    #[test]
    fn no_eligible_node_counts_every_reason() {
        let mut nodes = four_nodes(1);
        nodes.push(node("node-5", "zone-3", 1));
        nodes[0].ready = false;
        nodes[1].unschedulable = true;
        nodes[2].blocking_taints = vec!["x:NoExecute".into()];
        let input = PlacementInput {
            nodes,
            load_affinity: Some(LabelSelector {
                match_labels: BTreeMap::from([(
                    "topology.kubernetes.io/zone".into(),
                    "zone-2".into(),
                )]),
                ..Default::default()
            }),
            allowed_topologies: vec![TopologyTerm {
                requirements: vec![("topology.kubernetes.io/zone".into(), vec!["zone-1".into()])],
            }],
            ..Default::default()
        };
        let err = choose_node(&input).unwrap_err();
        assert_eq!(
            err,
            PlacementError::NoEligibleNode(Exclusions {
                total: 5,
                not_ready: 1,
                unschedulable: 1,
                tainted: 1,
                windows: 0,
                load_affinity: 1,
                topology: 1,
            })
        );
        let text = err.to_string();
        assert!(
            text.contains("5 node(s): 1 not Ready, 1 unschedulable"),
            "{text}"
        );
        assert!(
            text.contains("1 outside the StorageClass's allowedTopologies"),
            "{text}"
        );
        assert!(!err.is_wait());
    }

    #[test]
    fn no_nodes_at_all_is_no_eligible_node() {
        let err = choose_node(&PlacementInput::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no node can run the data mover: 0 node(s);"),
            "{err}"
        );
    }

    #[test]
    fn a_busy_node_counts_data_movements_of_both_kinds() {
        // Restores and backups share a node's slots: the count is not of restores alone.
        let err = PlacementError::NodeBusy {
            node: "node-1".into(),
            in_flight: 2,
            limit: 2,
        };
        assert_eq!(
            err.to_string(),
            "selected node node-1 runs 2 data movement(s), its loadConcurrency is 2"
        );
        assert!(err.is_wait());
    }

    /// Property: N restores placed over M eligible nodes of equal concurrency (large enough to
    /// hold them all), with any interleaving of completions, never differ by more than one per
    /// node among those in flight.
    #[test]
    fn parallel_restores_spread_within_one_per_node() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for m in 1..=7usize {
            for n in 0..=30usize {
                let nodes: Vec<NodeInfo> = (0..m)
                    .map(|i| node(&format!("n{i:02}"), "z", n.max(1)))
                    .collect();
                let mut input = PlacementInput {
                    nodes,
                    ..Default::default()
                };
                // All at once.
                place_many(&mut input, n);
                assert_spread(&input, m, n);
                // Finish a random restore, start a new one, many times.
                for _ in 0..20 {
                    if n == 0 {
                        break;
                    }
                    let busy: Vec<String> = input
                        .in_flight
                        .iter()
                        .filter(|(_, c)| **c > 0)
                        .map(|(k, _)| k.clone())
                        .collect();
                    let done = &busy[rng.random_range(0..busy.len())];
                    *input.in_flight.get_mut(done).unwrap() -= 1;
                    place_many(&mut input, 1);
                    assert_spread(&input, m, n);
                }
            }
        }
    }

    fn assert_spread(input: &PlacementInput, m: usize, n: usize) {
        let counts: Vec<usize> = input
            .nodes
            .iter()
            .map(|node| input.in_flight.get(&node.name).copied().unwrap_or(0))
            .collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "m={m} n={n}: {counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), n);
    }
}
