//! The waiting line in front of the exposer: `prepareQueueLength` caps how many DataDownloads
//! are being exposed at once (Accepted or Prepared), `loadConcurrency` caps data movements per
//! node (a node is taken from the moment the restore's node is chosen until it finishes), and
//! everything else waits in creation order. Pure: the reconciler feeds it what it observed.

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
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

impl QueuedRestore {
    /// Being exposed: counts against `prepareQueueLength`.
    pub fn is_preparing(&self) -> bool {
        matches!(
            self.phase,
            DataDownloadPhase::Accepted | DataDownloadPhase::Prepared
        )
    }

    /// Holds a data-movement slot on its node.
    pub fn holds_slot(&self) -> bool {
        self.node.is_some()
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

/// Sorts by creation time, then name (the order Velero's queue keeps).
pub fn creation_order(restores: &mut [QueuedRestore]) {
    restores.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
}

/// The New restores that may be accepted now, oldest first: as many as the prepare queue has
/// room for (`None`: no limit).
pub fn admit_new(restores: &[QueuedRestore], prepare_queue_length: Option<usize>) -> Vec<String> {
    let preparing = restores.iter().filter(|r| r.is_preparing()).count();
    let room = prepare_queue_length.map_or(usize::MAX, |limit| limit.saturating_sub(preparing));
    let mut waiting: Vec<QueuedRestore> = restores
        .iter()
        .filter(|r| r.phase == DataDownloadPhase::New)
        .cloned()
        .collect();
    creation_order(&mut waiting);
    waiting.into_iter().take(room).map(|r| r.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn restore(name: &str, phase: DataDownloadPhase, node: Option<&str>, t: i64) -> QueuedRestore {
        QueuedRestore {
            name: name.into(),
            phase,
            node: node.map(String::from),
            created: Some(chrono::Utc.timestamp_opt(t, 0).unwrap()),
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
    fn slots_are_held_from_node_choice_until_the_end() {
        let all = vec![
            restore("a", DataDownloadPhase::Accepted, None, 1),
            restore("b", DataDownloadPhase::Accepted, Some("n1"), 2),
            restore("c", DataDownloadPhase::Prepared, Some("n1"), 3),
            restore("d", DataDownloadPhase::InProgress, Some("n2"), 4),
            restore("e", DataDownloadPhase::Canceling, Some("n2"), 5),
            restore("f", DataDownloadPhase::Completed, Some("n2"), 6),
            restore("g", DataDownloadPhase::Failed, Some("n1"), 7),
        ];
        assert_eq!(
            slots_in_use(&all),
            BTreeMap::from([("n1".into(), 2), ("n2".into(), 2)])
        );
    }

    #[test]
    fn missing_creation_time_sorts_first_then_by_name() {
        let mut all = vec![
            restore("b", DataDownloadPhase::New, None, 1),
            QueuedRestore {
                created: None,
                ..restore("z", DataDownloadPhase::New, None, 0)
            },
        ];
        creation_order(&mut all);
        assert_eq!(all[0].name, "z");
    }
}
