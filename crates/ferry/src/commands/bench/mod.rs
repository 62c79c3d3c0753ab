//! `ferry bench`: benchmarks that print figures against a peer measured in the same run.

use std::process::ExitCode;

mod repo;
mod restore;

pub use repo::BenchRepoArgs;
pub use restore::BenchRestoreArgs;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Backup and restore throughput, CPU and memory: ferry against restic.
    Repo(BenchRepoArgs),
    /// Restore makespan on a simulated cluster: default (workload pods one at a time) against
    /// restorePVC.ignoreDelayBinding, each compared with the ideal for the nodes.
    Restore(BenchRestoreArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Repo(a) => tokio::task::spawn_blocking(move || repo::bench_repo(a)).await?,
        BenchCommand::Restore(a) => restore::bench_restore(a).await,
    }
}
