//! Restore never writes outside its target, whatever a (hand-made, hostile) snapshot holds
//! and whatever the target already contains; `check` reports the trees restore refuses.

use crate::common;

use std::path::Path;

use common::*;
use ferry_repo::check::CheckOptions;
use ferry_repo::handmade::{self, SnapshotWriter};
use ferry_repo::restore::{RestoreOptions, RestoreTarget};
use ferry_repo::tree::Node;
use ferry_repo::{RepoError, Repository, Snapshot};

/// A test directory with `outside/victim` (content "keep"), an empty `outside/dir` and a
/// repository.
async fn setup(t: &Path) -> Repository {
    std::fs::create_dir_all(t.join("outside/dir")).unwrap();
    std::fs::write(t.join("outside/victim"), b"keep").unwrap();
    init_repo(&t.join("repo")).await
}

/// A snapshot whose root tree holds `nodes` (built with the writer `w` first).
async fn snapshot_of(
    repo: &Repository,
    build: impl FnOnce(&mut SnapshotWriter) -> Vec<Node>,
) -> Snapshot {
    let mut w = SnapshotWriter::new(repo);
    let nodes = build(&mut w);
    let root = w.tree(nodes);
    w.finish(root).await.unwrap().0
}

async fn restore(repo: &Repository, snap: &Snapshot, target: &Path) -> ferry_repo::Result<()> {
    repo.restore(
        snap,
        RestoreTarget::Directory {
            path: target.to_path_buf(),
            subpath: None,
        },
        RestoreOptions::default(),
        no_progress(),
    )
    .await
    .map(|_| ())
}

/// The outside directory is as `setup` left it.
fn assert_outside_untouched(t: &Path) {
    assert_eq!(std::fs::read(t.join("outside/victim")).unwrap(), b"keep");
    let mut names: Vec<String> = std::fs::read_dir(t.join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "victim"]);
    assert_eq!(std::fs::read_dir(t.join("outside/dir")).unwrap().count(), 0);
}

/// The error is the refusal of the root tree, naming its id and the problem.
fn assert_refused(err: &RepoError, snap: &Snapshot, problem: &str) {
    match err {
        RepoError::UnsafeTree {
            tree,
            path,
            problem: p,
        } => {
            assert_eq!(tree, &snap.tree.to_hex(), "{err}");
            assert_eq!(path, "/", "{err}");
            assert!(p.contains(problem), "{err}");
        }
        other => panic!("expected UnsafeTree, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&snap.tree.to_hex()) && msg.contains("ferry repo check"),
        "{msg}"
    );
}

/// `check` names the tree and the problem.
async fn assert_check_reports(repo: &Repository, snap: &Snapshot, problem: &str) {
    let report = repo.check(CheckOptions::default()).await.unwrap();
    let all = report.errors.join("\n");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains(&snap.tree.to_hex()) && e.contains(problem)),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_then_directory_of_one_name_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let repo = setup(t.path()).await;
    let outside = t.path().join("outside/dir");
    let snap = snapshot_of(&repo, |w| {
        let pwned = w.data(b"pwned");
        let sub = w.tree(vec![handmade::file(b"pwned", vec![pwned], 5)]);
        vec![
            handmade::symlink(b"d", outside.as_os_str().as_encoded_bytes()),
            handmade::dir(b"d", sub),
        ]
    })
    .await;
    let err = restore(&repo, &snap, &t.path().join("target"))
        .await
        .unwrap_err();
    assert_refused(&err, &snap, r#"entries named "d""#);
    assert_outside_untouched(t.path());
    assert_check_reports(&repo, &snap, r#"two or more entries named "d""#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_symlink_of_one_name_never_overwrite_the_victim() {
    let t = tempfile::tempdir().unwrap();
    let repo = setup(t.path()).await;
    let victim = t.path().join("outside/victim");
    for file_first in [true, false] {
        let snap = snapshot_of(&repo, |w| {
            let evil = w.content(&random_bytes(1, 3 << 20), 1 << 20);
            let file = handmade::file(b"f", evil, 3 << 20);
            let link = handmade::symlink(b"f", victim.as_os_str().as_encoded_bytes());
            match file_first {
                true => vec![file, link],
                false => vec![link, file],
            }
        })
        .await;
        let err = restore(&repo, &snap, &t.path().join("target"))
            .await
            .unwrap_err();
        assert_refused(&err, &snap, r#"entries named "f""#);
        assert_outside_untouched(t.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_and_hard_linked_file_of_one_name_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let repo = setup(t.path()).await;
    let victim = t.path().join("outside/victim");
    let snap = snapshot_of(&repo, |w| {
        let evil = w.data(b"evil");
        vec![
            handmade::hard_linked(handmade::file(b"a", vec![evil], 4), 7, 2),
            handmade::symlink(b"h", victim.as_os_str().as_encoded_bytes()),
            handmade::hard_linked(handmade::file(b"h", vec![evil], 4), 7, 2),
        ]
    })
    .await;
    let err = restore(&repo, &snap, &t.path().join("target"))
        .await
        .unwrap_err();
    assert_refused(&err, &snap, r#"entries named "h""#);
    assert_outside_untouched(t.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_refused_naming_the_tree() {
    let t = tempfile::tempdir().unwrap();
    let repo = setup(t.path()).await;
    let target = t.path().join("outside/dir/target");
    for (name, problem) in [
        (&b".."[..], "named . or .."),
        (b".", "named . or .."),
        (b"", "empty entry name"),
        (b"../victim", "containing /"),
        (b"a\0b", "containing NUL"),
    ] {
        let snap = snapshot_of(&repo, |w| {
            let evil = w.data(b"evil");
            let sub = w.tree(vec![handmade::file(b"victim", vec![evil], 4)]);
            // A nested tree: the error names that tree and its path in the snapshot.
            let bad = w.tree(vec![
                handmade::file(name, vec![evil], 4),
                handmade::dir(b"x", sub),
            ]);
            vec![handmade::dir(b"nested", bad)]
        })
        .await;
        let err = restore(&repo, &snap, &target).await.unwrap_err();
        match &err {
            RepoError::UnsafeTree {
                path, problem: p, ..
            } => {
                assert_eq!(path, "/nested", "{err}");
                assert!(p.contains(problem), "{err}");
            }
            other => panic!("{name:?}: expected UnsafeTree, got {other}"),
        }
        // Nothing written in or next to the target's parent, nor outside.
        assert!(!target.join("nested/victim").exists());
        assert_eq!(
            std::fs::read(t.path().join("outside/victim")).unwrap(),
            b"keep"
        );
        let report = repo.check(CheckOptions::default()).await.unwrap();
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.contains("/nested") && e.contains(problem)),
            "{:?}",
            report.errors
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_target_entries_are_replaced_or_refused_never_followed() {
    let t = tempfile::tempdir().unwrap();
    let repo = setup(t.path()).await;
    let target = t.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let outside = t.path().join("outside");
    let snap = snapshot_of(&repo, |w| {
        let small = w.data(b"new small");
        let big = w.content(&random_bytes(5, 2 << 20), 1 << 20);
        let empty_dir = w.tree(vec![]);
        vec![
            handmade::file(b"big", big, 2 << 20),
            handmade::dir(b"keepdir", empty_dir),
            handmade::file(b"linked", vec![small], 9),
            handmade::file(b"sym", vec![small], 9),
            handmade::symlink(b"symsym", b"elsewhere"),
        ]
    })
    .await;
    // A symlink to the victim where a small file goes, a symlink where a big file (written
    // under a temporary name) goes, a hard link to the victim, a symlink where a symlink goes,
    // and a real directory holding an old file where a directory goes.
    std::os::unix::fs::symlink(outside.join("victim"), target.join("sym")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), target.join("big")).unwrap();
    std::fs::hard_link(outside.join("victim"), target.join("linked")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), target.join("symsym")).unwrap();
    std::fs::create_dir(target.join("keepdir")).unwrap();
    std::fs::write(target.join("keepdir/old"), b"old").unwrap();
    restore(&repo, &snap, &target).await.unwrap();
    assert_outside_untouched(t.path());
    for name in ["sym", "linked"] {
        let md = std::fs::symlink_metadata(target.join(name)).unwrap();
        assert!(md.is_file(), "{name}");
        assert_eq!(std::fs::read(target.join(name)).unwrap(), b"new small");
    }
    assert_eq!(
        std::fs::read(target.join("big")).unwrap(),
        random_bytes(5, 2 << 20)
    );
    assert_eq!(
        std::fs::read_link(target.join("symsym")).unwrap(),
        Path::new("elsewhere")
    );
    // The directory is kept, and what it held that the snapshot does not have stays.
    assert_eq!(std::fs::read(target.join("keepdir/old")).unwrap(), b"old");

    // A symlink where the snapshot has a directory is refused, not followed.
    let snap2 = snapshot_of(&repo, |w| {
        let evil = w.data(b"evil");
        let sub = w.tree(vec![handmade::file(b"pwned", vec![evil], 4)]);
        vec![handmade::dir(b"d", sub)]
    })
    .await;
    std::os::unix::fs::symlink(outside.join("dir"), target.join("d")).unwrap();
    let err = restore(&repo, &snap2, &target).await.unwrap_err();
    assert!(err.to_string().contains("holds a symlink"), "{err}");
    assert!(
        err.to_string()
            .contains(&target.join("d").display().to_string()),
        "{err}"
    );
    assert_outside_untouched(t.path());

    // A directory where the snapshot has a file is refused (restore never deletes one).
    let snap3 = snapshot_of(&repo, |w| {
        let x = w.data(b"x");
        vec![handmade::file(b"keepdir", vec![x], 1)]
    })
    .await;
    let err = restore(&repo, &snap3, &target).await.unwrap_err();
    assert!(err.to_string().contains("holds a directory"), "{err}");
    assert!(target.join("keepdir/old").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_pointing_outside_are_restored_as_links_only() {
    let t = tempfile::tempdir().unwrap();
    let repo = setup(t.path()).await;
    let victim = t.path().join("outside/victim");
    // A symlink to the outside in one directory, a file "through" it in a later snapshot.
    let snap = snapshot_of(&repo, |w| {
        let sub = w.tree(vec![handmade::symlink(
            b"escape",
            t.path().join("outside").as_os_str().as_encoded_bytes(),
        )]);
        let hard = w.data(b"hard");
        vec![
            handmade::dir(b"a", sub),
            handmade::symlink(b"v", victim.as_os_str().as_encoded_bytes()),
            handmade::hard_linked(handmade::file(b"h1", vec![hard], 4), 9, 2),
            handmade::hard_linked(handmade::file(b"h2", vec![hard], 4), 9, 2),
        ]
    })
    .await;
    let target = t.path().join("target");
    restore(&repo, &snap, &target).await.unwrap();
    assert_eq!(std::fs::read_link(target.join("v")).unwrap(), victim);
    assert!(
        std::fs::symlink_metadata(target.join("a/escape"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(std::fs::read(target.join("h2")).unwrap(), b"hard");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(target.join("h1")).unwrap().ino(),
        std::fs::metadata(target.join("h2")).unwrap().ino()
    );

    let snap2 = snapshot_of(&repo, |w| {
        let evil = w.data(b"evil");
        let escape = w.tree(vec![handmade::file(b"victim", vec![evil], 4)]);
        let a = w.tree(vec![handmade::dir(b"escape", escape)]);
        vec![handmade::dir(b"a", a), handmade::file(b"v", vec![evil], 4)]
    })
    .await;
    let err = restore(&repo, &snap2, &target).await.unwrap_err();
    assert!(err.to_string().contains("holds a symlink"), "{err}");
    assert_outside_untouched(t.path());
}
