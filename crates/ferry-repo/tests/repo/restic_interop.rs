//! Interop with the real restic binary: what ferry writes restic reads, checks and restores
//! identically; what restic writes (compressed) ferry restores identically; dedup across tools.

use crate::common;

use common::*;
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::check::CheckOptions;
use ferry_repo::restore::{RestoreOptions, RestoreTarget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_backup_passes_restic_check_and_restic_restores_identical_tree() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let repo_dir = t.path().join("repo");
    let repo = init_repo(&repo_dir).await;
    let summary = repo
        .backup(
            BackupSource::Paths(vec![src.clone()]),
            BackupOptions {
                tags: vec!["nightly".into()],
                host: Some("ferry-host".into()),
                ..Default::default()
            },
            no_progress(),
        )
        .await
        .unwrap();
    assert!(summary.files_new > 150);

    let check = restic_ok(
        t.path(),
        &["-r", "repo", "--no-cache", "check", "--read-data"],
    );
    assert!(check.contains("no errors were found"), "{check}");

    let snaps = restic_ok(
        t.path(),
        &["-r", "repo", "--no-cache", "snapshots", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    assert_eq!(v[0]["id"], summary.snapshot_id.to_hex());
    assert_eq!(v[0]["hostname"], "ferry-host");
    assert_eq!(v[0]["tags"][0], "nightly");

    restic_ok(
        t.path(),
        &[
            "-r",
            "repo",
            "--no-cache",
            "restore",
            "latest",
            "--target",
            "out",
        ],
    );
    // restic restores ferry's snapshot of the absolute path at that path below its target.
    assert_same_tree(&src, &in_snapshot(&t.path().join("out"), &src));

    // And ferry's own restore of its own snapshot.
    let target = t.path().join("ferry-out");
    restore_latest(&repo, &target).await.unwrap();
    assert_same_tree(&src, &in_snapshot(&target, &src));
    // The sparse file's holes stay holes.
    assert!(allocated(&in_snapshot(&target, &src.join("sparse.img"))) < 1 << 20);
    let report = repo
        .check(CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restic_compressed_backup_restores_identically_with_ferry() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    restic_ok(
        t.path(),
        &["init", "-r", "repo", "--repository-version", "2"],
    );
    restic_ok(
        t.path(),
        &[
            "-r",
            "repo",
            "--no-cache",
            "backup",
            "--compression",
            "auto",
            "src",
        ],
    );
    let repo = open_repo(&t.path().join("repo")).await;
    assert_eq!(repo.config().version, 2);
    let snap = repo.find_snapshot("latest").await.unwrap();
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let p2 = progress.clone();
    let summary = repo
        .restore(
            &snap,
            RestoreTarget::Directory {
                path: t.path().join("out"),
                subpath: None,
            },
            RestoreOptions::default(),
            std::sync::Arc::new(move |p: &ferry_repo::RestoreProgress| {
                p2.lock().unwrap().push(p.clone())
            }),
        )
        .await
        .unwrap();
    assert_same_tree(&src, &t.path().join("out/src"));
    let last = progress.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.bytes_done, last.total_bytes);
    assert_eq!(last.files_done, last.total_files);
    assert_eq!(summary.files, last.total_files);

    // A subpath restore puts that directory's entries in the target.
    let short = snap.id.short();
    let snap2 = repo.find_snapshot(&short).await.unwrap();
    repo.restore(
        &snap2,
        RestoreTarget::Directory {
            path: t.path().join("sub"),
            subpath: Some("src/small/nested".into()),
        },
        RestoreOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    assert_same_tree(&src.join("small/nested"), &t.path().join("sub"));
    let report = repo
        .check(CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restic_deduplicates_against_what_ferry_stored() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), random_bytes(1, 4 << 20)).unwrap();
    std::fs::write(src.join("b.bin"), random_bytes(2, 3 << 20)).unwrap();
    let repo = init_repo(&t.path().join("repo")).await;
    repo.backup(
        BackupSource::Paths(vec![src.clone()]),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    let out = restic_ok(
        t.path(),
        &["-r", "repo", "--no-cache", "backup", "--json", "src"],
    );
    let summary: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .expect("restic summary");
    let added = summary["data_added"].as_u64().unwrap();
    // Only restic's own tree blobs are new; the 7 MiB of file data is not stored again.
    assert!(added < 64 * 1024, "restic added {added} bytes: {summary}");
    assert_eq!(summary["data_blobs"].as_u64().unwrap(), 0, "{summary}");
}
