//! `ferry repo backup PATH…` stores what `restic backup PATH…` (0.14) stores for the same
//! command line in the same directory: the same snapshot paths and the same tree layout
//! (absolute paths whole, relative ones by their components, `.` as the root), restorable
//! by restic at the same place; and it picks its parent snapshot by restic's rule.

use std::path::Path;
use std::process::Command;

const PASSWORD: &str = "layout password";

fn ferry(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(cwd)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("FERRY_PASSWORD_FILE")
        .env_remove("FERRY_REPOSITORY")
        .env_remove("PWD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn restic(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("restic")
        .args(args)
        .current_dir(cwd)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("PWD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn latest(repo: &str, cwd: &Path) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&restic(
        cwd,
        &["-r", repo, "--no-cache", "snapshots", "--json", "latest"],
    ))
    .unwrap();
    v[0].clone()
}

/// `restic ls` of a snapshot without its header line.
fn ls(repo: &str, cwd: &Path, id: &str) -> Vec<String> {
    restic(cwd, &["-r", repo, "--no-cache", "ls", id])
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn same_command_line_same_paths_and_tree_as_restic() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let repo = root.join("repo");
    let repo = repo.to_str().unwrap();
    std::fs::create_dir_all(root.join("w/x/sub")).unwrap();
    std::fs::create_dir_all(root.join("w/data/vol/d")).unwrap();
    std::fs::write(root.join("w/x/sub/f"), b"f").unwrap();
    std::fs::write(root.join("w/x/top"), b"top").unwrap();
    std::fs::write(root.join("w/data/vol/d/g"), b"g").unwrap();
    ferry(&root, &["repo", "init", "--repo", repo]);
    let abs_vol = root.join("w/data/vol");
    let abs_vol = abs_vol.to_str().unwrap();
    // (working directory below the root, the targets)
    let cases: &[(&str, &[&str])] = &[
        ("w/x", &["."]),
        ("w/x/sub", &[".."]),
        ("w", &["x/sub"]),
        ("w/x", &["../data"]),
        ("w/x", &["./sub/../top", "sub"]),
        ("w", &["./data", "data/vol"]),
        ("w", &[abs_vol]),
    ];
    for (cwd, targets) in cases {
        let cwd = root.join(cwd);
        let mut fa = vec!["repo", "backup", "--repo", repo];
        fa.extend_from_slice(targets);
        ferry(&cwd, &fa);
        let ours = latest(repo, &cwd);
        let mut ra = vec!["-r", repo, "--no-cache", "backup", "-q"];
        ra.extend_from_slice(targets);
        restic(&cwd, &ra);
        let theirs = latest(repo, &cwd);
        assert_ne!(ours["id"], theirs["id"]);
        assert_eq!(
            ours["paths"], theirs["paths"],
            "paths for {targets:?} in {cwd:?}"
        );
        assert_eq!(
            ls(repo, &cwd, ours["id"].as_str().unwrap()),
            ls(repo, &cwd, theirs["id"].as_str().unwrap()),
            "tree for {targets:?} in {cwd:?}"
        );
    }
    // The absolute backup: restic restores it at its path below the target, the same as
    // restic's own (what `restic restore --target /` would put back in place).
    let id = latest(repo, &root)["id"].as_str().unwrap().to_string();
    restic(
        &root,
        &[
            "-r",
            repo,
            "--no-cache",
            "restore",
            &id,
            "--target",
            "by-restic",
        ],
    );
    let restored = root.join("by-restic").join(abs_vol.trim_start_matches('/'));
    assert_eq!(std::fs::read(restored.join("d/g")).unwrap(), b"g");
    ferry(
        &root,
        &[
            "repo", "restore", "--repo", repo, &id, "--target", "by-ferry",
        ],
    );
    let restored = root.join("by-ferry").join(abs_vol.trim_start_matches('/'));
    assert_eq!(std::fs::read(restored.join("d/g")).unwrap(), b"g");
}

#[test]
fn parent_snapshots_are_picked_by_restics_rule() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let repo = root.join("repo");
    let repo = repo.to_str().unwrap();
    for d in ["a", "b"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
        std::fs::write(root.join(d).join("f"), d).unwrap();
    }
    let (a, b) = (root.join("a"), root.join("b"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    ferry(&root, &["repo", "init", "--repo", repo]);
    // restic: a snapshot of a and b together.
    restic(&root, &["-r", repo, "--no-cache", "backup", "-q", a, b]);
    let both = latest(repo, &root)["id"].clone();
    // ferry backing up a alone takes it as parent (its paths include a), as restic would.
    ferry(&root, &["repo", "backup", "--repo", repo, a]);
    let ours = latest(repo, &root);
    assert_eq!(ours["parent"], both, "{ours}");
    // restic backing up a takes ferry's snapshot (the latest with a) as its parent.
    restic(&root, &["-r", repo, "--no-cache", "backup", "-q", a]);
    let theirs = latest(repo, &root);
    assert_eq!(theirs["parent"], ours["id"], "{theirs}");
    // Another host's snapshots are not parents; b alone has none of ferry's making.
    ferry(
        &root,
        &["repo", "backup", "--repo", repo, "--host", "elsewhere", a],
    );
    assert!(latest(repo, &root)["parent"].is_null());
    ferry(&root, &["repo", "backup", "--repo", repo, b]);
    assert_eq!(latest(repo, &root)["parent"], both);
}
