//! `ferry bench repo` backs up and restores the same generated data with restic and with
//! ferry (each as a child process, so CPU time and peak RSS come from wait4's rusage).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};

#[derive(clap::Args, Debug)]
pub struct BenchRepoArgs {
    /// Amount of data to generate, e.g. 1GiB, 512MiB.
    #[arg(long, default_value = "1GiB")]
    pub size: String,
    /// Working directory (data, repositories, restores). Default: a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the working directory afterwards.
    #[arg(long)]
    pub keep: bool,
}

pub(crate) fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("--size {s:?}: expected e.g. 1GiB"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        other => bail!("--size {s:?}: unknown unit {other:?} (use KiB, MiB or GiB)"),
    };
    Ok(n * mult)
}

/// Fast deterministic pseudo-random bytes.
struct XorShift(u64);
impl XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
    fn next(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

const WORDS: &[&str] = &[
    "volume", "restore", "snapshot", "ferry", "node", "claim", "backup", "data", "pod", "bind",
    "cluster", "storage", "class", "topology", "mover", "velero", "chunk", "pack", "index",
];

/// Half random (incompressible), half text-like (compressible) content.
fn content(rng: &mut XorShift, len: usize, compressible: bool) -> Vec<u8> {
    let mut v = vec![0u8; len];
    if compressible {
        let mut pos = 0;
        while pos < len {
            let w = WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes();
            let n = w.len().min(len - pos);
            v[pos..pos + n].copy_from_slice(&w[..n]);
            pos += n;
            if pos < len {
                v[pos] = if rng.next().is_multiple_of(9) {
                    b'\n'
                } else {
                    b' '
                };
                pos += 1;
            }
        }
    } else {
        rng.fill(&mut v);
    }
    v
}

/// Generates `size` bytes: half in small files (4–64 KiB) spread over directories, half in a
/// few large files; every other file compressible.
fn generate(root: &Path, size: u64) -> anyhow::Result<(u64, u64)> {
    let mut rng = XorShift(0x5eed_f0e5_1234_5678);
    let mut files = 0u64;
    let mut total = 0u64;
    let small_budget = size / 2;
    let mut i = 0u64;
    while total < small_budget {
        let dir = root.join(format!("small/d{:03}", i / 500));
        if i.is_multiple_of(500) {
            std::fs::create_dir_all(&dir)?;
        }
        let len = (4096 + rng.next() % (60 * 1024)) as usize;
        std::fs::write(
            dir.join(format!("f{i:06}")),
            content(&mut rng, len, i.is_multiple_of(2)),
        )?;
        total += len as u64;
        files += 1;
        i += 1;
    }
    std::fs::create_dir_all(root.join("large"))?;
    let large_count = 4u64;
    let per = (size - total) / large_count;
    for j in 0..large_count {
        let mut f = std::io::BufWriter::new(std::fs::File::create(
            root.join(format!("large/big{j}.bin")),
        )?);
        let mut left = per;
        while left > 0 {
            let n = left.min(4 << 20) as usize;
            f.write_all(&content(&mut rng, n, j.is_multiple_of(2)))?;
            left -= n as u64;
        }
        f.flush()?;
        total += per;
        files += 1;
    }
    Ok((files, total))
}

#[derive(Debug, Clone, Copy)]
struct Measure {
    wall: f64,
    cpu: f64,
    max_rss_mib: f64,
}

/// Runs a child to completion and measures wall time, user+system CPU and peak RSS.
fn measure(cmd: &mut Command, what: &str) -> anyhow::Result<Measure> {
    let started = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = started.elapsed().as_secs_f64();
    if rc != pid {
        bail!(
            "wait4 for {what} failed: {}",
            std::io::Error::last_os_error()
        );
    }
    std::mem::forget(child);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{what} failed (status {status})");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measure {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_mib: ru.ru_maxrss as f64 / 1024.0,
    })
}

pub(super) fn bench_repo(a: BenchRepoArgs) -> anyhow::Result<ExitCode> {
    let size = parse_size(&a.size)?;
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = std::env::temp_dir().join(format!("ferry-bench-{}", std::process::id()));
            std::fs::create_dir_all(&tmp)?;
            tmp.clone()
        }
    };
    let password = "ferry-bench-password";
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    eprintln!("generating {} MiB in {} …", size >> 20, data.display());
    let (files, bytes) = generate(&data, size)?;
    let mib = bytes as f64 / 1048576.0;
    eprintln!("{files} files, {mib:.0} MiB");
    let ferry = std::env::current_exe()?;
    for d in [
        "restic-repo",
        "ferry-repo",
        "restic-out",
        "ferry-out",
        "restic-cache",
    ] {
        let _ = std::fs::remove_dir_all(dir.join(d));
    }
    let restic = |args: &[&str]| {
        let mut c = Command::new("restic");
        c.args(args)
            .current_dir(&dir)
            .env("RESTIC_PASSWORD", password)
            .env("RESTIC_CACHE_DIR", dir.join("restic-cache"));
        c
    };
    let ferry_cmd = |args: &[&str]| {
        let mut c = Command::new(&ferry);
        c.args(["repo"])
            .args(args)
            .current_dir(&dir)
            .env("FERRY_PASSWORD", password)
            .env_remove("FERRY_PASSWORD_FILE");
        c
    };
    measure(
        &mut restic(&["init", "-r", "restic-repo", "--repository-version", "2"]),
        "restic init",
    )?;
    measure(&mut ferry_cmd(&["init", "-r", "ferry-repo"]), "ferry init")?;
    eprintln!("backup: restic …");
    let rb = measure(
        &mut restic(&["-r", "restic-repo", "backup", "-q", "data"]),
        "restic backup",
    )?;
    eprintln!("backup: ferry …");
    let fb = measure(
        &mut ferry_cmd(&["backup", "-r", "ferry-repo", "data"]),
        "ferry backup",
    )?;
    eprintln!("restore: restic …");
    let rr = measure(
        &mut restic(&[
            "-r",
            "restic-repo",
            "restore",
            "latest",
            "--target",
            "restic-out",
        ]),
        "restic restore",
    )?;
    eprintln!("restore: ferry …");
    let fr = measure(
        &mut ferry_cmd(&[
            "restore",
            "-r",
            "ferry-repo",
            "latest",
            "--target",
            "ferry-out",
        ]),
        "ferry restore",
    )?;
    let repo_size = |d: &str| -> u64 {
        fn du(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            let md = e.metadata().unwrap();
                            if md.is_dir() { du(&e.path()) } else { md.len() }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        du(&dir.join(d))
    };
    let row = |name: &str, m: Measure| {
        println!(
            "{name:<16} {:>8.1} MiB/s {:>8.2} s wall {:>8.2} s CPU {:>8.1} MiB peak RSS",
            mib / m.wall,
            m.wall,
            m.cpu,
            m.max_rss_mib
        );
    };
    println!("data: {files} files, {mib:.0} MiB (half small files, half large; half compressible)");
    row("restic backup", rb);
    row("ferry backup", fb);
    row("restic restore", rr);
    row("ferry restore", fr);
    println!(
        "repository size: restic {:.0} MiB, ferry {:.0} MiB",
        repo_size("restic-repo") as f64 / 1048576.0,
        repo_size("ferry-repo") as f64 / 1048576.0
    );
    println!(
        "ferry/restic: backup throughput {:.2}x (target >= 1.5x), restore throughput {:.2}x (target >= 2x); CPU backup {:.2}x, restore {:.2}x; restore peak RSS {:.0} MiB (target <= 256)",
        rb.wall / fb.wall,
        rr.wall / fr.wall,
        fb.cpu / rb.cpu,
        fr.cpu / rr.cpu,
        fr.max_rss_mib
    );
    if !a.keep && a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ExitCode::SUCCESS)
}
