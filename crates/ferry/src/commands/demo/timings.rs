//! What the demo measured: for each restore mode, when each restore waited, was exposed and
//! moved its data. Times are seconds since the mode's restores were created, so both modes
//! share one time scale in the report and the picture.

/// One restore (one volume) as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreTiming {
    /// The volume (target PVC) name.
    pub volume: String,
    /// The node the data moved on.
    pub node: String,
    /// When the restore was created and began waiting for its target to be consumed.
    pub wait_start: f64,
    /// When the wait ended (the workload pod was scheduled, or at once with ignoreDelayBinding).
    pub wait_end: f64,
    /// When the restore volume and pod were ready (exposed).
    pub expose_end: f64,
    /// When the data movement started.
    pub move_start: f64,
    /// When the data mover was done (the restore pod succeeded); rebinding starts.
    pub move_end: f64,
    /// When the restore was complete: the restored volume bound to its target claim.
    pub completed: f64,
    /// Bytes restored.
    pub bytes: u64,
}

impl RestoreTiming {
    pub fn waiting(&self) -> f64 {
        (self.wait_end - self.wait_start).max(0.0)
    }

    /// Exposing runs from the end of the wait until the data movement starts.
    pub fn exposing(&self) -> f64 {
        (self.move_start.max(self.expose_end) - self.wait_end).max(0.0)
    }

    pub fn moving(&self) -> f64 {
        (self.move_end - self.move_start).max(0.0)
    }

    /// Rebinding runs from the end of the data movement until the restore is complete.
    pub fn rebinding(&self) -> f64 {
        (self.completed - self.move_end).max(0.0)
    }

    /// Bytes per second while moving data, i.e. the data mover's rate (0 when the movement
    /// took no measurable time).
    pub fn throughput(&self) -> f64 {
        let secs = self.moving();
        if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        }
    }
}

/// Which half of the data movement a run is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunKind {
    /// DataDownloads: wait, expose, move (repository → volume), rebind.
    #[default]
    Restore,
    /// DataUploads: wait (accepted), expose (snapshot → backup volume and pod), move (volume →
    /// repository); nothing to rebind.
    Backup,
}

/// One restore mode's run (or the backup's: see `kind`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModeRun {
    /// Short name: `default` or `ignoreDelayBinding` (or `backup`).
    pub name: String,
    /// What the mode does, in a few words.
    pub description: String,
    pub kind: RunKind,
    /// All nodes of the cluster, in display order (a node with no restore still gets a lane).
    pub nodes: Vec<String>,
    pub restores: Vec<RestoreTiming>,
}

impl ModeRun {
    /// From the creation of the restores to the end of the last one.
    pub fn makespan(&self) -> f64 {
        let start = self
            .restores
            .iter()
            .map(|r| r.wait_start)
            .fold(f64::INFINITY, f64::min);
        let end = self
            .restores
            .iter()
            .map(|r| r.completed)
            .fold(f64::NEG_INFINITY, f64::max);
        if self.restores.is_empty() {
            0.0
        } else {
            (end - start.min(0.0)).max(0.0)
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.restores.iter().map(|r| r.bytes).sum()
    }
}

/// Seconds for people: two decimals below ten (the demo's phases are often sub-second).
pub fn human_seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makespan_runs_from_mode_start_to_last_completion() {
        let r = |start: f64, end: f64| RestoreTiming {
            volume: "v".into(),
            node: "n".into(),
            wait_start: start,
            wait_end: start,
            expose_end: start,
            move_start: start,
            move_end: end - 0.5,
            completed: end,
            bytes: 1,
        };
        let run = ModeRun {
            name: "m".into(),
            description: String::new(),
            kind: RunKind::Restore,
            nodes: vec!["n".into()],
            restores: vec![r(0.5, 2.0), r(0.0, 3.5)],
        };
        assert_eq!(run.makespan(), 3.5);
    }
}
