//! `ferry repo …` behaviours seen from outside: the progress bar only on a terminal, JSON
//! progress lines, errors that change nothing in the repository, a corrupt pack named with
//! the file it breaks.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSWORD: &str = "cli behaviour password";

fn ferry_cmd(cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.args(args)
        .current_dir(cwd)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("FERRY_PASSWORD_FILE")
        .env_remove("FERRY_REPOSITORY");
    c
}

fn ferry(cwd: &Path, args: &[&str]) -> Output {
    ferry_cmd(cwd, args).output().unwrap()
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

/// Every file below `dir` with its size and modification time.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, (u64, std::time::SystemTime)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                walk(&e.path(), out);
            } else {
                out.insert(e.path(), (md.len(), md.modified().unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn small_tree(d: &Path) {
    std::fs::create_dir_all(d.join("src/sub")).unwrap();
    std::fs::write(d.join("src/a.txt"), b"hello").unwrap();
    let big: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("src/sub/victim.bin"), big).unwrap();
}

#[test]
fn progress_bar_only_on_a_terminal_and_json_lines_with_json() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_tree(d);
    ok(d, &["repo", "init", "--repo", "repo"]);
    ok(d, &["repo", "backup", "--repo", "repo", "src"]);

    // Not a terminal: no bar on stderr, only the summary on stdout.
    let out = ferry(
        d,
        &[
            "repo", "restore", "--repo", "repo", "latest", "--target", "plain",
        ],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("files") && !err.contains('['), "{err}");

    // --json: every stdout line is JSON, status lines carry bytes and files, then a summary.
    let out = ok(
        d,
        &[
            "repo", "restore", "--repo", "repo", "latest", "--target", "json", "--json",
        ],
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let status: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["message_type"] == "status")
        .collect();
    assert!(!status.is_empty());
    let last = status.last().unwrap();
    assert_eq!(last["bytes_done"], last["total_bytes"]);
    assert_eq!(last["files_done"], 2);
    assert_eq!(last["percent_done"], 1.0);
    assert_eq!(lines.last().unwrap()["message_type"], "summary");

    // A terminal (script(1) gives the command a pty): the bar with bytes and files is drawn.
    let ferry_bin = env!("CARGO_BIN_EXE_ferry");
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{ferry_bin} repo restore --repo repo latest --target tty"),
            "/dev/null",
        ])
        .current_dir(d)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("FERRY_REPOSITORY")
        .output()
        .unwrap();
    assert!(out.status.success());
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("restore ") && tty.contains(" files"), "{tty}");
    assert!(tty.contains("ETA"), "{tty}");
    assert!(std::fs::read(d.join("tty/src/a.txt")).unwrap() == b"hello");
}

#[test]
fn failed_commands_change_nothing_in_the_repository() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_tree(d);
    ok(d, &["repo", "init", "--repo", "repo"]);
    ok(d, &["repo", "backup", "--repo", "repo", "src"]);
    let before = listing(&d.join("repo"));

    let wrong = |args: &[&str]| {
        let out = ferry_cmd(d, args)
            .env("FERRY_PASSWORD", "not it")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("wrong password"), "{err}");
    };
    wrong(&["repo", "backup", "--repo", "repo", "src"]);
    wrong(&[
        "repo", "restore", "--repo", "repo", "latest", "--target", "w",
    ]);
    wrong(&["repo", "check", "--repo", "repo"]);

    let out = ferry(
        d,
        &[
            "repo", "restore", "--repo", "repo", "feedface", "--target", "u",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"feedface\" not found"));
    let out = ferry(
        d,
        &[
            "repo", "backup", "--repo", "repo", "--parent", "feedface", "src",
        ],
    );
    assert!(!out.status.success());
    let out = ferry(d, &["repo", "backup", "--repo", "repo", "no-such-dir"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dir"));

    assert_eq!(listing(&d.join("repo")), before, "the repository changed");
    for dir in ["w", "u"] {
        assert!(!d.join(dir).exists(), "{dir} was created");
    }

    // No repository: nothing is created at the location either.
    let out = ferry(d, &["repo", "backup", "--repo", "nothing-here", "src"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no repository at nothing-here"));
    assert!(!d.join("nothing-here").exists());
}

#[test]
fn corrupt_pack_fails_check_and_restore_naming_pack_and_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_tree(d);
    ok(d, &["repo", "init", "--repo", "repo"]);
    ok(d, &["repo", "backup", "--repo", "repo", "src"]);
    // The largest pack holds victim.bin's data; flip a byte of its first blob.
    let mut packs = Vec::new();
    for sub in std::fs::read_dir(d.join("repo/data")).unwrap() {
        for p in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            packs.push(p.unwrap().path());
        }
    }
    let pack = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();
    let mut perm = std::fs::metadata(pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(pack, perm).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pack)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 100).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], 100).unwrap();

    // Structure alone is fine; reading the data finds it.
    ok(d, &["repo", "check", "--repo", "repo"]);
    let out = ferry(d, &["repo", "check", "--repo", "repo", "--read-data"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&name) && err.contains("victim.bin"), "{err}");

    let out = ferry(
        d,
        &[
            "repo", "restore", "--repo", "repo", "latest", "--target", "out",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Each file not restored is listed with the pack at fault, then the error says so.
    let listed = err
        .lines()
        .find(|l| l.starts_with("not restored: ") && l.contains("victim.bin"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(listed.contains(&format!("in pack {name}")), "{err}");
    assert!(err.contains("error: restore incomplete"), "{err}");
    // The broken file is not left behind looking restored; the intact one is restored.
    assert!(!d.join("out/src/sub/victim.bin").exists());
    assert_eq!(std::fs::read(d.join("out/src/a.txt")).unwrap(), b"hello");
}

/// Runs `ferry` with the repository `repo` seen through a read-only bind mount at `ro`, in a
/// private mount namespace (so the mount vanishes with the process).
fn ferry_read_only(d: &Path, args: &[&str]) -> Output {
    std::fs::create_dir_all(d.join("ro")).unwrap();
    let ferry_bin = env!("CARGO_BIN_EXE_ferry");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "mount --bind repo ro && mount -o remount,bind,ro ro && exec {ferry_bin} {}",
        quoted.join(" ")
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .current_dir(d)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("FERRY_PASSWORD_FILE")
        .env_remove("FERRY_REPOSITORY")
        .output()
        .unwrap()
}

#[test]
fn read_only_repositories_are_read_with_no_lock() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_tree(d);
    ok(d, &["repo", "init", "--repo", "repo"]);
    ok(d, &["repo", "backup", "--repo", "repo", "src"]);

    // Without --no-lock the lock cannot be written: the error says what to do.
    let out = ferry_read_only(
        d,
        &[
            "repo", "restore", "--repo", "ro", "latest", "--target", "out",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("read-only") && err.contains("--no-lock"),
        "{err}"
    );
    assert!(!d.join("out/src/a.txt").exists());

    // With it, restore, check, snapshots, ls and cat work.
    for args in [
        &[
            "repo",
            "restore",
            "--repo",
            "ro",
            "latest",
            "--target",
            "out",
            "--no-lock",
        ][..],
        &["repo", "check", "--repo", "ro", "--read-data", "--no-lock"],
        &["repo", "snapshots", "--repo", "ro", "--no-lock"],
        &["repo", "ls", "--repo", "ro", "latest", "--no-lock"],
        &["repo", "cat", "--repo", "ro", "config", "--no-lock"],
    ] {
        let out = ferry_read_only(d, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(std::fs::read(d.join("out/src/a.txt")).unwrap(), b"hello");
}

#[test]
fn include_exclude_and_verify_on_the_command_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_tree(d);
    std::fs::write(d.join("src/sub/b.txt"), b"bee").unwrap();
    ok(d, &["repo", "init", "--repo", "repo"]);
    ok(d, &["repo", "backup", "--repo", "repo", "src"]);
    let out = ok(
        d,
        &[
            "repo",
            "restore",
            "--repo",
            "repo",
            "latest",
            "--target",
            "inc",
            "--include",
            "*.txt",
            "--exclude",
            "/src/a.txt",
            "--verify",
        ],
    );
    assert!(out.contains("verified 1 files"), "{out}");
    assert_eq!(std::fs::read(d.join("inc/src/sub/b.txt")).unwrap(), b"bee");
    assert!(!d.join("inc/src/a.txt").exists());
    assert!(!d.join("inc/src/sub/victim.bin").exists());
    let out = ferry(
        d,
        &[
            "repo",
            "restore",
            "--repo",
            "repo",
            "latest",
            "--target",
            "bad",
            "--include",
            "[x",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid restore pattern \"[x\""));
}

#[test]
fn hostile_snapshots_fail_restore_and_check_naming_the_tree() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("outside")).unwrap();
    ok(d, &["repo", "init", "--repo", "repo"]);
    let outside = d.join("outside");
    let tree = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let backend = ferry_repo::backend::open(d.join("repo").to_str().unwrap()).unwrap();
        let repo = ferry_repo::Repository::open(backend, PASSWORD)
            .await
            .unwrap();
        let mut w = ferry_repo::handmade::SnapshotWriter::new(&repo);
        let evil = w.data(b"evil");
        let sub = w.tree(vec![ferry_repo::handmade::file(b"pwned", vec![evil], 4)]);
        let root = w.tree(vec![
            ferry_repo::handmade::symlink(b"d", outside.as_os_str().as_encoded_bytes()),
            ferry_repo::handmade::dir(b"d", sub),
        ]);
        w.finish(root).await.unwrap();
        root
    });
    let out = ferry(
        d,
        &[
            "repo", "restore", "--repo", "repo", "latest", "--target", "out",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&tree.to_hex()) && err.contains("entries named \"d\""),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    let out = ferry(d, &["repo", "check", "--repo", "repo"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&tree.to_hex()) && err.contains("restore refuses"),
        "{err}"
    );
}
