//! Whole repositories on S3 (moto on 127.0.0.1): ferry's engines over the S3 backend, interop
//! with restic's own s3 backend, and backup/restore through a fault-injecting proxy.

use crate::common;
use crate::s3_support;

use std::sync::Arc;
use std::time::Duration;

use common::{PASSWORD, assert_same_tree, in_snapshot, make_tree, no_progress};
use ferry_repo::Repository;
use ferry_repo::backend::Backend;
use ferry_repo::backend::retry::{RetryPolicy, RetryingBackend};
use ferry_repo::backend::s3::{S3Backend, S3Config};
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::restore::{RestoreOptions, RestoreTarget};
use s3_support::{FaultPlan, FaultyProxy, Moto, config_for, free_port, restic_s3};

/// The backend stack ferry uses for S3: retries over the S3 client.
fn s3_backend(config: S3Config, policy: RetryPolicy) -> Arc<dyn Backend> {
    Arc::new(RetryingBackend::new(S3Backend::new(config).unwrap()).with_policy(policy))
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(60),
    }
}

/// Parses a restic location the way `ferry --repo` does, with the test credentials.
fn config_from_location(location: &str) -> S3Config {
    let env: std::collections::HashMap<_, _> = Moto::env().into_iter().collect();
    S3Config::from_location(location, |name| env.get(name).map(|v| v.to_string())).unwrap()
}

async fn backup(repo: &Repository, src: &std::path::Path) -> ferry_repo::BackupSummary {
    repo.backup(
        BackupSource::Paths(vec![src.to_path_buf()]),
        BackupOptions {
            host: Some("s3-test".into()),
            ..Default::default()
        },
        no_progress(),
    )
    .await
    .unwrap()
}

async fn restore_latest(repo: &Repository, target: &std::path::Path) {
    let snapshot = repo.find_snapshot("latest").await.unwrap();
    repo.restore(
        &snapshot,
        RestoreTarget::Directory {
            path: target.to_path_buf(),
            subpath: None,
        },
        RestoreOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_backup_to_s3_restores_identical_tree() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let moto = Moto::start();
    moto.create_bucket("ferry");

    let repo = Repository::init(
        s3_backend(moto.config("ferry", "vol/a"), fast_retries()),
        PASSWORD,
    )
    .await
    .unwrap();
    let summary = backup(&repo, &src).await;
    assert!(summary.files_new > 150, "{summary:?}");

    // A fresh client, as the data mover pod would open it.
    let reopened = Repository::open(
        s3_backend(moto.config("ferry", "vol/a"), fast_retries()),
        PASSWORD,
    )
    .await
    .unwrap();
    let out = t.path().join("out");
    restore_latest(&reopened, &out).await;
    assert_same_tree(&src, &in_snapshot(&out, &src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restic_backup_on_s3_restores_with_ferry() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let moto = Moto::start();
    moto.create_bucket("shared");
    let location = format!("s3:{}/shared/restic-made", moto.endpoint());
    restic_s3(
        t.path(),
        PASSWORD,
        &location,
        &["init", "--repository-version", "2"],
    );
    restic_s3(
        t.path(),
        PASSWORD,
        &location,
        &["backup", "--compression", "auto", "src"],
    );

    let repo = Repository::open(
        s3_backend(config_from_location(&location), fast_retries()),
        PASSWORD,
    )
    .await
    .unwrap();
    let out = t.path().join("out");
    restore_latest(&repo, &out).await;
    // restic keeps the relative path it was given.
    assert_same_tree(&src, &out.join("src"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_backup_on_s3_passes_restic_check_read_data() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let moto = Moto::start();
    moto.create_bucket("checked");
    let location = format!("s3:{}/checked", moto.endpoint());

    let repo = Repository::init(
        s3_backend(config_from_location(&location), fast_retries()),
        PASSWORD,
    )
    .await
    .unwrap();
    let summary = backup(&repo, &src).await;

    let check = restic_s3(t.path(), PASSWORD, &location, &["check", "--read-data"]);
    assert!(check.contains("no errors were found"), "{check}");
    let snapshots = restic_s3(t.path(), PASSWORD, &location, &["snapshots", "--json"]);
    let snapshots: serde_json::Value = serde_json::from_str(&snapshots).unwrap();
    assert_eq!(snapshots[0]["id"], summary.snapshot_id.to_hex());
    restic_s3(
        t.path(),
        PASSWORD,
        &location,
        &["restore", "latest", "--target", "out"],
    );
    assert_same_tree(&src, &in_snapshot(&t.path().join("out"), &src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_through_faulty_proxy_succeed() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let moto = Moto::start();
    moto.create_bucket("flaky");
    let proxy = FaultyProxy::start(
        moto.port(),
        FaultPlan {
            every: 4,
            max_faults: 100,
        },
    )
    .await;
    let flaky = || {
        s3_backend(
            config_for(&proxy.endpoint(), "flaky", "repo"),
            fast_retries(),
        )
    };

    let repo = Repository::init(flaky(), PASSWORD).await.unwrap();
    backup(&repo, &src).await;
    let faults_during_backup = proxy.faults_injected();
    assert!(
        faults_during_backup > 0,
        "no faults in {} requests",
        proxy.requests_seen()
    );

    let repo = Repository::open(flaky(), PASSWORD).await.unwrap();
    let out = t.path().join("out");
    restore_latest(&repo, &out).await;
    assert_same_tree(&src, &in_snapshot(&out, &src));
    assert!(
        proxy.faults_injected() > faults_during_backup,
        "no faults during restore"
    );

    // What went through the faults is a sound repository for restic too.
    let location = format!("s3:{}/flaky/repo", moto.endpoint());
    let check = restic_s3(t.path(), PASSWORD, &location, &["check", "--read-data"]);
    assert!(check.contains("no errors were found"), "{check}");
}

#[tokio::test]
async fn unreachable_endpoint_fails_opening_with_a_clear_error() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let backend = s3_backend(
        config_for(&endpoint, "bucket", "repo"),
        RetryPolicy::default(),
    );
    let err = Repository::open(backend, PASSWORD)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("cannot connect to the S3 endpoint {endpoint}")),
        "{err}"
    );
}
