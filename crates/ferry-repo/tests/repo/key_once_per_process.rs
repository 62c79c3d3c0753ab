//! A process derives a repository's key once: opening the same repository again (the data
//! mover per volume, a second command in one process) reuses it. Alone in its test binary,
//! so no other test's derivations are counted.

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_repository_again_derives_no_key() {
    let t = tempfile::tempdir().unwrap();
    restic_ok(t.path(), &["init", "-r", "repo"]);
    let before = ferry_repo::kdf::derivations();
    for _ in 0..3 {
        open_repo(&t.path().join("repo")).await;
    }
    assert_eq!(ferry_repo::kdf::derivations() - before, 1);
    // A wrong password is not remembered as right, and derives every time.
    for _ in 0..2 {
        let err = ferry_repo::Repository::open(
            std::sync::Arc::new(ferry_repo::backend::local::LocalBackend::new(
                t.path().join("repo"),
            )),
            "wrong",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ferry_repo::RepoError::WrongPassword { .. }));
    }
    assert_eq!(ferry_repo::kdf::derivations() - before, 3);
}
