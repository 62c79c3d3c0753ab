//! `ferry repo …` end to end through the binary: init, backup (paths and stdin), snapshots,
//! ls, restore (directory, subpath, device), check, cat config, and the error messages.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PASSWORD: &str = "cli test password";

fn ferry(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(cwd)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("FERRY_PASSWORD_FILE")
        .env_remove("FERRY_REPOSITORY")
        .output()
        .unwrap()
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = ferry(cwd, args);
    assert!(
        out.status.success(),
        "ferry {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn init_backup_restore_check_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("src/sub")).unwrap();
    std::fs::write(d.join("src/a.txt"), b"hello ferry").unwrap();
    std::fs::write(d.join("src/sub/b.bin"), vec![7u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("a.txt", d.join("src/link")).unwrap();
    std::fs::write(d.join("pw"), format!("{PASSWORD}\n")).unwrap();

    ok(d, &["repo", "init", "--repo", "repo"]);
    // Password from a file instead of the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "repo",
            "backup",
            "--repo",
            "repo",
            "--password-file",
            "pw",
            "--json",
            "--tag",
            "daily",
            "src",
        ])
        .current_dir(d)
        .env_remove("FERRY_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
    let summary = lines
        .iter()
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    let id = summary["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(summary["files_new"], 2);

    let snaps: serde_json::Value =
        serde_json::from_str(&ok(d, &["repo", "snapshots", "--repo", "repo", "--json"])).unwrap();
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["tags"][0], "daily");

    let ls = ok(d, &["repo", "ls", "--repo", "repo", &id[..8]]);
    assert!(ls.lines().any(|l| l == "/src/sub/b.bin"), "{ls}");

    let out = ok(
        d,
        &[
            "repo", "restore", "--repo", "repo", "latest", "--target", "out", "--json",
        ],
    );
    let lines = json_lines(&out);
    assert!(
        lines
            .iter()
            .any(|v| v["message_type"] == "status" && v["bytes_done"].is_u64())
    );
    let done = lines
        .iter()
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    assert_eq!(done["files"], 2);
    assert_eq!(
        std::fs::read(d.join("out/src/a.txt")).unwrap(),
        b"hello ferry"
    );
    assert_eq!(
        std::fs::read_link(d.join("out/src/link")).unwrap(),
        Path::new("a.txt")
    );

    ok(
        d,
        &[
            "repo",
            "restore",
            "--repo",
            "repo",
            "latest:src/sub",
            "--target",
            "only-sub",
        ],
    );
    assert_eq!(
        std::fs::read(d.join("only-sub/b.bin")).unwrap(),
        vec![7u8; 300_000]
    );

    let check = ok(d, &["repo", "check", "--repo", "repo", "--read-data"]);
    assert!(check.contains("no errors were found"), "{check}");
    let cfg: serde_json::Value =
        serde_json::from_str(&ok(d, &["repo", "cat", "--repo", "repo", "config"])).unwrap();
    assert_eq!(cfg["version"], 2);
}

#[test]
fn stdin_backup_restores_onto_a_device_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["repo", "init", "--repo", "repo"]);
    let volume: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "repo",
            "backup",
            "--repo",
            "repo",
            "--stdin",
            "--stdin-filename",
            "disk.img",
        ])
        .current_dir(d)
        .env("FERRY_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&volume).unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::File::create(d.join("dev.img"))
        .unwrap()
        .set_len(volume.len() as u64)
        .unwrap();
    ok(
        d,
        &[
            "repo",
            "restore",
            "--repo",
            "repo",
            "latest",
            "--target-device",
            "dev.img",
        ],
    );
    assert!(std::fs::read(d.join("dev.img")).unwrap() == volume);
}

#[test]
fn bad_input_gets_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = ferry(d, &["repo", "snapshots", "--repo", "nowhere"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no repository at nowhere"));

    ok(d, &["repo", "init", "--repo", "repo"]);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["repo", "snapshots", "--repo", "repo"])
        .current_dir(d)
        .env("FERRY_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));

    let out = ferry(
        d,
        &[
            "repo", "restore", "--repo", "repo", "abcdef12", "--target", "x",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("snapshot \"abcdef12\" not found"));
    assert!(!d.join("x").exists(), "a failed restore creates nothing");
}

/// Logs are plain text off a terminal (no colour codes), and one JSON object per line with
/// `--log-format json`.
#[test]
fn logs_are_plain_off_a_terminal_and_json_on_request() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::write(d.join("src/a.txt"), b"logged").unwrap();
    ok(d, &["repo", "init", "--repo", "repo"]);
    ok(d, &["repo", "backup", "--repo", "repo", "src"]);

    let text = ferry(
        d,
        &[
            "--log", "debug", "repo", "restore", "--repo", "repo", "latest", "--target", "t1",
        ],
    );
    assert!(text.status.success());
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(stderr.contains("restore: index loaded"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );

    let json = ferry(
        d,
        &[
            "--log",
            "debug",
            "--log-format",
            "json",
            "repo",
            "restore",
            "--repo",
            "repo",
            "latest",
            "--target",
            "t2",
        ],
    );
    assert!(json.status.success());
    let stderr = String::from_utf8_lossy(&json.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "restore: index loaded" && e["level"] == "DEBUG"),
        "{stderr}"
    );
}
