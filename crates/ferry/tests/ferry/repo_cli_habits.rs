//! restic habits of `ferry repo`: RESTIC_* variables beside FERRY_* ones (FERRY_* wins),
//! the password prompt on a terminal and the error without one, unsupported backends named,
//! a corrupt snapshot skipped with a warning, unlock, forget and prune from the command
//! line, and progress without a made-up total.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PASSWORD: &str = "cli habits password";

/// ferry with no repository or password settings at all.
fn bare(cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.args(args).current_dir(cwd);
    for v in [
        "FERRY_PASSWORD",
        "FERRY_PASSWORD_FILE",
        "FERRY_REPOSITORY",
        "RESTIC_PASSWORD",
        "RESTIC_PASSWORD_FILE",
        "RESTIC_REPOSITORY",
        "FERRY_PROGRESS_INTERVAL",
    ] {
        c.env_remove(v);
    }
    c
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

fn ok(c: &mut Command) -> String {
    let out = run(c);
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(c: &mut Command) -> String {
    let out = run(c);
    assert!(!out.status.success(), "{c:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn with_pw(cwd: &Path, args: &[&str]) -> Command {
    let mut c = bare(cwd, args);
    c.env("FERRY_PASSWORD", PASSWORD);
    c
}

fn small_source(d: &Path) {
    std::fs::create_dir_all(d.join("src/sub")).unwrap();
    std::fs::write(d.join("src/a.txt"), b"hello").unwrap();
    std::fs::write(d.join("src/sub/b.bin"), vec![3u8; 700_000]).unwrap();
}

#[test]
fn restic_variables_work_and_ferry_variables_win() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_source(d);
    std::fs::write(d.join("pw"), format!("  {PASSWORD}\n")).unwrap();
    // Only restic's names: location and password file (white space trimmed, as restic).
    ok(bare(d, &["repo", "init"])
        .env("RESTIC_REPOSITORY", "repo")
        .env("RESTIC_PASSWORD_FILE", "pw"));
    ok(bare(d, &["repo", "backup", "src"])
        .env("RESTIC_REPOSITORY", "repo")
        .env("RESTIC_PASSWORD", PASSWORD));
    // restic reads the same repository with the same file.
    let out = Command::new("restic")
        .args(["--no-cache", "snapshots", "--json"])
        .current_dir(d)
        .env("RESTIC_REPOSITORY", "repo")
        .env("RESTIC_PASSWORD_FILE", "pw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // FERRY_* wins over RESTIC_* for the password and the location.
    let e = err(bare(d, &["repo", "snapshots"])
        .env("RESTIC_REPOSITORY", "repo")
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("FERRY_PASSWORD", "not it"));
    assert!(e.contains("wrong password"), "{e}");
    let e = err(bare(d, &["repo", "snapshots"])
        .env("RESTIC_REPOSITORY", "repo")
        .env("FERRY_REPOSITORY", "elsewhere")
        .env("RESTIC_PASSWORD", PASSWORD));
    assert!(e.contains("no repository at elsewhere"), "{e}");
    ok(bare(d, &["repo", "snapshots"])
        .env("RESTIC_REPOSITORY", "elsewhere")
        .env("FERRY_REPOSITORY", "repo")
        .env("RESTIC_PASSWORD", "not it")
        .env("FERRY_PASSWORD", PASSWORD));
}

#[test]
fn without_a_terminal_a_missing_password_is_an_error_naming_the_options() {
    let t = tempfile::tempdir().unwrap();
    let e = err(bare(t.path(), &["repo", "init", "--repo", "repo"]).stdin(Stdio::null()));
    for name in [
        "--password-file",
        "FERRY_PASSWORD_FILE",
        "FERRY_PASSWORD",
        "RESTIC_PASSWORD_FILE",
        "RESTIC_PASSWORD",
    ] {
        assert!(e.contains(name), "{name} missing: {e}");
    }
    assert!(!t.path().join("repo").exists());
    let e = err(bare(t.path(), &["repo", "snapshots"]).env("FERRY_PASSWORD", PASSWORD));
    assert!(
        e.contains("--repo") && e.contains("RESTIC_REPOSITORY"),
        "{e}"
    );
}

/// Runs ferry under script(1) (a pseudo-terminal), typing `answers` each after the prompt
/// containing the matching text appeared; returns everything the terminal showed.
fn on_terminal(cwd: &Path, ferry_args: &str, answers: &[(&str, &str)]) -> (bool, String) {
    let ferry_bin = env!("CARGO_BIN_EXE_ferry");
    let mut child = Command::new("script")
        .args(["-qec", &format!("{ferry_bin} {ferry_args}"), "/dev/null"])
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    for (prompt, answer) in answers {
        while !seen.contains(prompt) {
            let n = stdout.read(&mut buf).unwrap();
            assert!(n > 0, "no prompt {prompt:?} in {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // Only what follows the prompt is looked at next.
        seen = seen.split_once(prompt).unwrap().1.to_string();
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    (status.success(), seen + &rest)
}

#[test]
fn on_a_terminal_the_password_is_asked_without_echo_and_twice_for_a_new_repository() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_source(d);
    let secret = "typed-secret-91";
    let (okay, shown) = on_terminal(
        d,
        "repo init --repo repo",
        &[("new repository", secret), ("again", secret)],
    );
    assert!(okay, "{shown}");
    assert!(!shown.contains(secret), "the password was echoed: {shown}");
    assert!(shown.contains("created repository"), "{shown}");
    // The typed password is the repository's password.
    ok(bare(d, &["repo", "backup", "--repo", "repo", "src"]).env("FERRY_PASSWORD", secret));
    let (okay, shown) = on_terminal(
        d,
        "repo snapshots --repo repo",
        &[("password for repository", secret)],
    );
    assert!(okay, "{shown}");
    assert!(shown.contains("1 snapshots"), "{shown}");
    assert!(!shown.contains(secret), "{shown}");

    // Two different answers create nothing.
    let (okay, shown) = on_terminal(
        d,
        "repo init --repo other",
        &[("new repository", "one"), ("again", "two")],
    );
    assert!(!okay && shown.contains("differ"), "{shown}");
    assert!(!d.join("other/config").exists());
}

#[test]
fn unsupported_backends_are_named() {
    let t = tempfile::tempdir().unwrap();
    for (loc, scheme) in [
        ("sftp:host:/x", "sftp"),
        ("rest:http://host:8000/", "rest"),
        ("azure:container:/p", "azure"),
        ("gs:bucket:/p", "gs"),
        ("b2:bucket:p", "b2"),
        ("swift:container:/p", "swift"),
        ("rclone:remote:p", "rclone"),
    ] {
        let e = err(&mut with_pw(
            t.path(),
            &["repo", "snapshots", "--repo", loc],
        ));
        assert!(
            e.contains(&format!("unsupported backend '{scheme}' in --repo {loc}"))
                && e.contains("ferry supports local paths")
                && e.contains("s3:"),
            "{e}"
        );
        assert!(!e.contains("no repository at"), "{e}");
    }
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn a_corrupt_snapshot_is_skipped_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_source(d);
    ok(&mut with_pw(d, &["repo", "init", "--repo", "repo"]));
    ok(&mut with_pw(
        d,
        &["repo", "backup", "--repo", "repo", "src"],
    ));
    ok(&mut with_pw(
        d,
        &["repo", "backup", "--repo", "repo", "src"],
    ));
    let snaps: Vec<_> = std::fs::read_dir(d.join("repo/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let victim = &snaps[0];
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    let mut perm = std::fs::metadata(victim).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(victim, perm).unwrap();
    std::fs::write(victim, b"garbage").unwrap();

    let out = run(&mut with_pw(
        d,
        &["repo", "snapshots", "--repo", "repo", "--json"],
    ));
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_ne!(list[0]["id"], name);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("warning") && e.contains(&name), "{e}");
    // `latest` still resolves, and restores.
    ok(&mut with_pw(
        d,
        &[
            "repo", "restore", "--repo", "repo", "latest", "--target", "out",
        ],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_removes_stale_locks_or_all_of_them() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&mut with_pw(d, &["repo", "init", "--repo", "repo"]));
    // A lock of a process that no longer exists on this host is stale (shared, so the
    // restic below, which honours every lock, can still take its own).
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let backend = ferry_repo::backend::open(&d.join("repo").to_string_lossy()).unwrap();
    let repo = ferry_repo::Repository::open(backend, PASSWORD)
        .await
        .unwrap();
    let stale = serde_json::json!({"time": k8s_openapi::jiff::Timestamp::now().to_string(), "exclusive": false,
        "hostname": ferry_repo::sys::hostname(), "username": "u", "pid": dead_pid,
        "uid": 0, "gid": 0});
    repo.save_unpacked(
        ferry_repo::backend::FileType::Lock,
        serde_json::to_vec(&stale).unwrap(),
    )
    .await
    .unwrap();
    // A restic backup from stdin waits there and holds a live lock.
    let mut waiting = Command::new("restic")
        .args(["-r", "repo", "--no-cache", "backup", "--stdin"])
        .current_dir(d)
        .env("RESTIC_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let locks = || std::fs::read_dir(d.join("repo/locks")).map_or(0, |r| r.count());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while locks() < 2 {
        assert!(std::time::Instant::now() < deadline, "restic took no lock");
        if let Some(status) = waiting.try_wait().unwrap() {
            panic!("restic ended ({status}) instead of waiting with its lock");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The stale lock goes with plain unlock, the live one stays…
    let out = ok(&mut with_pw(d, &["repo", "unlock", "--repo", "repo"]));
    assert!(out.contains("removed 1 stale locks"), "{out}");
    assert_eq!(locks(), 1);
    // …until --remove-all.
    let out = ok(&mut with_pw(
        d,
        &["repo", "unlock", "--repo", "repo", "--remove-all"],
    ));
    assert!(out.contains("removed 1 locks"), "{out}");
    assert_eq!(locks(), 0);
    waiting.kill().unwrap();
    waiting.wait().unwrap();
}

#[test]
fn forget_prune_and_stats_from_the_command_line_agree_with_restic() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_source(d);
    ok(&mut with_pw(d, &["repo", "init", "--repo", "repo"]));
    ok(&mut with_pw(
        d,
        &["repo", "backup", "--repo", "repo", "src"],
    ));
    std::fs::write(d.join("src/sub/b.bin"), vec![4u8; 900_000]).unwrap();
    ok(&mut with_pw(
        d,
        &["repo", "backup", "--repo", "repo", "src"],
    ));
    let restic_json = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("restic")
            .args(["-r", "repo", "--no-cache", "--json"])
            .args(args)
            .current_dir(d)
            .env("RESTIC_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for mode in ["restore-size", "raw-data"] {
        let ours: serde_json::Value = serde_json::from_str(&ok(&mut with_pw(
            d,
            &["repo", "stats", "--repo", "repo", "--json", "--mode", mode],
        )))
        .unwrap();
        assert_eq!(ours, restic_json(&["stats", "--mode", mode]), "{mode}");
    }

    // A dry run decides like restic and removes nothing.
    let dry: serde_json::Value = serde_json::from_str(&ok(&mut with_pw(
        d,
        &[
            "repo",
            "forget",
            "--repo",
            "repo",
            "--keep-last",
            "1",
            "--dry-run",
            "--json",
        ],
    )))
    .unwrap();
    let theirs = restic_json(&["forget", "--keep-last", "1", "--dry-run"]);
    let ids = |v: &serde_json::Value, k: &str| -> Vec<String> {
        v[0][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&dry, "keep"), ids(&theirs, "keep"));
    assert_eq!(ids(&dry, "remove"), ids(&theirs, "remove"));
    assert_eq!(
        std::fs::read_dir(d.join("repo/snapshots")).unwrap().count(),
        2
    );

    let out = ok(&mut with_pw(
        d,
        &[
            "repo",
            "forget",
            "--repo",
            "repo",
            "--keep-last",
            "1",
            "--prune",
        ],
    ));
    assert!(out.contains("removed 1 snapshot(s)"), "{out}");
    assert!(out.contains("freed"), "{out}");
    assert_eq!(
        std::fs::read_dir(d.join("repo/snapshots")).unwrap().count(),
        1
    );
    let check = Command::new("restic")
        .args(["-r", "repo", "--no-cache", "check", "--read-data"])
        .current_dir(d)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let out = ok(&mut with_pw(
        d,
        &["repo", "prune", "--repo", "repo", "--json"],
    ));
    // Status lines, then the summary.
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["message_type"], "summary", "{report}");
    assert_eq!(report["blobs_unused"], 0, "{report}");
    ok(&mut with_pw(
        d,
        &[
            "repo", "restore", "--repo", "repo", "latest", "--target", "out",
        ],
    ));
    assert_eq!(
        std::fs::read(d.join("out/src/sub/b.bin")).unwrap(),
        vec![4u8; 900_000]
    );
}

#[test]
fn progress_is_a_spinner_for_backup_a_bar_for_restore_and_plain_lines_without_a_terminal() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_source(d);
    std::fs::write(d.join("src/big.bin"), vec![9u8; 5_000_000]).unwrap();
    ok(&mut with_pw(d, &["repo", "init", "--repo", "repo"]));

    // On a terminal, backup (totals unknown) shows counts and rate, no total or ETA.
    let ferry_bin = env!("CARGO_BIN_EXE_ferry");
    let tty = |args: &str| {
        let out = Command::new("script")
            .args(["-qec", &format!("{ferry_bin} {args}"), "/dev/null"])
            .current_dir(d)
            .env("FERRY_PASSWORD", PASSWORD)
            .env_remove("FERRY_REPOSITORY")
            .env_remove("FERRY_PROGRESS_INTERVAL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = tty("repo backup --repo repo src");
    assert!(
        shown.contains("backup ") && shown.contains("read"),
        "{shown}"
    );
    assert!(!shown.contains("ETA") && !shown.contains("/0 B"), "{shown}");
    // restore and check --read-data know their totals: a bar with an ETA.
    let shown = tty("repo restore --repo repo latest --target tty-out");
    assert!(
        shown.contains("ETA") && shown.contains("/3 files"),
        "{shown}"
    );
    let shown = tty("repo check --repo repo --read-data");
    assert!(
        shown.contains("check ") && shown.contains(" packs"),
        "{shown}"
    );

    // Not a terminal: plain lines on stderr at the interval (0: every update), no bar.
    let plain = |args: &[&str]| {
        let out = run(with_pw(d, args).env("FERRY_PROGRESS_INTERVAL", "0"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = plain(&["repo", "backup", "--repo", "repo", "src"]);
    assert!(
        err.lines()
            .any(|l| l.starts_with("backup: ") && l.contains(" files, ")),
        "{err}"
    );
    assert!(!err.contains('[') && !err.contains("ETA"), "{err}");
    let err = plain(&[
        "repo", "restore", "--repo", "repo", "latest", "--target", "plain",
    ]);
    assert!(
        err.lines()
            .any(|l| l.starts_with("restore: ") && l.contains(" of 3 files")),
        "{err}"
    );
    let err = plain(&["repo", "check", "--repo", "repo", "--read-data"]);
    assert!(
        err.lines()
            .any(|l| l.starts_with("check: ") && l.contains(" packs")),
        "{err}"
    );
}
