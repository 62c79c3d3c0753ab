//! `ferry bench`: benchmarks that print figures against a peer measured in the same run.

use std::process::ExitCode;

mod repo;

pub use repo::BenchRepoArgs;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Backup and restore throughput, CPU and memory: ferry against restic.
    Repo(BenchRepoArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Repo(a) => tokio::task::spawn_blocking(move || repo::bench_repo(a)).await?,
    }
}
