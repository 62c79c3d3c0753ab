//! Key files against restic: new keys are calibrated the way restic calibrates them (and
//! restic opens them); restic's calibrated keys open with ferry's parallel scrypt; a
//! corrupt key file or one with scrypt parameters beyond restic's limits is named as such,
//! never taken for a wrong password; a new repository refuses an empty password.

use crate::common;

use std::sync::Arc;

use common::*;
use ferry_repo::backend::local::LocalBackend;
use ferry_repo::{RepoError, Repository};

fn key_files(repo: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn key_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_are_calibrated_like_restics_and_both_tools_open_both() {
    let t = tempfile::tempdir().unwrap();
    // ferry's key: N a power of two within restic's 60 MiB bound (2^15, halved only when a
    // lane takes longer than the 0.5 s target on a busy machine), r = 8, p calibrated.
    Repository::init(
        Arc::new(LocalBackend::new(t.path().join("ferry"))),
        PASSWORD,
    )
    .await
    .unwrap();
    let keys = key_files(&t.path().join("ferry"));
    assert_eq!(keys.len(), 1);
    let k = key_json(&keys[0]);
    assert_eq!(k["kdf"], "scrypt");
    let n = k["N"].as_u64().unwrap();
    assert!(
        n.is_power_of_two() && (1 << 10..=1 << 15).contains(&n),
        "{k}"
    );
    assert_eq!(k["r"], 8, "{k}");
    assert!(k["p"].as_u64().unwrap() >= 1, "{k}");
    assert_eq!(
        base64_len(k["salt"].as_str().unwrap()),
        64,
        "restic's salt length"
    );
    // restic opens ferry's key (restic_ok fails the test otherwise).
    restic_ok(t.path(), &["-r", "ferry", "--no-cache", "cat", "config"]);

    // restic's key (calibrated by restic on this machine) opens with ferry.
    restic_ok(t.path(), &["init", "-r", "restic"]);
    let repo = open_repo(&t.path().join("restic")).await;
    assert_eq!(repo.config().version, 2);
}

fn base64_len(s: &str) -> usize {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_oversized_key_files_are_named_not_a_wrong_password() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    init_repo(&dir).await;
    let key = key_files(&dir).remove(0);
    let name = format!("keys/{}", key.file_name().unwrap().to_string_lossy());
    let good = std::fs::read(&key).unwrap();
    let mut perm = std::fs::metadata(&key).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&key, perm).unwrap();

    let with = |field: &str, value: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v[field] = value;
        serde_json::to_vec(&v).unwrap()
    };
    for (bytes, want) in [
        (b"{\"kdf\": ".to_vec(), "not a key file's JSON"),
        (with("salt", "***".into()), "salt is not base64"),
        (with("data", "AAAA".into()), "too short"),
        // 4 GiB per lane: refused before anything is allocated.
        (with("N", (1u64 << 25).into()), "outside restic's limits"),
        (with("p", (1u64 << 28).into()), "outside restic's limits"),
    ] {
        std::fs::write(&key, &bytes).unwrap();
        let err = Repository::open(Arc::new(LocalBackend::new(&dir)), PASSWORD)
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::CorruptKey { .. }), "{want}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("key file {name} is corrupt")) && msg.contains(want),
            "{msg}"
        );
    }
    std::fs::write(&key, &good).unwrap();
    open_repo(&dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_repository_refuses_an_empty_password() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let err = Repository::init(Arc::new(LocalBackend::new(&dir)), "")
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::EmptyPassword), "{err}");
    assert!(!dir.join("config").exists());
}
