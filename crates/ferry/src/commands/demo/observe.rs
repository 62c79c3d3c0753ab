//! Turning what the demo sees of each restore (polled DataDownload phases and its data-moved
//! annotation, the target claim's selected node, the restore claim's appearance) into phase
//! timings. The clock is the
//! demo's own, so phases shorter than the API's one-second timestamps still show.

use std::collections::BTreeMap;

use super::timings::RestoreTiming;

/// One look at one restore.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sighting {
    /// DataDownload phase (`New`, `Accepted`, `Prepared`, `InProgress`, `Completed`, `Failed`…).
    pub phase: Option<String>,
    /// `status.node`, once set.
    pub node: Option<String>,
    /// `status.progress.totalBytes`/`bytesDone`.
    pub total_bytes: u64,
    pub bytes_done: u64,
    /// The wait for a consumer is over: the target claim has a selected node, or the
    /// restore claim exists.
    pub consumed: bool,
    /// The controller has marked the data as moved (the restore pod succeeded): rebinding.
    pub data_moved: bool,
    pub message: Option<String>,
}

/// What has been seen of one restore, first times in seconds since the mode started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreRecord {
    pub volume: String,
    pub created: f64,
    pub consumed: Option<f64>,
    pub prepared: Option<f64>,
    pub in_progress: Option<f64>,
    pub data_moved: Option<f64>,
    pub completed: Option<f64>,
    pub failed: Option<String>,
    pub node: Option<String>,
    pub bytes: u64,
}

impl RestoreRecord {
    pub fn is_done(&self) -> bool {
        self.completed.is_some() || self.failed.is_some()
    }
}

/// The records of one mode's restores, keyed by DataDownload name.
#[derive(Debug, Default)]
pub struct PhaseRecorder {
    records: BTreeMap<String, RestoreRecord>,
}

impl PhaseRecorder {
    /// A restore was created (its wait starts) at `at`.
    pub fn created(&mut self, data_download: &str, volume: &str, at: f64) {
        self.records.insert(
            data_download.to_string(),
            RestoreRecord {
                volume: volume.to_string(),
                created: at,
                ..Default::default()
            },
        );
    }

    /// Records a sighting at `at`; only first times are kept.
    pub fn saw(&mut self, data_download: &str, at: f64, sighting: &Sighting) {
        let Some(record) = self.records.get_mut(data_download) else {
            return;
        };
        if sighting.consumed {
            record.consumed.get_or_insert(at);
        }
        if sighting.data_moved {
            record.data_moved.get_or_insert(at);
        }
        match sighting.phase.as_deref() {
            Some("Prepared") => {
                record.prepared.get_or_insert(at);
            }
            Some("InProgress") => {
                record.in_progress.get_or_insert(at);
            }
            Some("Completed") => {
                record.completed.get_or_insert(at);
            }
            Some(phase @ ("Failed" | "Canceled")) => {
                record.failed.get_or_insert_with(|| {
                    format!(
                        "{phase}: {}",
                        sighting.message.as_deref().unwrap_or("(no message)")
                    )
                });
            }
            _ => {}
        }
        if let Some(node) = &sighting.node
            && !node.is_empty()
        {
            record.node = Some(node.clone());
        }
        record.bytes = record
            .bytes
            .max(sighting.total_bytes)
            .max(sighting.bytes_done);
    }

    pub fn records(&self) -> impl Iterator<Item = (&String, &RestoreRecord)> {
        self.records.iter()
    }

    pub fn all_done(&self) -> bool {
        self.records.values().all(RestoreRecord::is_done)
    }

    /// Timings of the completed restores. A phase too quick to be seen between two looks
    /// takes no time; times never run backwards.
    pub fn timings(&self) -> Vec<RestoreTiming> {
        self.records
            .values()
            .filter_map(|r| {
                let completed = r.completed?;
                let wait_end = r
                    .consumed
                    .or(r.prepared)
                    .or(r.in_progress)
                    .unwrap_or(completed)
                    .clamp(r.created, completed);
                let expose_end = r
                    .prepared
                    .or(r.in_progress)
                    .unwrap_or(completed)
                    .clamp(wait_end, completed);
                let move_start = r
                    .in_progress
                    .unwrap_or(expose_end)
                    .clamp(expose_end, completed);
                let move_end = r
                    .data_moved
                    .unwrap_or(completed)
                    .clamp(move_start, completed);
                Some(RestoreTiming {
                    volume: r.volume.clone(),
                    node: r.node.clone().unwrap_or_else(|| "?".into()),
                    wait_start: r.created,
                    wait_end,
                    expose_end,
                    move_start,
                    move_end,
                    completed,
                    bytes: r.bytes,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(phase: &str) -> Sighting {
        Sighting {
            phase: Some(phase.into()),
            ..Default::default()
        }
    }

    #[test]
    fn first_sightings_make_the_phases() {
        let mut recorder = PhaseRecorder::default();
        recorder.created("dd-0", "data-0", 0.0);
        recorder.saw("dd-0", 0.1, &phase("Accepted"));
        recorder.saw(
            "dd-0",
            2.0,
            &Sighting {
                phase: Some("Accepted".into()),
                consumed: true,
                ..Default::default()
            },
        );
        recorder.saw("dd-0", 2.5, &phase("Prepared"));
        recorder.saw(
            "dd-0",
            2.6,
            &Sighting {
                phase: Some("InProgress".into()),
                node: Some("node-2".into()),
                total_bytes: 1000,
                bytes_done: 10,
                ..Default::default()
            },
        );
        recorder.saw("dd-0", 3.0, &phase("InProgress"));
        let moved = Sighting {
            phase: Some("InProgress".into()),
            data_moved: true,
            ..Default::default()
        };
        recorder.saw("dd-0", 3.6, &moved);
        recorder.saw("dd-0", 3.8, &moved);
        assert!(!recorder.all_done());
        assert!(recorder.timings().is_empty(), "not complete yet");
        recorder.saw("dd-0", 4.0, &phase("Completed"));
        recorder.saw("dd-0", 4.5, &phase("Completed"));
        assert!(recorder.all_done());
        let t = &recorder.timings()[0];
        assert_eq!(
            (
                t.wait_start,
                t.wait_end,
                t.expose_end,
                t.move_start,
                t.move_end,
                t.completed
            ),
            (0.0, 2.0, 2.5, 2.6, 3.6, 4.0)
        );
        assert_eq!(t.node, "node-2");
        assert_eq!(t.bytes, 1000);
        assert_eq!(t.volume, "data-0");
    }

    #[test]
    fn unseen_quick_phases_take_no_time() {
        let mut recorder = PhaseRecorder::default();
        recorder.created("dd-0", "data-0", 1.0);
        recorder.saw("dd-0", 3.0, &phase("Completed"));
        let t = &recorder.timings()[0];
        assert_eq!(
            (
                t.wait_end,
                t.expose_end,
                t.move_start,
                t.move_end,
                t.completed
            ),
            (3.0, 3.0, 3.0, 3.0, 3.0)
        );
    }

    #[test]
    fn failures_are_done_with_their_message() {
        let mut recorder = PhaseRecorder::default();
        recorder.created("dd-0", "data-0", 0.0);
        recorder.saw(
            "dd-0",
            1.0,
            &Sighting {
                phase: Some("Failed".into()),
                message: Some("snapshot not found".into()),
                ..Default::default()
            },
        );
        assert!(recorder.all_done());
        let (_, record) = recorder.records().next().unwrap();
        assert_eq!(record.failed.as_deref(), Some("Failed: snapshot not found"));
        assert!(recorder.timings().is_empty());
    }
}
