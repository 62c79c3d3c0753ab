//! Extended attributes survive a round trip through restic both ways, and an attribute the
//! file system refuses gives a warning, not a failed restore.

use crate::common;

use std::path::Path;

use common::*;
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::handmade::{self, SnapshotWriter};
use ferry_repo::restore::{RestoreOptions, RestoreTarget};
use ferry_repo::tree::ExtendedAttribute;

fn set(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("set {name} on {}: {e}", path.display()));
}

fn get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// A tree with user xattrs on a file, a large file, a directory and a read-only file.
fn make_xattr_tree(src: &Path) {
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(1, 2 << 20)).unwrap();
    std::fs::write(src.join("dir/ro.txt"), b"read only").unwrap();
    set(&src.join("a.txt"), "user.color", b"blue");
    set(&src.join("a.txt"), "user.binary", &[0, 255, 10, 13]);
    set(&src.join("big.bin"), "user.big", &random_bytes(2, 2000));
    set(&src.join("dir"), "user.dir", b"on a directory");
    set(&src.join("dir/ro.txt"), "user.ro", b"set before chmod");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        src.join("dir/ro.txt"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
}

fn assert_xattrs(root: &Path) {
    assert_eq!(
        get(&root.join("a.txt"), "user.color").as_deref(),
        Some(&b"blue"[..])
    );
    assert_eq!(
        get(&root.join("a.txt"), "user.binary").as_deref(),
        Some(&[0u8, 255, 10, 13][..])
    );
    assert_eq!(
        get(&root.join("big.bin"), "user.big"),
        Some(random_bytes(2, 2000))
    );
    assert_eq!(
        get(&root.join("dir"), "user.dir").as_deref(),
        Some(&b"on a directory"[..])
    );
    assert_eq!(
        get(&root.join("dir/ro.txt"), "user.ro").as_deref(),
        Some(&b"set before chmod"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_backup_keeps_xattrs_for_restic_and_for_ferry() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_xattr_tree(&src);
    let repo = init_repo(&t.path().join("repo")).await;
    repo.backup(
        BackupSource::Paths(vec![src.clone()]),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    restic_ok(
        t.path(),
        &[
            "-r",
            "repo",
            "--no-cache",
            "restore",
            "latest",
            "--target",
            "restic-out",
        ],
    );
    // An absolute path is restored at that path below the target (restic's layout).
    assert_xattrs(&in_snapshot(&t.path().join("restic-out"), &src));
    let out = t.path().join("ferry-out");
    restore_latest(&repo, &out).await.unwrap();
    assert_xattrs(&in_snapshot(&out, &src));
    assert_same_tree(&src, &in_snapshot(&out, &src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restic_backup_xattrs_are_restored_by_ferry() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_xattr_tree(&src);
    restic_ok(
        t.path(),
        &["init", "-r", "repo", "--repository-version", "2"],
    );
    restic_ok(t.path(), &["-r", "repo", "--no-cache", "backup", "src"]);
    let repo = open_repo(&t.path().join("repo")).await;
    let out = t.path().join("out");
    restore_latest(&repo, &out).await.unwrap();
    assert_xattrs(&out.join("src"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attribute_the_file_system_refuses_is_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let repo = init_repo(&t.path().join("repo")).await;
    let mut w = SnapshotWriter::new(&repo);
    let data = w.data(b"content");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut n = handmade::file(format!("f{i}").as_bytes(), vec![data], 7);
        // No file system takes attributes outside the known namespaces (EOPNOTSUPP).
        n.extended_attributes = vec![
            ExtendedAttribute {
                name: "bogus.namespace".into(),
                value: b"x".to_vec(),
            },
            ExtendedAttribute {
                name: "user.fine".into(),
                value: b"ok".to_vec(),
            },
        ];
        nodes.push(n);
    }
    let root = w.tree(nodes);
    let (snap, _) = w.finish(root).await.unwrap();
    let out = t.path().join("out");
    let summary = repo
        .restore(
            &snap,
            RestoreTarget::Directory {
                path: out.clone(),
                subpath: None,
            },
            RestoreOptions::default(),
            no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(summary.files, 3);
    // One warning for the kind, counting the others.
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    let w = &summary.warnings[0];
    assert!(w.contains("bogus.namespace") && w.contains("2 more"), "{w}");
    for i in 0..3 {
        let f = out.join(format!("f{i}"));
        assert_eq!(std::fs::read(&f).unwrap(), b"content");
        assert_eq!(get(&f, "user.fine").as_deref(), Some(&b"ok"[..]));
    }
}
