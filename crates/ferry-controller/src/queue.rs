//! The waiting line in front of the exposer: `prepareQueueLength` caps how many DataDownloads
//! are being exposed at once (Accepted or Prepared), `loadConcurrency` caps data movements per
//! node (a node is taken from the moment the restore's node is chosen until its data has
//! moved: rebinding uses no node), and everything else waits in creation order. Pure: the
//! reconciler feeds it what it observed.

use std::collections::BTreeMap;

use crate::crds::DataDownloadPhase;

/// What the queue needs to know about one DataDownload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRestore {
    pub name: String,
    pub phase: DataDownloadPhase,
    /// The node holding its slot, once chosen (`status.node`).
    pub node: Option<String>,
    /// Creation time as RFC 3339 text or seconds; only the order matters.
    pub created: Option<k8s_openapi::jiff::Timestamp>,
    /// The restore pod has moved the data (`ferry.io/data-moved`): only rebind is left.
    pub data_moved: bool,
}

impl QueuedRestore {
    /// Being exposed: counts against `prepareQueueLength`.
    pub fn is_preparing(&self) -> bool {
        matches!(
            self.phase,
            DataDownloadPhase::Accepted | DataDownloadPhase::Prepared
        )
    }

    /// Holds a data-movement slot on its node: from node choice until the data has moved
    /// (the rebind after it runs no pod on the node).
    pub fn holds_slot(&self) -> bool {
        self.node.is_some()
            && !self.data_moved
            && matches!(
                self.phase,
                DataDownloadPhase::Accepted
                    | DataDownloadPhase::Prepared
                    | DataDownloadPhase::InProgress
                    | DataDownloadPhase::Canceling
            )
    }
}

/// Restores holding a slot, per node.
pub fn slots_in_use(restores: &[QueuedRestore]) -> BTreeMap<String, usize> {
    let mut used = BTreeMap::new();
    for r in restores.iter().filter(|r| r.holds_slot()) {
        if let Some(node) = &r.node {
            *used.entry(node.clone()).or_default() += 1;
        }
    }
    used
}

/// Where a DataDownload or a DataUpload stands in the prepare queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not taken yet: waits for room.
    New,
    /// Accepted or Prepared: being exposed, takes room.
    Preparing,
    /// Moving data or ended: out of the prepare queue.
    Past,
}

/// One object as the prepare queue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub name: String,
    pub stage: Stage,
    pub created: Option<k8s_openapi::jiff::Timestamp>,
}

/// The New objects that may be accepted now, oldest first (then by name): as many as the
/// prepare queue has room for (`None`: no limit). One rule for restores and backups.
pub fn admit(entries: Vec<Waiting>, prepare_queue_length: Option<usize>) -> Vec<String> {
    let preparing = entries
        .iter()
        .filter(|e| e.stage == Stage::Preparing)
        .count();
    let room = prepare_queue_length.map_or(usize::MAX, |limit| limit.saturating_sub(preparing));
    let mut waiting: Vec<Waiting> = entries
        .into_iter()
        .filter(|e| e.stage == Stage::New)
        .collect();
    waiting.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    waiting.into_iter().take(room).map(|e| e.name).collect()
}

/// The New restores that may be accepted now ([`admit`]).
pub fn admit_new(restores: &[QueuedRestore], prepare_queue_length: Option<usize>) -> Vec<String> {
    let entries = restores
        .iter()
        .map(|r| Waiting {
            name: r.name.clone(),
            stage: if r.phase == DataDownloadPhase::New {
                Stage::New
            } else if r.is_preparing() {
                Stage::Preparing
            } else {
                Stage::Past
            },
            created: r.created,
        })
        .collect();
    admit(entries, prepare_queue_length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore(name: &str, phase: DataDownloadPhase, node: Option<&str>, t: i64) -> QueuedRestore {
        QueuedRestore {
            name: name.into(),
            phase,
            node: node.map(String::from),
            created: Some(k8s_openapi::jiff::Timestamp::from_second(t).unwrap()),
            data_moved: false,
        }
    }

    #[test]
    fn unlimited_queue_admits_every_new_restore_in_creation_order() {
        let all = vec![
            restore("c", DataDownloadPhase::New, None, 30),
            restore("a", DataDownloadPhase::New, None, 10),
            restore("b", DataDownloadPhase::New, None, 10),
            restore("done", DataDownloadPhase::Completed, Some("n1"), 1),
        ];
        assert_eq!(admit_new(&all, None), ["a", "b", "c"]);
    }

    #[test]
    fn prepare_queue_length_counts_accepted_and_prepared() {
        let all = vec![
            restore("p1", DataDownloadPhase::Accepted, None, 1),
            restore("p2", DataDownloadPhase::Prepared, Some("n1"), 2),
            restore("run", DataDownloadPhase::InProgress, Some("n2"), 3),
            restore("w1", DataDownloadPhase::New, None, 5),
            restore("w2", DataDownloadPhase::New, None, 4),
        ];
        assert_eq!(admit_new(&all, Some(3)), ["w2"]);
        assert!(admit_new(&all, Some(2)).is_empty());
        // Over-full (the limit was lowered): nobody is admitted, nothing panics.
        assert!(admit_new(&all, Some(1)).is_empty());
    }

    #[test]
    fn slots_are_held_from_node_choice_until_the_data_has_moved() {
        let all = vec![
            restore("a", DataDownloadPhase::Accepted, None, 1),
            restore("b", DataDownloadPhase::Accepted, Some("n1"), 2),
            restore("c", DataDownloadPhase::Prepared, Some("n1"), 3),
            restore("d", DataDownloadPhase::InProgress, Some("n2"), 4),
            restore("e", DataDownloadPhase::Canceling, Some("n2"), 5),
            restore("f", DataDownloadPhase::Completed, Some("n2"), 6),
            restore("g", DataDownloadPhase::Failed, Some("n1"), 7),
            // Rebinding: the data mover is done with the node.
            QueuedRestore {
                data_moved: true,
                ..restore("h", DataDownloadPhase::InProgress, Some("n1"), 8)
            },
        ];
        assert_eq!(
            slots_in_use(&all),
            BTreeMap::from([("n1".into(), 2), ("n2".into(), 2)])
        );
    }

    #[test]
    fn uploads_and_restores_share_the_rule() {
        let t = |s| Some(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        let entries = vec![
            Waiting {
                name: "u2".into(),
                stage: Stage::New,
                created: t(2),
            },
            Waiting {
                name: "u1".into(),
                stage: Stage::New,
                created: t(1),
            },
            Waiting {
                name: "p".into(),
                stage: Stage::Preparing,
                created: t(0),
            },
            Waiting {
                name: "done".into(),
                stage: Stage::Past,
                created: t(0),
            },
        ];
        assert_eq!(admit(entries.clone(), Some(2)), ["u1"]);
        assert_eq!(admit(entries.clone(), None), ["u1", "u2"]);
        assert!(admit(entries, Some(1)).is_empty());
    }

    #[test]
    fn missing_creation_time_sorts_first_then_by_name() {
        let all = vec![
            restore("b", DataDownloadPhase::New, None, 1),
            QueuedRestore {
                created: None,
                ..restore("z", DataDownloadPhase::New, None, 0)
            },
        ];
        assert_eq!(admit_new(&all, Some(1)), ["z"]);
    }
}
