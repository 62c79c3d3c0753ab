//! ferry's own behaviour: errors for bad input, corruption detection naming pack and file,
//! block-volume (stream) backup and in-place device restore, parent snapshots, locks.

use crate::common;

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use common::*;
use ferry_repo::backend::local::LocalBackend;
use ferry_repo::backend::{FileType, Handle};
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::check::CheckOptions;
use ferry_repo::restore::{RestoreOptions, RestoreTarget};
use ferry_repo::{RepoError, Repository};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let backend = Arc::new(LocalBackend::new(&dir));
    let err = Repository::open(backend.clone(), PASSWORD)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::NoRepository { .. }), "{err}");
    assert!(err.to_string().contains("no repository at"), "{err}");

    let repo = Repository::init(backend.clone(), PASSWORD).await.unwrap();
    let err = Repository::init(backend.clone(), PASSWORD)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::AlreadyExists { .. }), "{err}");

    let err = Repository::open(backend.clone(), "not the password")
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err}");

    let err = repo.find_snapshot("deadbeef").await.unwrap_err();
    assert!(matches!(err, RepoError::SnapshotNotFound { .. }), "{err}");
    let err = repo.find_snapshot("latest").await.unwrap_err();
    assert!(matches!(err, RepoError::SnapshotNotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_round_trip_keeps_non_utf8_link_targets() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree_with(&src, true);
    let repo = init_repo(&t.path().join("repo")).await;
    repo.backup(
        BackupSource::Paths(vec![src.clone()]),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    let out = t.path().join("out");
    restore_latest(&repo, &out).await.unwrap();
    assert_same_tree(&src, &in_snapshot(&out, &src));
}

/// The largest pack file of a local repository.
fn largest_pack(repo_dir: &std::path::Path) -> std::path::PathBuf {
    let mut packs = Vec::new();
    walk(&repo_dir.join("data"), &mut packs);
    packs
        .into_iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

/// Flips one byte inside the largest pack's first blob.
fn corrupt_largest_pack(repo_dir: &std::path::Path) -> String {
    let pack = largest_pack(repo_dir);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pack)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 40).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], 40).unwrap();
    pack.file_name().unwrap().to_string_lossy().into_owned()
}

/// A repository in `dir/repo` holding one backup of `dir/src/victim.bin` (3 MiB, random).
async fn repo_with_victim(dir: &std::path::Path, seed: u64) -> (Repository, std::path::PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("victim.bin"), random_bytes(seed, 3 << 20)).unwrap();
    let repo_dir = dir.join("repo");
    let repo = init_repo(&repo_dir).await;
    repo.backup(
        BackupSource::Paths(vec![src]),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    (repo, repo_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_fails_check_and_restore_naming_pack_and_file() {
    let t = tempfile::tempdir().unwrap();
    let (repo, repo_dir) = repo_with_victim(t.path(), 9).await;
    let pack = corrupt_largest_pack(&repo_dir);

    let report = repo
        .check(CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let all = report.errors.join("\n");
    assert!(all.contains(&pack), "{all}");
    assert!(all.contains("victim.bin"), "{all}");
    // Without reading data the structure is still fine.
    let report = repo
        .check(CheckOptions {
            read_data: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // restic agrees.
    let out = restic(
        t.path(),
        &["-r", "repo", "--no-cache", "check", "--read-data"],
    );
    assert!(!out.status.success());

    let target = t.path().join("out");
    let err = restore_latest(&repo, &target).await.unwrap_err();
    match &err {
        RepoError::Incomplete(s) => {
            assert_eq!(s.damaged.len(), 1, "{err}");
            assert_eq!(s.damaged[0].pack.as_deref(), Some(pack.as_str()));
            assert!(s.damaged[0].path.ends_with("victim.bin"), "{err}");
        }
        other => panic!("expected Incomplete, got {other}"),
    }
    // No silently wrong file is left behind.
    assert!(!in_snapshot(&target, &t.path().join("src/victim.bin")).exists());
}

/// Restore reads local packs through a memory mapping, where touching bytes past the end of
/// a file would kill the process: a pack cut short must be an ordinary error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_pack_fails_the_restore_naming_pack_and_file() {
    let t = tempfile::tempdir().unwrap();
    let (repo, repo_dir) = repo_with_victim(t.path(), 11).await;
    let pack = largest_pack(&repo_dir);
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();

    let target = t.path().join("out");
    let err = restore_latest(&repo, &target).await.unwrap_err();
    match &err {
        RepoError::Incomplete(s) => {
            let d = &s.damaged[0];
            assert_eq!(d.pack.as_deref(), Some(name.as_str()), "{err}");
            assert!(d.path.ends_with("victim.bin"), "{err}");
            assert!(d.reason.contains("short read"), "{err}");
        }
        other => panic!("expected Incomplete, got {other}"),
    }
    assert!(!in_snapshot(&target, &t.path().join("src/victim.bin")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_backup_restores_onto_device_leaving_zero_regions_unwritten() {
    let t = tempfile::tempdir().unwrap();
    // A 7 MiB "volume": data, a 4 MiB zero region, data.
    let mut volume = random_bytes(3, 1 << 20);
    volume.extend(vec![0u8; 4 << 20]);
    volume.extend(random_bytes(4, 2 << 20));
    let repo = init_repo(&t.path().join("repo")).await;
    let summary = repo
        .backup(
            BackupSource::Stream {
                reader: Box::new(std::io::Cursor::new(volume.clone())),
                filename: "pvc-data.img".into(),
            },
            BackupOptions::default(),
            no_progress(),
        )
        .await
        .unwrap();
    let snap = repo
        .find_snapshot(&summary.snapshot_id.to_hex())
        .await
        .unwrap();

    // A thin, all-zero target: zero regions are not written, so they stay unallocated.
    let dev = t.path().join("thin.img");
    std::fs::File::create(&dev)
        .unwrap()
        .set_len(volume.len() as u64)
        .unwrap();
    let s = repo
        .restore(
            &snap,
            RestoreTarget::Device { path: dev.clone() },
            RestoreOptions::default(),
            no_progress(),
        )
        .await
        .unwrap();
    assert!(std::fs::read(&dev).unwrap() == volume);
    assert!(s.bytes_written < volume.len() as u64);
    assert!(allocated(&dev) < 5 << 20, "allocated {}", allocated(&dev));

    // A target full of old data: the zero region must be overwritten.
    let dirty = t.path().join("dirty.img");
    std::fs::write(&dirty, vec![0xAAu8; volume.len()]).unwrap();
    repo.restore(
        &snap,
        RestoreTarget::Device {
            path: dirty.clone(),
        },
        RestoreOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    assert!(std::fs::read(&dirty).unwrap() == volume);

    // restic sees the same single file.
    let out = restic_ok(
        t.path(),
        &[
            "-r",
            "repo",
            "--no-cache",
            "dump",
            "latest",
            "/pvc-data.img",
        ],
    );
    let _ = out;
    let dumped = std::process::Command::new("restic")
        .args([
            "-r",
            "repo",
            "--no-cache",
            "dump",
            "latest",
            "/pvc-data.img",
        ])
        .current_dir(t.path())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(dumped.stdout == volume);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_snapshot_skips_unchanged_files() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..20 {
        std::fs::write(src.join("d").join(format!("f{i}")), random_bytes(i, 10_000)).unwrap();
    }
    let repo = init_repo(&t.path().join("repo")).await;
    let first = repo
        .backup(
            BackupSource::Paths(vec![src.clone()]),
            BackupOptions::default(),
            no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(first.files_new, 20);
    std::fs::write(src.join("d/f3"), b"changed").unwrap();
    let second = repo
        .backup(
            BackupSource::Paths(vec![src.clone()]),
            BackupOptions::default(),
            no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(second.parent, Some(first.snapshot_id));
    assert_eq!(
        (
            second.files_new,
            second.files_changed,
            second.files_unmodified
        ),
        (0, 1, 19)
    );
    assert_eq!(second.total_bytes_processed, 7);
    let out = t.path().join("out");
    restore_latest(&repo, &out).await.unwrap();
    assert_same_tree(&src, &in_snapshot(&out, &src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_follow_restic_rules() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"x").unwrap();
    let repo = init_repo(&t.path().join("repo")).await;

    // ferry's exclusive lock keeps restic out; released, restic gets in.
    let lock = repo.lock(true).await.unwrap();
    let out = restic(t.path(), &["-r", "repo", "--no-cache", "backup", "f"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Shared locks conflict with an exclusive one, in ferry too.
    let err = repo.lock(false).await.err().expect("must conflict");
    assert!(matches!(err, RepoError::Locked { .. }), "{err}");
    lock.release().await;
    restic_ok(t.path(), &["-r", "repo", "--no-cache", "backup", "f"]);

    // Shared locks coexist.
    let a = repo.lock(false).await.unwrap();
    let b = repo.lock(false).await.unwrap();
    a.release().await;
    b.release().await;
    assert!(repo.list_locks().await.unwrap().is_empty());

    // A lock of a dead process on this host is stale and ignored.
    let dead = serde_json::json!({
        "time": jiff::Timestamp::now().to_string(),
        "exclusive": true,
        "hostname": ferry_repo::sys::hostname(),
        "username": "ghost",
        "pid": 0x3fff_fff0u32,
        "uid": 0, "gid": 0
    });
    repo.save_unpacked(FileType::Lock, serde_json::to_vec(&dead).unwrap())
        .await
        .unwrap();
    let l = repo.lock(true).await.unwrap();
    l.release().await;
    assert_eq!(repo.unlock_stale().await.unwrap(), 1);
    let _ = Handle::config();
}

/// Large files restored by several workers at once, with room to keep only one of them
/// open between writes: every other file is closed and reopened for each write, and each is
/// written by one worker at a time. Every byte must come back and no temporary name stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_blob_files_restore_when_few_may_stay_open() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..5u64 {
        // Several chunks each (restic's chunks are 512 KiB to 8 MiB, 1 MiB on average).
        std::fs::write(src.join(format!("big{i}")), random_bytes(100 + i, 5 << 20)).unwrap();
    }
    // A zero run inside a large file stays a hole, whatever writes it was merged with.
    let mut sparse = random_bytes(7, 3 << 20);
    sparse.extend(std::iter::repeat_n(0u8, 6 << 20));
    sparse.extend(random_bytes(8, 2 << 20));
    std::fs::write(src.join("sparse"), &sparse).unwrap();
    let repo = init_repo(&t.path().join("repo")).await;
    repo.backup(
        BackupSource::Paths(vec![src.clone()]),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    let out = t.path().join("out");
    let opts = RestoreOptions {
        workers: 4,
        fetch_concurrency: 4,
        open_files: 1,
        ..Default::default()
    };
    let summary = restore_latest_with(&repo, &out, opts).await.unwrap();
    assert_eq!(summary.files, 6);
    let restored = in_snapshot(&out, &src);
    assert_same_tree(&src, &restored);
    let names: Vec<_> = std::fs::read_dir(&restored)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "temporary names left behind: {names:?}");
    assert!(
        allocated(&restored.join("sparse")) < (sparse.len() as u64) - (4 << 20),
        "the zero run was written: {} bytes allocated",
        allocated(&restored.join("sparse"))
    );
}
