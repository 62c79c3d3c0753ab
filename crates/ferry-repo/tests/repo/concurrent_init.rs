//! Data movers of one Velero backup start together, on different nodes, and each creates the
//! namespace's repository if it is not there yet. Of concurrent creators exactly one may win:
//! two key files with different master keys (and the last config written winning) would
//! leave the losers' backups encrypted with a key nothing opens.

use crate::common;
use crate::s3_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{PASSWORD, TEST_KDF, make_tree, no_progress, restic_ok};
use ferry_repo::backend::local::LocalBackend;
use ferry_repo::backend::retry::RetryingBackend;
use ferry_repo::backend::s3::S3Backend;
use ferry_repo::backend::{Backend, BackendError, FileType, Handle};
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::check::CheckOptions;
use ferry_repo::{RepoError, Repository};
use s3_support::{Moto, restic_s3};

const MOVERS: usize = 8;

/// `MOVERS` tasks, each with its own backend instance (as separate processes have), start
/// together on an empty location and each backs up its own directory with the tag
/// `mover-N`. Returns the snapshot ids.
async fn race_to_create_and_back_up(
    make_backend: impl Fn() -> Arc<dyn Backend>,
    sources: &Path,
) -> Vec<String> {
    let barrier = Arc::new(tokio::sync::Barrier::new(MOVERS));
    let movers: Vec<_> = (0..MOVERS)
        .map(|n| {
            let src = sources.join(format!("volume-{n}"));
            make_tree(&src);
            std::fs::write(src.join("mover.txt"), format!("written by mover {n}\n")).unwrap();
            let backend = make_backend();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let repo = Repository::open_or_init(
                    backend,
                    PASSWORD,
                    Some(TEST_KDF),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|e| panic!("mover {n}: {e}"));
                let summary = repo
                    .backup(
                        BackupSource::Paths(vec![src]),
                        BackupOptions {
                            host: Some("race".into()),
                            tags: vec![format!("mover-{n}")],
                            ..Default::default()
                        },
                        no_progress(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("mover {n}: backup: {e}"));
                summary.snapshot_id.to_hex()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for mover in movers {
        ids.push(mover.await.unwrap());
    }
    ids
}

/// What every racer must leave: one key, one config it opens, every snapshot readable with
/// it and the repository whole.
async fn assert_one_sound_repository(backend: Arc<dyn Backend>, ids: &[String]) {
    let keys = backend.list(FileType::Key).await.unwrap();
    assert_eq!(keys.len(), 1, "exactly one key file: {keys:?}");
    let repo = Repository::open(backend, PASSWORD).await.unwrap();
    let snapshots = repo.snapshots().await.unwrap();
    let mut found: Vec<_> = snapshots.iter().map(|s| s.id.to_hex()).collect();
    let mut expected = ids.to_vec();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "every mover's snapshot is readable");
    for n in 0..MOVERS {
        assert!(
            snapshots.iter().any(|s| s.tags == [format!("mover-{n}")]),
            "mover {n}'s snapshot"
        );
    }
    let report = repo
        .check(CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.snapshots, MOVERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creation_of_a_local_repository_leaves_one_sound_repository() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let ids = race_to_create_and_back_up(
        || Arc::new(LocalBackend::new(&dir)) as Arc<dyn Backend>,
        &t.path().join("sources"),
    )
    .await;
    assert_one_sound_repository(Arc::new(LocalBackend::new(&dir)), &ids).await;

    // restic agrees: it opens the repository with the password, finds all the snapshots and
    // every pack's data intact.
    let check = restic_ok(
        t.path(),
        &["-r", "repo", "--no-cache", "check", "--read-data"],
    );
    assert!(check.contains("no errors were found"), "{check}");
    let listed: serde_json::Value = serde_json::from_str(&restic_ok(
        t.path(),
        &["-r", "repo", "--no-cache", "snapshots", "--json"],
    ))
    .unwrap();
    let mut restic_ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let mut ids = ids;
    restic_ids.sort();
    ids.sort();
    assert_eq!(restic_ids, ids);
}

/// The same on S3, where the config's conditional PUT (`If-None-Match: *`) decides: moto
/// honours it. (moto checks and stores in two steps without a lock, so it is not atomic
/// itself; its window is far smaller than the old check-then-write's, which this test
/// caught: two keys.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creation_of_an_s3_repository_leaves_one_sound_repository() {
    let t = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    moto.create_bucket("velero");
    let config = moto.config("velero", "restic/ns-a");
    // ferry's S3 stack: retries over the S3 client; one client per mover.
    let backend = || {
        Arc::new(RetryingBackend::new(
            S3Backend::new(config.clone()).unwrap(),
        )) as Arc<dyn Backend>
    };
    let ids = race_to_create_and_back_up(backend, &t.path().join("sources")).await;
    assert_one_sound_repository(backend(), &ids).await;

    let location = backend().location();
    let check = restic_s3(t.path(), PASSWORD, &location, &["check", "--read-data"]);
    assert!(check.contains("no errors were found"), "{check}");
    let listed: serde_json::Value = serde_json::from_str(&restic_s3(
        t.path(),
        PASSWORD,
        &location,
        &["snapshots", "--json"],
    ))
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), MOVERS, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loser_of_a_creation_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&dir));
    Repository::init_with_kdf(backend.clone(), PASSWORD, Some(TEST_KDF))
        .await
        .unwrap();
    let config = std::fs::read(dir.join("config")).unwrap();
    // A creator that checked for the config just before the winner wrote it: simulated by
    // hiding the config from its first look only.
    let late = Arc::new(common::HookedBackend::new(&dir, HideConfigOnce::default()));
    let err = Repository::init_with_kdf(late, PASSWORD, Some(TEST_KDF))
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::AlreadyExists { .. }), "{err}");
    assert_eq!(std::fs::read(dir.join("config")).unwrap(), config);
    assert_eq!(backend.list(FileType::Key).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_creator_ends_with_a_clear_error_and_a_wrong_password_at_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&dir));
    Repository::init_with_kdf(backend.clone(), PASSWORD, Some(TEST_KDF))
        .await
        .unwrap();

    // Another password: the key is there and refuses it; no waiting.
    let started = std::time::Instant::now();
    let err = Repository::open_or_init(
        backend.clone(),
        "not the password",
        Some(TEST_KDF),
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no waiting for a wrong password"
    );

    // A config whose creator never wrote its key: waited for, then named.
    let keys = dir.join("keys");
    for entry in std::fs::read_dir(&keys).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let err = Repository::open(backend.clone(), PASSWORD)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::NoKey { .. }), "{err}");
    let started = std::time::Instant::now();
    let err = Repository::open_or_init(
        backend.clone(),
        PASSWORD,
        Some(TEST_KDF),
        Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(&err, RepoError::NotReady { last, .. } if matches!(**last, RepoError::NoKey { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("config file but no key file"),
        "{err}"
    );
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(
        std::fs::read_dir(&keys).unwrap().next().is_none(),
        "no key was added"
    );
}

/// Hooks whose first `stat` of the config says it is not there.
#[derive(Debug, Default)]
struct HideConfigOnce {
    hidden: std::sync::atomic::AtomicBool,
}

impl common::BackendHooks for HideConfigOnce {
    fn stat(&self, h: &Handle) -> Option<Result<u64, BackendError>> {
        (h.kind == FileType::Config
            && !self.hidden.swap(true, std::sync::atomic::Ordering::Relaxed))
        .then(|| Err(BackendError::NotFound(h.to_string())))
    }
}
