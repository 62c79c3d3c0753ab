//! `ferry repo stats`: what restoring the snapshots writes (restore-size) or what they
//! occupy in the repository (raw-data), as restic's modes of the same names count.

use std::process::ExitCode;

use ferry_repo::stats::StatsMode;

use super::repo_access::{RepoArgs, open};
use super::repo_progress::human_bytes;

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ModeArg {
    #[value(name = "restore-size")]
    RestoreSize,
    #[value(name = "raw-data")]
    RawData,
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshots to count (ids, prefixes or `latest`); default all.
    pub snapshots: Vec<String>,
    /// restore-size: files and bytes a restore writes; raw-data: stored blobs and bytes.
    #[arg(long, value_enum, default_value = "restore-size")]
    pub mode: ModeArg,
}

pub async fn run(a: StatsArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.repo).await?;
    let snaps = if a.snapshots.is_empty() {
        let (snaps, unreadable) = repo.snapshots_skipping_unreadable().await?;
        for (id, e) in &unreadable {
            eprintln!("warning: snapshot {id} is skipped: {e}");
        }
        snaps
    } else {
        let mut v = Vec::new();
        for s in &a.snapshots {
            v.push(repo.find_snapshot(s).await?);
        }
        v
    };
    let (mode, name) = match a.mode {
        ModeArg::RestoreSize => (StatsMode::RestoreSize, "restore-size"),
        ModeArg::RawData => (StatsMode::RawData, "raw-data"),
    };
    let stats = repo.stats(&snaps, mode).await?;
    if a.repo.json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        println!("{name} of {} snapshot(s):", stats.snapshots_count);
        match stats.total_blob_count {
            Some(blobs) => println!("  {blobs} blobs, {}", human_bytes(stats.total_size)),
            None => println!(
                "  {} files and directories, {}",
                stats.total_file_count,
                human_bytes(stats.total_size)
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
