//! `--include` / `--exclude` select what restic would, and `--verify` reads every restored
//! file back against the snapshot.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::handmade::{self, SnapshotWriter};
use ferry_repo::restore::{RestoreFilter, RestoreOptions, RestoreTarget};
use ferry_repo::{RepoError, Repository};

/// Every non-directory below `dir`, relative to it.
fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    let mut all = Vec::new();
    if dir.exists() {
        walk(dir, &mut all);
    }
    all.into_iter()
        .filter(|p| !std::fs::symlink_metadata(p).unwrap().is_dir())
        .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}

/// Every directory below `dir`, relative to it.
fn dirs_below(dir: &Path) -> BTreeSet<PathBuf> {
    let mut all = Vec::new();
    walk(dir, &mut all);
    all.into_iter()
        .filter(|p| std::fs::symlink_metadata(p).unwrap().is_dir())
        .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}

async fn ferry_restore(
    repo: &Repository,
    target: &Path,
    include: &[&str],
    exclude: &[&str],
) -> ferry_repo::RestoreSummary {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let snap = repo.find_snapshot("latest").await.unwrap();
    repo.restore(
        &snap,
        RestoreTarget::Directory {
            path: target.to_path_buf(),
            subpath: None,
        },
        RestoreOptions {
            filter: RestoreFilter::new(&v(include), &v(exclude)).unwrap(),
            verify: true,
            ..Default::default()
        },
        no_progress(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_select_the_same_files_as_restic() {
    let t = tempfile::tempdir().unwrap();
    // `src` at the snapshot's root, so that the patterns below name it as `/src`.
    let src = t.path().join("tree/src");
    make_tree(&src);
    let repo = init_repo(&t.path().join("repo")).await;
    repo.backup(
        BackupSource::Contents(t.path().join("tree")),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    let cases: [(&[&str], &[&str]); 6] = [
        (&["*.txt"], &[]),
        (&["nested"], &[]),
        (&["/src/small/nested/deeper"], &[]),
        (&["/src/**/dup-*"], &[]),
        (&[], &["small", "*.img"]),
        (&[], &["/src/small/f00?.bin", "/src/l*"]),
    ];
    for (i, (include, exclude)) in cases.iter().enumerate() {
        let ours = t.path().join(format!("ferry-{i}"));
        let summary = ferry_restore(&repo, &ours, include, exclude).await;
        let mut args = vec!["-r", "repo", "--no-cache", "restore", "latest"];
        let theirs = format!("restic-{i}");
        args.extend(["--target", &theirs]);
        for p in *include {
            args.extend(["--include", p]);
        }
        for p in *exclude {
            args.extend(["--exclude", p]);
        }
        restic_ok(t.path(), &args);
        let theirs = t.path().join(theirs);
        let (a, b) = (files_below(&ours), files_below(&theirs));
        assert!(!a.is_empty(), "case {i}: nothing restored");
        assert_eq!(a, b, "case {i}: {include:?} {exclude:?}");
        // What is restored is restored right, with its metadata.
        for rel in &a {
            let (x, y) = (ours.join(rel), src.parent().unwrap().join(rel));
            let (mx, my) = (
                std::fs::symlink_metadata(&x).unwrap(),
                std::fs::symlink_metadata(&y).unwrap(),
            );
            assert_eq!(mx.permissions(), my.permissions(), "{}", rel.display());
            if mx.is_file() {
                assert!(std::fs::read(&x).unwrap() == std::fs::read(&y).unwrap());
            }
        }
        // With include patterns, directories are only those leading to restored entries.
        if !include.is_empty() {
            for d in dirs_below(&ours) {
                assert!(
                    a.iter().any(|f| f.starts_with(&d)),
                    "case {i}: directory {} leads nowhere",
                    d.display()
                );
            }
        }
        // Every non-empty file (hard links too) was read back.
        let non_empty = a
            .iter()
            .filter(|p| {
                let m = std::fs::symlink_metadata(ours.join(p)).unwrap();
                m.is_file() && m.len() > 0
            })
            .count() as u64;
        assert_eq!(summary.verified_files, non_empty, "case {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_back_every_file_and_reports_mismatches() {
    let t = tempfile::tempdir().unwrap();
    let repo = init_repo(&t.path().join("repo")).await;
    let mut w = SnapshotWriter::new(&repo);
    let big = random_bytes(1, 3 << 20);
    let big_ids = w.content(&big, 1 << 20);
    let small = w.data(b"small");
    let other = w.data(b"other content");
    // Two files claiming one inode but different content: the second is restored as a link
    // to the first, so it cannot hold what the snapshot says; verify must see that.
    let root = w.tree(vec![
        handmade::file(b"big", big_ids, 3 << 20),
        handmade::hard_linked(handmade::file(b"x1", vec![small], 5), 3, 2),
        handmade::hard_linked(handmade::file(b"x2", vec![other], 13), 3, 2),
        handmade::file(b"zz", vec![small], 5),
    ]);
    let (snap, _) = w.finish(root).await.unwrap();
    let target = t.path().join("out");
    let err = repo
        .restore(
            &snap,
            RestoreTarget::Directory {
                path: target.clone(),
                subpath: None,
            },
            RestoreOptions {
                verify: true,
                ..Default::default()
            },
            no_progress(),
        )
        .await
        .unwrap_err();
    let RepoError::Incomplete(s) = err else {
        panic!("expected Incomplete, got {err}")
    };
    assert!(s.damaged.is_empty(), "{:?}", s.damaged);
    assert_eq!(s.verify_failures.len(), 1, "{:?}", s.verify_failures);
    let f = &s.verify_failures[0];
    assert_eq!(f.path, target.join("x2").display().to_string());
    assert!(
        f.reason.contains("differ") || f.reason.contains("cannot read"),
        "{f}"
    );
    assert_eq!(s.verified_files, 3);
    assert!(std::fs::read(target.join("big")).unwrap() == big);
}
