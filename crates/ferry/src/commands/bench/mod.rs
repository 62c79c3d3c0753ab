//! `ferry bench`: benchmarks that print figures against a peer measured in the same run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod backup;
mod cpu_split;
mod repo;
mod restore;
mod scale;
mod velero;

pub use backup::BenchBackupArgs;
pub use repo::BenchRepoArgs;
pub use restore::BenchRestoreArgs;
pub use scale::BenchScaleArgs;
pub use velero::BenchVeleroArgs;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Backup makespan through ferry's DataUpload controller (one at a time and all at once)
    /// against the ideal for the nodes, and the data mover's rate against `restic backup`.
    Backup(BenchBackupArgs),
    /// Backup and restore throughput, CPU and memory: ferry against restic.
    Repo(BenchRepoArgs),
    /// Restore makespan through the controller (kubesim or the real control plane): default
    /// (workload pods one at a time) against restorePVC.ignoreDelayBinding, each compared
    /// with the same data movers run at once without the controller (orchestration overhead).
    Restore(BenchRestoreArgs),
    /// Orchestration at scale: many DataDownloads (1,000 by default) on many nodes (100), each
    /// restoring one tiny snapshot, through a `ferry controller` process: makespan,
    /// DataDownloads per second, phase times, spread over the nodes, the controller's API
    /// requests per DataDownload and peak memory; on kubesim, the real control plane or both.
    Scale(BenchScaleArgs),
    /// Velero's own backup and restore with ferry as its data mover, on the real control plane
    /// (Velero built by testenv/build): makespans for StatefulSets of 8 and 32 volumes, the
    /// restore by default against restorePVC.ignoreDelayBinding.
    Velero(BenchVeleroArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Backup(a) => backup::bench_backup(a).await,
        BenchCommand::Repo(a) => tokio::task::spawn_blocking(move || repo::bench_repo(a)).await?,
        BenchCommand::Restore(a) => restore::bench_restore(a).await,
        BenchCommand::Scale(a) => scale::bench_scale(a).await,
        BenchCommand::Velero(a) => velero::bench_velero(a).await,
    }
}

/// Where a bench keeps its run: `--out`, or a temporary directory named after the bench (the
/// `true`: to be removed at the end).
fn run_root(out: Option<&Path>, bench: &str) -> (PathBuf, bool) {
    match out {
        Some(out) => (out.to_path_buf(), false),
        None => (
            std::env::temp_dir().join(format!("ferry-bench-{bench}-{}", std::process::id())),
            true,
        ),
    }
}
