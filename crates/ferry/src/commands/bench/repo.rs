//! `ferry bench repo` backs up and restores the same generated data with restic and with
//! ferry (each as a child process, so CPU time and peak RSS come from wait4's rusage).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::commands::demo::size;

#[derive(clap::Args, Debug)]
pub struct BenchRepoArgs {
    /// Amount of data to generate, e.g. 1GiB, 512MiB.
    #[arg(long, default_value = "1GiB", value_parser = size::parse_size)]
    pub size: u64,
    /// Working directory (data, repositories, restores). Default: a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Runs of every step; the figures are each step's median run (other work on the
    /// machine makes single runs noisy).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Keep the working directory afterwards.
    #[arg(long)]
    pub keep: bool,
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
pub(super) struct Measure {
    /// Start to exit of the process.
    pub(super) wall: f64,
    /// Start to exit, plus flushing the output's file system afterwards (syncfs).
    flushed: f64,
    pub(super) cpu: f64,
    max_rss_mib: f64,
}

/// Every regular file below `root` (not following symlinks).
fn files_below(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            files_below(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// Starts a step cold and clean: dirty pages left by earlier steps are written back first
/// (so they are not charged to this step), then the page cache is dropped. As root the
/// whole cache goes (`/proc/sys/vm/drop_caches`): with a full cache, every page a step
/// writes would first have to be reclaimed from earlier steps, a cost that varies from run
/// to run and taxes whichever tool runs later. Without privileges only the step's input
/// files are dropped (`POSIX_FADV_DONTNEED`). Returns whether the whole cache was dropped.
fn settle(inputs: &[PathBuf]) -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    if std::fs::write("/proc/sys/vm/drop_caches", b"3").is_ok() {
        return true;
    }
    for root in inputs {
        let mut files = Vec::new();
        files_below(root, &mut files);
        for f in files {
            if let Ok(file) = std::fs::File::open(&f) {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid open descriptor; advice only.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }
    false
}

/// Writes back everything dirty on the file system holding `dir`; returns the seconds taken.
fn flush_fs(dir: &Path) -> anyhow::Result<f64> {
    use std::os::fd::AsRawFd;
    let started = Instant::now();
    let d = std::fs::File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    // SAFETY: a valid open descriptor.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        bail!(
            "syncfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Runs a child to completion and measures wall time, user+system CPU and peak RSS, then
/// the time to flush what it left dirty on `output`'s file system.
pub(super) fn measure(cmd: &mut Command, what: &str, output: &Path) -> anyhow::Result<Measure> {
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
    let flush = flush_fs(output)?;
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measure {
        wall,
        flushed: wall + flush,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_mib: ru.ru_maxrss as f64 / 1024.0,
    })
}

/// Compares every file below `want` with the same path below `got`; returns the file count.
fn verify_restore(want: &Path, got: &Path, who: &str) -> anyhow::Result<u64> {
    let mut files = Vec::new();
    files_below(want, &mut files);
    for f in &files {
        let rel = f.strip_prefix(want).expect("below root");
        let restored = got.join(rel);
        let a = std::fs::read(f)?;
        let b = std::fs::read(&restored)
            .with_context(|| format!("{who} restore lacks {}", restored.display()))?;
        if a != b {
            bail!(
                "{who} restored {} with different content",
                restored.display()
            );
        }
    }
    Ok(files.len() as u64)
}

/// The run with the median wall time.
fn median(mut runs: Vec<Measure>) -> Measure {
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    runs[runs.len() / 2]
}

fn du(p: &Path) -> u64 {
    let mut files = Vec::new();
    files_below(p, &mut files);
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

pub(super) fn bench_repo(a: BenchRepoArgs) -> anyhow::Result<ExitCode> {
    let size = a.size;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("ferry-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    let password = "ferry-bench-password";
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    eprintln!("generating {} MiB in {} …", size >> 20, data.display());
    let (files, bytes) = generate(&data, size)?;
    let mib = bytes as f64 / 1048576.0;
    eprintln!("{files} files, {mib:.0} MiB");
    let ferry = std::env::current_exe()?;
    let restic = |args: &[&str], cache: &str| {
        let mut c = Command::new("restic");
        c.args(args)
            .env("RESTIC_CACHE_DIR", dir.join(cache))
            .current_dir(&dir)
            .env("RESTIC_PASSWORD", password)
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD_FILE");
        c
    };
    let ferry_cmd = |args: &[&str]| {
        let mut c = Command::new(&ferry);
        c.args(["repo"])
            .args(args)
            .current_dir(&dir)
            .env("FERRY_PASSWORD", password)
            .env_remove("FERRY_PASSWORD_FILE")
            .env_remove("FERRY_REPOSITORY");
        c
    };
    let path = |d: &str| dir.join(d);
    let runs = a.runs.max(1);
    let run_dirs = |run: usize| {
        [
            "restic-repo",
            "ferry-repo",
            "restic-out",
            "ferry-out",
            "ferry-rr-out",
            "restic-cache",
        ]
        .map(|d| dir.join(format!("{d}-{run}")))
    };
    // Leftovers of an earlier invocation in the same --dir.
    for run in 1..=runs {
        for d in run_dirs(run) {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let (mut rbs, mut fbs, mut rrs, mut frs) = (vec![], vec![], vec![], vec![]);
    // ferry restoring the repository restic wrote (restic's calibrated key, restic's packs).
    let mut frrs = vec![];
    let mut whole_cache = true;
    for run in 1..=runs {
        // Every run gets new repositories and restore targets. Nothing is deleted between
        // steps: ext4 is slow to create files right after deleting many (it checks each
        // recently freed inode), which would tax whichever tool runs next.
        let rrepo = format!("restic-repo-{run}");
        let frepo = format!("ferry-repo-{run}");
        let rout = format!("restic-out-{run}");
        let fout = format!("ferry-out-{run}");
        let frout = format!("ferry-rr-out-{run}");
        let cache = format!("restic-cache-{run}");
        measure(
            &mut restic(&["init", "-r", &rrepo, "--repository-version", "2"], &cache),
            "restic init",
            &dir,
        )?;
        measure(&mut ferry_cmd(&["init", "-r", &frepo]), "ferry init", &dir)?;
        eprintln!("run {run}/{runs} backup: restic …");
        whole_cache &= settle(std::slice::from_ref(&data));
        rbs.push(measure(
            &mut restic(
                &[
                    "-r",
                    &rrepo,
                    "backup",
                    "-q",
                    "--compression",
                    "auto",
                    "data",
                ],
                &cache,
            ),
            "restic backup",
            &dir,
        )?);
        eprintln!("run {run}/{runs} backup: ferry …");
        whole_cache &= settle(std::slice::from_ref(&data));
        fbs.push(measure(
            &mut ferry_cmd(&["backup", "-r", &frepo, "data"]),
            "ferry backup",
            &dir,
        )?);
        // A later restore writes into a fuller file system (the earlier ones' output stays:
        // nothing is deleted between steps); rotate who goes first.
        for turn in 0..3 {
            let who = (turn + run - 1) % 3;
            if who == 2 {
                eprintln!("run {run}/{runs} restore: ferry of restic's repository …");
                whole_cache &= settle(&[path(&rrepo)]);
                let m = measure(
                    &mut ferry_cmd(&["restore", "-r", &rrepo, "latest", "--target", &frout]),
                    "ferry restore (restic's repository)",
                    &dir,
                )?;
                eprintln!(
                    "  ferry restore of restic's repository {:.2} s, CPU {:.2} s",
                    m.wall, m.cpu
                );
                frrs.push(m);
            } else if who == 0 {
                eprintln!("run {run}/{runs} restore: restic …");
                whole_cache &= settle(&[path(&rrepo), path(&cache)]);
                let m = measure(
                    &mut restic(
                        &["-r", &rrepo, "restore", "latest", "--target", &rout],
                        &cache,
                    ),
                    "restic restore",
                    &dir,
                )?;
                eprintln!("  restic restore {:.2} s, CPU {:.2} s", m.wall, m.cpu);
                rrs.push(m);
            } else {
                eprintln!("run {run}/{runs} restore: ferry …");
                whole_cache &= settle(&[path(&frepo)]);
                let m = measure(
                    &mut ferry_cmd(&["restore", "-r", &frepo, "latest", "--target", &fout]),
                    "ferry restore",
                    &dir,
                )?;
                eprintln!("  ferry restore {:.2} s, CPU {:.2} s", m.wall, m.cpu);
                frs.push(m);
            }
        }
    }
    let (rb, fb, rr, fr) = (median(rbs), median(fbs), median(rrs), median(frs));
    let frr = median(frrs);
    let (rout, fout) = (format!("restic-out-{runs}"), format!("ferry-out-{runs}"));
    let frout = format!("ferry-rr-out-{runs}");
    eprintln!("verifying both restores against the source …");
    // restic keeps a relative source path as given ("data"); older versions kept it absolute.
    let restic_root = [
        path(&rout).join("data"),
        path(&rout).join(data.strip_prefix("/").unwrap_or(&data)),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .unwrap_or_else(|| path(&rout).join("data"));
    verify_restore(&data, &restic_root, "restic")?;
    let verified = verify_restore(&data, &path(&fout).join("data"), "ferry")?;
    // restic stored the relative path "data"; ferry restores it where restic would.
    verify_restore(
        &data,
        &path(&frout).join("data"),
        "ferry (restic's repository)",
    )?;

    let row = |name: &str, m: Measure| {
        println!(
            "{name:<36} {:>7.1} MiB/s {:>7.2} s {:>7.2} s {:>7.1} MiB/s {:>7.2} s {:>8.1} MiB",
            mib / m.wall,
            m.wall,
            m.flushed,
            mib / m.flushed,
            m.cpu,
            m.max_rss_mib
        );
    };
    println!(
        "data: {files} files, {mib:.0} MiB (half in 4-64 KiB files, half in 4 large files; half compressible); median of {runs} run(s)"
    );
    println!(
        "{:<36} {:>13} {:>9} {:>9} {:>13} {:>9} {:>12}",
        "", "throughput", "wall", "+flush", "thr.+flush", "CPU", "peak RSS"
    );
    row("restic backup", rb);
    row("ferry backup", fb);
    row("restic restore", rr);
    row("ferry restore", fr);
    row("ferry restore (restic's repository)", frr);
    println!(
        "repository size: restic {:.0} MiB, ferry {:.0} MiB; both restores verified identical to the source ({verified} files)",
        du(&path(&format!("restic-repo-{runs}"))) as f64 / 1048576.0,
        du(&path(&format!("ferry-repo-{runs}"))) as f64 / 1048576.0,
    );
    println!(
        "measured: wall = process start to exit (restored files are not fsynced by either tool; \
         both fsync repository files); +flush adds syncfs of the output file system after exit; the restores alternate which tool goes first; \
         CPU = user+system of the process; each step starts after sync with {}; \
         restic {} with --compression auto, ferry zstd level 3",
        if whole_cache {
            "the whole page cache dropped"
        } else {
            "its input dropped from the page cache (POSIX_FADV_DONTNEED; not root, so other cached files stay)"
        },
        restic_version()
    );
    println!(
        "ferry/restic: backup throughput {:.2}x (+flush {:.2}x, target >= 1.5x), restore throughput {:.2}x (+flush {:.2}x, target >= 2x); CPU backup {:.2}x, restore {:.2}x; ferry restore peak RSS {:.0} MiB (target <= 256)",
        rb.wall / fb.wall,
        rb.flushed / fb.flushed,
        rr.wall / fr.wall,
        rr.flushed / fr.flushed,
        fb.cpu / rb.cpu,
        fr.cpu / rr.cpu,
        fr.max_rss_mib
    );
    println!(
        "restic's repository (restic's packs and calibrated key), restored by ferry / by restic: throughput {:.2}x (+flush {:.2}x), CPU {:.2}x",
        rr.wall / frr.wall,
        rr.flushed / frr.flushed,
        frr.cpu / rr.cpu,
    );
    if !a.keep {
        if a.dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            for run in 1..=runs {
                for d in run_dirs(run) {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn restic_version() -> String {
    Command::new("restic")
        .arg("version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}
