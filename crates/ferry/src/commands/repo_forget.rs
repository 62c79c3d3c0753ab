//! `ferry repo forget`: removes snapshots chosen by restic's keep policy (or given by id),
//! and with `--prune` the data only they used.

use std::process::ExitCode;

use ferry_repo::Id;
use ferry_repo::forget::{GroupBy, Policy, Within};

use super::repo_access::{RepoArgs, open};

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshots to remove (ids, unique prefixes or `latest`); without them the --keep-*
    /// policy decides.
    pub snapshots: Vec<String>,
    /// Keep the last n snapshots.
    #[arg(short = 'l', long, value_name = "n", default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the last n hourly snapshots.
    #[arg(short = 'H', long, value_name = "n", default_value_t = 0)]
    pub keep_hourly: u32,
    /// Keep the last n daily snapshots.
    #[arg(short = 'd', long, value_name = "n", default_value_t = 0)]
    pub keep_daily: u32,
    /// Keep the last n weekly snapshots (ISO weeks).
    #[arg(short = 'w', long, value_name = "n", default_value_t = 0)]
    pub keep_weekly: u32,
    /// Keep the last n monthly snapshots.
    #[arg(short = 'm', long, value_name = "n", default_value_t = 0)]
    pub keep_monthly: u32,
    /// Keep the last n yearly snapshots.
    #[arg(short = 'y', long, value_name = "n", default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep snapshots newer than this (e.g. 1y5m7d2h) before the group's latest one.
    #[arg(long, value_name = "duration")]
    pub keep_within: Option<String>,
    /// Keep snapshots carrying all of these tags (comma-separated; repeatable).
    #[arg(long, value_name = "taglist")]
    pub keep_tag: Vec<String>,
    /// Group snapshots by host, paths and/or tags (comma-separated; '' for one group).
    #[arg(short = 'g', long, default_value = "host,paths")]
    pub group_by: String,
    /// Show what would be removed; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Then prune the data the removed snapshots alone used.
    #[arg(long)]
    pub prune: bool,
}

fn policy(a: &ForgetArgs) -> anyhow::Result<Policy> {
    Ok(Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: match &a.keep_within {
            Some(w) => Within::parse(w)?,
            None => Within::default(),
        },
        tags: a
            .keep_tag
            .iter()
            .map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .filter(|l: &Vec<String>| !l.is_empty())
            .collect(),
    })
}

pub async fn run(a: ForgetArgs) -> anyhow::Result<ExitCode> {
    let policy = policy(&a)?;
    let group_by = GroupBy::parse(&a.group_by)?;
    let repo = open(&a.repo).await?;
    let json = a.repo.json;
    let mut remove: Vec<Id> = Vec::new();
    if !a.snapshots.is_empty() {
        for spec in &a.snapshots {
            let s = repo.find_snapshot(spec).await?;
            if !remove.contains(&s.id) {
                remove.push(s.id);
            }
        }
    } else if policy.is_empty() {
        if !json {
            println!("no --keep-* policy and no snapshot ids given: nothing is removed");
        }
    } else {
        let (snaps, unreadable) = repo.snapshots_skipping_unreadable().await?;
        for (id, e) in &unreadable {
            eprintln!("warning: snapshot {id} is skipped: {e}");
        }
        let groups = ferry_repo::forget::apply(snaps, group_by, &policy);
        let mut out = Vec::new();
        for g in &groups {
            remove.extend(g.remove.iter().map(|s| s.id));
            if json {
                out.push(serde_json::json!({
                    "host": g.key.host,
                    "paths": g.key.paths,
                    "tags": g.key.tags,
                    "keep": g.keep.iter().map(|(s, _)| s.json()).collect::<Vec<_>>(),
                    "remove": g.remove.iter().map(ferry_repo::Snapshot::json).collect::<Vec<_>>(),
                    "reasons": g.keep.iter().map(|(s, why)| serde_json::json!({
                        "snapshot": s.json(), "matches": why,
                    })).collect::<Vec<_>>(),
                }));
                continue;
            }
            println!(
                "group host={:?} paths={:?} tags={:?}: keep {}, remove {}",
                g.key.host,
                g.key.paths,
                g.key.tags,
                g.keep.len(),
                g.remove.len()
            );
            for (s, why) in g.keep.iter().rev() {
                println!("  keep   {} {} ({})", s.id.short(), s.time, why.join(", "));
            }
            for s in g.remove.iter().rev() {
                println!("  remove {} {}", s.id.short(), s.time);
            }
        }
        if json {
            println!("{}", serde_json::Value::Array(out));
        }
    }

    if remove.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if a.dry_run {
        if !json {
            println!("dry run: would remove {} snapshot(s)", remove.len());
        }
    } else {
        let lock = repo.lock(true).await?;
        let removed = repo.remove_snapshots(&remove).await;
        lock.release().await;
        removed?;
        if !json {
            println!("removed {} snapshot(s)", remove.len());
        }
    }
    if a.prune {
        super::repo_prune::prune(&repo, a.dry_run, json).await?;
    }
    Ok(ExitCode::SUCCESS)
}
