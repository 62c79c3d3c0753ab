//! A `ferry repo restore` killed with SIGKILL mid-way never leaves a file of full size with
//! wrong content under its real name: a file of several blobs is written under a temporary
//! name (`.ferry-restore-…`) and renamed once complete; a file of one blob grows only as its
//! bytes are written.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "kill test password";

fn ferry(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.current_dir(dir)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("FERRY_PASSWORD_FILE")
        .env_remove("FERRY_REPOSITORY");
    c
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every file below `dir` (recursively) with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push((e.path(), md.len()));
        }
    }
    out
}

#[test]
fn kill_9_mid_restore_leaves_no_full_size_file_with_wrong_content() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // 64 files of 3 MiB (several blobs each) and 200 small ones: 192 MiB, incompressible.
    let mut source = Vec::new();
    for i in 0..64u64 {
        source.push((format!("big/f{i:02}.bin"), random_bytes(i, 3 << 20)));
    }
    for i in 0..200u64 {
        source.push((
            format!("small/s{i:03}"),
            random_bytes(1000 + i, 1000 + i as usize * 97),
        ));
    }
    for (name, data) in &source {
        let p = d.join("src").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    for args in [
        &["repo", "init", "--repo", "repo"][..],
        &["repo", "backup", "--repo", "repo", "src"],
    ] {
        let out = ferry(d).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // One worker and one fetch at a time, so the restore takes long enough to be caught.
    let mut child = ferry(d)
        .args([
            "repo",
            "restore",
            "--repo",
            "repo",
            "latest",
            "--target",
            "out",
            "--workers",
            "1",
            "--concurrency",
            "1",
        ])
        .spawn()
        .unwrap();
    let total: u64 = source.iter().map(|(_, b)| b.len() as u64).sum();
    let started = Instant::now();
    loop {
        let written: u64 = files(&d.join("out")).iter().map(|(_, n)| n).sum();
        if written >= total / 4 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore finished before the kill"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the restore wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

    let left = files(&d.join("out"));
    let mut complete = 0;
    for (name, data) in &source {
        let p = d.join("out/src").join(name);
        let Ok(md) = std::fs::metadata(&p) else {
            continue;
        };
        if md.len() == data.len() as u64 {
            assert!(
                std::fs::read(&p).unwrap() == *data,
                "{name} has full size, wrong content"
            );
            complete += 1;
        } else {
            assert!(md.len() < data.len() as u64, "{name} is too long");
        }
    }
    // Mid-way indeed: some files are done, some are not.
    assert!(
        complete > 0 && complete < source.len(),
        "{complete} of {}",
        source.len()
    );
    // Whatever else is there is a temporary file, recognisable by its name.
    for (p, _) in &left {
        let rel = p.strip_prefix(d.join("out/src")).unwrap();
        let known = source.iter().any(|(n, _)| Path::new(n) == rel);
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(
            known || name.starts_with(".ferry-restore-"),
            "{}",
            p.display()
        );
    }
}
