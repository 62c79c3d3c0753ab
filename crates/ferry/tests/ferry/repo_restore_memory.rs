//! Restore memory stays bounded whatever the snapshot's size: a snapshot larger than the
//! bound (256 MiB peak RSS) is restored by a `ferry repo restore` process whose peak RSS,
//! read from wait4's rusage, stays below it. restic writes the snapshot (it is fast in a
//! debug test build, and the repository is then restic's own).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const PASSWORD: &str = "memory bound password";
/// Larger than the bound, so holding the snapshot (or most of it) in memory would fail.
const VOLUME_MIB: usize = 384;
const BOUND_MIB: f64 = 256.0;

/// Incompressible, reproducible bytes: chunk `i` of the volume.
fn chunk(i: usize, buf: &mut [u8]) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
    for word in buf.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
}

/// Runs `cmd` to completion; returns its peak RSS in MiB.
fn peak_rss_mib(cmd: &mut Command) -> f64 {
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    std::mem::forget(child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status})"
    );
    ru.ru_maxrss as f64 / 1024.0
}

fn restic(dir: &Path) -> Command {
    let mut c = Command::new("restic");
    c.current_dir(dir)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", dir.join("restic-cache"))
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE");
    c
}

#[test]
fn restoring_a_snapshot_larger_than_the_bound_keeps_peak_rss_below_256_mib() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let init = restic(dir)
        .args(["init", "-r", "repo", "--repository-version", "2"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let mut backup = restic(dir)
        .args(["-r", "repo", "backup", "-q", "--stdin"])
        .args(["--stdin-filename", "volume.img"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = backup.stdin.take().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..VOLUME_MIB {
            chunk(i, &mut buf);
            stdin.write_all(&buf).unwrap();
        }
    }
    assert!(backup.wait().unwrap().success());

    let out = dir.join("restored.img");
    std::fs::File::create(&out).unwrap();
    let peak = peak_rss_mib(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .current_dir(dir)
            .args(["repo", "restore", "-r", "repo", "latest", "--target-device"])
            .arg(&out)
            .env("FERRY_PASSWORD", PASSWORD)
            .env_remove("FERRY_PASSWORD_FILE")
            .env_remove("FERRY_REPOSITORY")
            .stdout(Stdio::null()),
    );
    eprintln!("peak RSS restoring {VOLUME_MIB} MiB: {peak:.0} MiB");
    assert!(
        peak < BOUND_MIB,
        "restoring {VOLUME_MIB} MiB peaked at {peak:.0} MiB RSS (bound {BOUND_MIB} MiB)"
    );

    // And the restore is right, byte for byte.
    let mut f = std::fs::File::open(&out).unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        (VOLUME_MIB as u64) << 20,
        "restored size"
    );
    let (mut want, mut got) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for i in 0..VOLUME_MIB {
        chunk(i, &mut want);
        f.read_exact(&mut got).unwrap();
        assert!(want == got, "restored volume differs in MiB {i}");
    }
}
