//! restic's lock rules, shared both ways with a real restic: a live lock of another process
//! is respected by both tools; a lock of a dead process on this host and a lock older than
//! 30 minutes are stale for both (ferry passes them by, restic's `unlock` removes them).

use crate::common;

use std::process::{Command, Stdio};

use common::*;
use ferry_repo::RepoError;
use ferry_repo::backend::FileType;

fn lock_json(hostname: &str, pid: u32, age_secs: i64) -> Vec<u8> {
    let time = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age_secs);
    serde_json::to_vec(&serde_json::json!({
        "time": time.to_string(),
        "exclusive": true,
        "hostname": hostname,
        "username": "someone",
        "pid": pid,
        "uid": 0, "gid": 0
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restics_live_and_dead_locks_and_stale_ages_are_judged_alike() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"x").unwrap();
    let repo = init_repo(&t.path().join("repo")).await;

    // A restic backup waiting on stdin holds its (shared) lock.
    let mut waiting = Command::new("restic")
        .args(["-r", "repo", "--no-cache", "backup", "--stdin"])
        .current_dir(t.path())
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_REPOSITORY")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut tries = 0;
    while repo.list_locks().await.unwrap().is_empty() {
        tries += 1;
        assert!(tries < 300, "restic never took its lock");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Shared with shared is fine; exclusive conflicts with restic's live lock.
    repo.lock(false).await.unwrap().release().await;
    let err = repo
        .lock(true)
        .await
        .err()
        .expect("restic's lock must conflict");
    assert!(matches!(err, RepoError::Locked { .. }), "{err}");
    // Killed, restic leaves its lock behind: a dead process on this host, so stale.
    waiting.kill().unwrap();
    waiting.wait().unwrap();
    assert_eq!(repo.list_locks().await.unwrap().len(), 1);
    repo.lock(true).await.unwrap().release().await;
    assert_eq!(repo.unlock_stale().await.unwrap(), 1);

    // ferry's lock for a live process on another host keeps restic out...
    let id = repo
        .save_unpacked(FileType::Lock, lock_json("elsewhere", 1, 60))
        .await
        .unwrap();
    let out = restic(t.path(), &["-r", "repo", "--no-cache", "backup", "f"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(repo.lock(false).await.is_err());
    // ...and restic's unlock leaves it (not stale), as ferry's does.
    restic_ok(t.path(), &["-r", "repo", "--no-cache", "unlock"]);
    assert_eq!(repo.unlock_stale().await.unwrap(), 0);
    repo.backend()
        .remove(&ferry_repo::backend::Handle::new(
            FileType::Lock,
            id.to_hex(),
        ))
        .await
        .unwrap();

    // Older than 30 minutes: stale for both, wherever it was taken. ferry passes it by;
    // restic 0.14 does not pass any lock by itself, but its `unlock` removes it as stale.
    repo.save_unpacked(FileType::Lock, lock_json("elsewhere", 1, 31 * 60))
        .await
        .unwrap();
    repo.lock(true).await.unwrap().release().await;
    assert_eq!(repo.list_locks().await.unwrap().len(), 1);
    restic_ok(t.path(), &["-r", "repo", "--no-cache", "unlock"]);
    assert!(repo.list_locks().await.unwrap().is_empty());
    restic_ok(t.path(), &["-r", "repo", "--no-cache", "backup", "f"]);
}
