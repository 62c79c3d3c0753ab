//! What the nodes carry during one pass, as placement weighs it: the data mover slots in use
//! (restores and backups between node choice and their data moved) and every data movement
//! each node was given, whatever its phase (the tie-break between equally loaded nodes). Both
//! are counted from the cluster at the start of the pass, so a restarted controller has them
//! too, and a node choice made during the pass adds to both.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct NodeLoad {
    /// Slots in use per node ([`crate::placement::PlacementInput::in_flight`]).
    pub(super) in_flight: BTreeMap<String, usize>,
    /// Movements given to each node ([`crate::placement::PlacementInput::placed`]).
    pub(super) placed: BTreeMap<String, usize>,
}

impl NodeLoad {
    /// Counts `nodes` (one entry per data movement the cluster lists on a node) as placed.
    pub(super) fn count_placed<'a>(&mut self, nodes: impl Iterator<Item = &'a str>) {
        for node in nodes {
            *self.placed.entry(node.to_string()).or_default() += 1;
        }
    }

    /// A data movement was just placed on `node`: it takes a slot there.
    pub(super) fn chose(&mut self, node: &str) {
        *self.in_flight.entry(node.to_string()).or_default() += 1;
        *self.placed.entry(node.to_string()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_takes_a_slot_and_counts_as_placed() {
        let mut load = NodeLoad {
            in_flight: BTreeMap::from([("node-1".to_string(), 1)]),
            ..NodeLoad::default()
        };
        load.count_placed(["node-1", "node-2", "node-1"].into_iter());
        load.chose("node-2");
        assert_eq!(
            load.in_flight,
            BTreeMap::from([("node-1".to_string(), 1), ("node-2".to_string(), 1)])
        );
        assert_eq!(
            load.placed,
            BTreeMap::from([("node-1".to_string(), 2), ("node-2".to_string(), 2)])
        );
    }
}
