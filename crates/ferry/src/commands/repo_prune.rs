//! `ferry repo prune`: removes data no snapshot uses and reports what went and what stayed.

use std::process::ExitCode;

use ferry_repo::Repository;
use ferry_repo::prune::{PruneOptions, PruneReport};

use super::repo_access::{RepoArgs, open};
use super::repo_progress::{self, Totals, human_bytes};

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Show what would be removed and repacked; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub async fn run(a: PruneArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.repo).await?;
    prune(&repo, a.dry_run, a.repo.json).await?;
    Ok(ExitCode::SUCCESS)
}

/// Prunes and prints the report (also for `forget --prune`).
pub async fn prune(repo: &Repository, dry_run: bool, json: bool) -> anyhow::Result<PruneReport> {
    let progress = repo_progress::reporter(json, "repack", "packs", Totals::Known);
    let report = repo
        .prune(PruneOptions { dry_run }, progress.report.clone())
        .await;
    progress.finish();
    let r = report?;
    if json {
        let mut v = serde_json::to_value(&r)?;
        v["message_type"] = "summary".into();
        println!("{v}");
        return Ok(r);
    }
    let would = if r.dry_run { "would be " } else { "" };
    println!(
        "{} snapshots use {} blobs ({}); {} blobs ({}) are unused",
        r.snapshots,
        r.blobs_used,
        human_bytes(r.bytes_used),
        r.blobs_unused,
        human_bytes(r.bytes_unused)
    );
    println!(
        "packs: {} kept ({}), {} {would}repacked ({}: {} used blobs, {}), {} unused {would}deleted ({}), {} not in any index {would}deleted ({})",
        r.packs_kept,
        human_bytes(r.bytes_kept),
        r.packs_repacked,
        human_bytes(r.bytes_repacked_packs),
        r.blobs_repacked,
        human_bytes(r.bytes_repacked_blobs),
        r.packs_unused,
        human_bytes(r.bytes_unused_packs),
        r.packs_unreferenced,
        human_bytes(r.bytes_unreferenced),
    );
    if r.dry_run {
        println!(
            "dry run: about {} would be freed; nothing was changed",
            human_bytes(r.bytes_freed)
        );
    } else {
        println!(
            "wrote {} packs ({}) and {} index files, removed {} index files; {} freed",
            r.packs_written,
            human_bytes(r.bytes_written),
            r.index_files_written,
            r.index_files_removed,
            human_bytes(r.bytes_freed)
        );
    }
    Ok(r)
}
