//! forget, prune and stats against the real restic: ferry's keep policy picks what
//! `restic forget` picks; after ferry prunes, `restic check --read-data` passes and restic
//! restores what was kept; after restic forgets and prunes, ferry restores and checks; stats
//! count what restic's stats count.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::check::CheckOptions;
use ferry_repo::forget::{self, GroupBy, Policy, Within};
use ferry_repo::prune::PruneOptions;
use ferry_repo::stats::{Stats, StatsMode};
use ferry_repo::{Id, Repository, Snapshot};

async fn backup(repo: &Repository, src: &std::path::Path) -> Id {
    repo.backup(
        BackupSource::Paths(vec![src.to_path_buf()]),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap()
    .snapshot_id
}

/// Copies of one snapshot at other times, hosts and tags (what many backups over months
/// would leave), written directly: only the snapshot files matter to forget.
async fn snapshot_history(repo: &Repository, base: &Snapshot) -> Vec<Id> {
    let plan: &[(&str, &str, &[&str])] = &[
        ("2024-02-29T23:30:00Z", "a", &[]),
        ("2024-12-30T10:00:00Z", "a", &["x"]),
        ("2024-12-31T23:59:59+02:00", "a", &[]),
        ("2025-01-01T00:30:00+01:00", "a", &[]),
        ("2025-01-01T10:00:00Z", "a", &["x", "y"]),
        ("2025-01-01T10:20:00Z", "a", &[]),
        ("2025-01-01T11:30:00Z", "a", &["y"]),
        ("2025-01-02T09:00:00Z", "a", &[]),
        ("2025-01-06T09:00:00Z", "a", &["x"]),
        ("2025-01-09T09:00:00-05:00", "a", &[]),
        ("2025-02-01T00:00:00Z", "a", &[]),
        ("2025-03-31T12:00:00Z", "a", &[]),
        ("2025-04-30T12:00:00Z", "a", &["x"]),
        ("2025-01-05T08:00:00Z", "b", &[]),
        ("2025-01-07T08:00:00Z", "b", &["x"]),
    ];
    let mut ids = Vec::new();
    for (time, host, tags) in plan {
        let mut s = base.clone();
        s.time = time.to_string();
        s.hostname = host.to_string();
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        s.parent = None;
        ids.push(repo.save_snapshot(&s).await.unwrap());
    }
    ids
}

fn restic_forget(dir: &std::path::Path, flags: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut args = vec!["-r", "repo", "--no-cache", "forget", "--dry-run", "--json"];
    args.extend_from_slice(flags);
    let out = restic_ok(dir, &args);
    let groups: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (mut keep, mut remove) = (BTreeSet::new(), BTreeSet::new());
    for g in groups.as_array().unwrap() {
        for s in g["keep"].as_array().into_iter().flatten() {
            keep.insert(s["id"].as_str().unwrap().to_string());
        }
        for s in g["remove"].as_array().into_iter().flatten() {
            remove.insert(s["id"].as_str().unwrap().to_string());
        }
    }
    (keep, remove)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_policies_pick_what_restic_forget_picks() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"forget me not").unwrap();
    let repo = init_repo(&t.path().join("repo")).await;
    let first = backup(&repo, &src).await;
    let base = repo.find_snapshot(&first.to_hex()).await.unwrap();
    snapshot_history(&repo, &base).await;
    let all = repo.snapshots().await.unwrap();

    let cases: Vec<(Vec<&str>, Policy, GroupBy)> = vec![
        (
            vec!["--keep-last", "3"],
            Policy {
                last: 3,
                ..Default::default()
            },
            GroupBy::default(),
        ),
        (
            vec!["--keep-hourly", "4", "--keep-daily", "3"],
            Policy {
                hourly: 4,
                daily: 3,
                ..Default::default()
            },
            GroupBy::default(),
        ),
        (
            vec![
                "--keep-weekly",
                "3",
                "--keep-monthly",
                "2",
                "--keep-yearly",
                "2",
            ],
            Policy {
                weekly: 3,
                monthly: 2,
                yearly: 2,
                ..Default::default()
            },
            GroupBy::default(),
        ),
        (
            vec![
                "--keep-within",
                "1m2d",
                "--keep-tag",
                "x,y",
                "--keep-tag",
                "y",
            ],
            Policy {
                within: Within::parse("1m2d").unwrap(),
                tags: vec![vec!["x".into(), "y".into()], vec!["y".into()]],
                ..Default::default()
            },
            GroupBy::default(),
        ),
        (
            vec!["--keep-daily", "2", "--group-by", "host,tags"],
            Policy {
                daily: 2,
                ..Default::default()
            },
            GroupBy::parse("host,tags").unwrap(),
        ),
        (
            vec!["--keep-last", "2", "--group-by", ""],
            Policy {
                last: 2,
                ..Default::default()
            },
            GroupBy::parse("").unwrap(),
        ),
    ];
    for (flags, policy, group_by) in cases {
        let (keep_r, remove_r) = restic_forget(t.path(), &flags);
        let decided = forget::apply(all.clone(), group_by, &policy);
        let keep: BTreeSet<String> = decided
            .iter()
            .flat_map(|g| g.keep.iter().map(|(s, _)| s.id.to_hex()))
            .collect();
        let remove: BTreeSet<String> = decided
            .iter()
            .flat_map(|g| g.remove.iter().map(|s| s.id.to_hex()))
            .collect();
        assert_eq!(keep, keep_r, "kept with {flags:?}");
        assert_eq!(remove, remove_r, "removed with {flags:?}");
        assert_eq!(keep.len() + remove.len(), all.len());
    }
}

/// Every file below `dir` (relative path, size, modified time); directories are left out
/// (taking and dropping a lock changes the times of `locks/`).
fn listing(dir: &std::path::Path) -> BTreeSet<(String, u64, std::time::SystemTime)> {
    let mut all = Vec::new();
    walk(dir, &mut all);
    all.into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let md = std::fs::symlink_metadata(&p).unwrap();
            (
                p.strip_prefix(dir).unwrap().display().to_string(),
                md.len(),
                md.modified().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_ferry_prunes_restic_checks_the_data_and_restores_what_was_kept() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    // Small files share packs, so dropping some leaves packs partly used (repacked); a
    // large one fills packs of its own (deleted whole).
    for i in 0..40u64 {
        std::fs::write(src.join(format!("d/small-{i}")), random_bytes(i, 20_000)).unwrap();
    }
    std::fs::write(src.join("big"), random_bytes(99, 20 << 20)).unwrap();
    let repo = init_repo(&t.path().join("repo")).await;
    let old = backup(&repo, &src).await;
    std::fs::remove_file(src.join("big")).unwrap();
    for i in (0..40u64).step_by(2) {
        std::fs::remove_file(src.join(format!("d/small-{i}"))).unwrap();
    }
    std::fs::write(src.join("d/new"), random_bytes(1000, 50_000)).unwrap();
    let kept = backup(&repo, &src).await;
    repo.remove_snapshots(&[old]).await.unwrap();

    // A dry run reports and changes nothing.
    let before = listing(&t.path().join("repo"));
    let dry = repo
        .prune(PruneOptions { dry_run: true }, no_progress())
        .await
        .unwrap();
    assert_eq!(listing(&t.path().join("repo")), before);
    assert!(dry.packs_repacked >= 1 && dry.packs_unused >= 1, "{dry:?}");

    let report = repo
        .prune(PruneOptions::default(), no_progress())
        .await
        .unwrap();
    assert_eq!(report.packs_repacked, dry.packs_repacked, "{report:?}");
    assert_eq!(report.packs_unused, dry.packs_unused, "{report:?}");
    assert_eq!(report.blobs_unused, dry.blobs_unused);
    // The 20 removed small files, the big file's chunks (as many as the repository's
    // chunker cuts) and the old trees.
    assert!(report.blobs_unused > 20 + 1, "{report:?}");
    assert!(report.bytes_unused > 20 << 20, "{report:?}");
    assert!(report.bytes_freed > 20 << 20, "{report:?}");
    assert!(report.packs_written >= 1);

    let check = restic_ok(
        t.path(),
        &["-r", "repo", "--no-cache", "check", "--read-data"],
    );
    assert!(check.contains("no errors were found"), "{check}");
    restic_ok(
        t.path(),
        &[
            "-r",
            "repo",
            "--no-cache",
            "restore",
            &kept.to_hex(),
            "--target",
            "out",
        ],
    );
    assert_same_tree(&src, &in_snapshot(&t.path().join("out"), &src));
    let ferry_out = t.path().join("ferry-out");
    let repo = open_repo(&t.path().join("repo")).await;
    restore_latest(&repo, &ferry_out).await.unwrap();
    assert_same_tree(&src, &in_snapshot(&ferry_out, &src));
    let ours = repo
        .check(CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        ours.errors.is_empty() && ours.warnings.is_empty(),
        "{ours:?}"
    );

    // Nothing is left to prune.
    let again = repo
        .prune(PruneOptions::default(), no_progress())
        .await
        .unwrap();
    assert_eq!(
        (again.blobs_unused, again.packs_repacked, again.packs_unused),
        (0, 0, 0),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_restic_forgets_and_prunes_ferry_restores_and_prunes_what_restic_left() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..30u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(i, 30_000)).unwrap();
    }
    restic_ok(
        t.path(),
        &["init", "-r", "repo", "--repository-version", "2"],
    );
    restic_ok(t.path(), &["-r", "repo", "--no-cache", "backup", "src"]);
    for i in 0..10u64 {
        std::fs::remove_file(src.join(format!("f{i}"))).unwrap();
    }
    restic_ok(t.path(), &["-r", "repo", "--no-cache", "backup", "src"]);
    restic_ok(
        t.path(),
        &[
            "-r",
            "repo",
            "--no-cache",
            "forget",
            "--keep-last",
            "1",
            "--prune",
        ],
    );
    let repo = open_repo(&t.path().join("repo")).await;
    assert_eq!(repo.snapshots().await.unwrap().len(), 1);
    restore_latest(&repo, &t.path().join("out")).await.unwrap();
    assert_same_tree(&src, &t.path().join("out/src"));
    let ours = repo
        .check(CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(ours.errors.is_empty(), "{ours:?}");

    // restic tolerates 5% unused data; ferry's prune removes the rest, and restic agrees.
    repo.prune(PruneOptions::default(), no_progress())
        .await
        .unwrap();
    let check = restic_ok(
        t.path(),
        &["-r", "repo", "--no-cache", "check", "--read-data"],
    );
    assert!(check.contains("no errors were found"), "{check}");
    restic_ok(
        t.path(),
        &[
            "-r",
            "repo",
            "--no-cache",
            "restore",
            "latest",
            "--target",
            "out2",
        ],
    );
    assert_same_tree(&src, &t.path().join("out2/src"));
}

fn restic_stats(dir: &std::path::Path, mode: &str) -> Stats {
    let out = restic_ok(
        dir,
        &[
            "-r",
            "repo",
            "--no-cache",
            "stats",
            "--json",
            "--mode",
            mode,
        ],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    Stats {
        total_size: v["total_size"].as_u64().unwrap(),
        total_file_count: v["total_file_count"].as_u64().unwrap(),
        total_blob_count: v["total_blob_count"].as_u64(),
        snapshots_count: v["snapshots_count"].as_u64().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_what_restics_stats_count() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    restic_ok(
        t.path(),
        &["init", "-r", "repo", "--repository-version", "2"],
    );
    restic_ok(t.path(), &["-r", "repo", "--no-cache", "backup", "src"]);
    let repo = open_repo(&t.path().join("repo")).await;
    // A second snapshot made by ferry, sharing most data.
    std::fs::write(src.join("extra"), random_bytes(5, 100_000)).unwrap();
    backup(&repo, &src).await;
    let repo = open_repo(&t.path().join("repo")).await;
    let snaps = repo.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 2);
    for (mode, name) in [
        (StatsMode::RestoreSize, "restore-size"),
        (StatsMode::RawData, "raw-data"),
    ] {
        let ours = repo.stats(&snaps, mode).await.unwrap();
        let theirs = restic_stats(t.path(), name);
        assert_eq!(ours, theirs, "{name}");
    }
}
