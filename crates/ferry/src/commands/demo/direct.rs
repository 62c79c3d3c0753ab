//! The fallback when ferry's controller cannot run in-process: each mode's restores go
//! through the data path directly (ferry's restore engine, in this process, into fresh volume
//! directories), with the controller's decisions emulated — in the default mode one restore
//! at a time, as the StatefulSet's pods would be scheduled; with ignoreDelayBinding all at
//! once, spread evenly over the nodes. The timings are real; the waiting and the placement
//! are the emulated part, and the demo says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use ferry_repo::{Repository, RestoreOptions, RestoreTarget};

use super::progress::Step;
use super::restore_run::{Mode, ModeOutcome, VolumeToRestore};
use super::timings::{ModeRun, RestoreTiming, RunKind};

/// Data movements at once per node (as `loadConcurrency.globalConfig: 2`).
const PER_NODE: usize = 2;

/// Restores every volume for `mode` under `root/<claim>` and returns the timings.
pub async fn run_mode(
    repository: &Repository,
    mode: Mode,
    volumes: &[VolumeToRestore],
    nodes: &[String],
    root: &Path,
) -> anyhow::Result<(ModeOutcome, Vec<PathBuf>)> {
    let total: u64 = volumes.iter().map(|v| v.bytes).sum();
    let step = Step::start_bytes(
        format!("restoring ({}, data path directly)", mode.name()),
        total,
    );
    let done = Arc::new(AtomicU64::new(0));
    let ticker = step.follow(done.clone());
    let started = Instant::now();
    let dirs: Vec<PathBuf> = volumes.iter().map(|v| root.join(&v.claim)).collect();
    let restore_one = |index: usize| {
        let volume = &volumes[index];
        let dir = dirs[index].clone();
        let node = nodes[index % nodes.len()].clone();
        let done = done.clone();
        async move {
            let wait_end = started.elapsed().as_secs_f64();
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating volume directory {}", dir.display()))?;
            let snapshot = repository
                .find_snapshot(&volume.snapshot_id)
                .await
                .with_context(|| format!("finding snapshot {}", volume.snapshot_id))?;
            let move_start = started.elapsed().as_secs_f64();
            let seen = Arc::new(AtomicU64::new(0));
            let progress_seen = seen.clone();
            let progress_done = done.clone();
            repository
                .restore(
                    &snapshot,
                    RestoreTarget::Directory {
                        path: dir.clone(),
                        subpath: None,
                    },
                    RestoreOptions::default(),
                    Arc::new(move |p: &ferry_repo::RestoreProgress| {
                        let before = progress_seen.swap(p.bytes_done, Ordering::Relaxed);
                        progress_done
                            .fetch_add(p.bytes_done.saturating_sub(before), Ordering::Relaxed);
                    }),
                )
                .await
                .with_context(|| format!("restoring volume {}", volume.claim))?;
            let move_end = started.elapsed().as_secs_f64();
            anyhow::Ok(RestoreTiming {
                volume: volume.claim.clone(),
                node,
                wait_start: 0.0,
                wait_end,
                expose_end: move_start,
                move_start,
                move_end,
                // No claim to rebind on the direct path.
                completed: move_end,
                bytes: volume.bytes,
            })
        }
    };
    let result: anyhow::Result<Vec<RestoreTiming>> = match mode {
        Mode::Default => {
            let mut timings = Vec::new();
            for index in 0..volumes.len() {
                match restore_one(index).await {
                    Ok(t) => timings.push(t),
                    Err(e) => {
                        ticker.abort();
                        step.failed();
                        return Err(e);
                    }
                }
            }
            Ok(timings)
        }
        Mode::IgnoreDelayBinding => {
            // Round-robin placement keeps every node within one restore of the others;
            // PER_NODE × nodes run at once, the rest queue in order.
            use futures::StreamExt;
            let parallel = (PER_NODE * nodes.len()).max(1);
            futures::stream::iter((0..volumes.len()).map(restore_one))
                .buffered(parallel)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect()
        }
    };
    ticker.abort();
    let restores = match result {
        Ok(r) => r,
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };
    step.done(&format!("{} volumes", volumes.len()));
    let makespan = started.elapsed().as_secs_f64();
    Ok((
        ModeOutcome {
            run: ModeRun {
                name: mode.name().into(),
                description: format!("{} (emulated)", mode.description()),
                kind: RunKind::Restore,
                nodes: nodes.to_vec(),
                restores,
            },
            workload_running_after: makespan,
            cpu: None,
        },
        dirs,
    ))
}
