//! Running a step: a cold page cache first, then the child's wall time, CPU time and peak
//! RSS (wait4), then the flush of what it left dirty.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use super::tree;

#[derive(Debug, Clone, Copy)]
pub(in crate::commands::bench) struct Measure {
    /// Start to exit of the process.
    pub(in crate::commands::bench) wall: f64,
    /// Start to exit, plus flushing the output's file system afterwards (syncfs).
    pub(super) flushed: f64,
    pub(in crate::commands::bench) cpu: f64,
    pub(super) max_rss_mib: f64,
}

/// Starts a step cold and clean: dirty pages left by earlier steps are written back first
/// (so they are not charged to this step), then the page cache is dropped. As root the
/// whole cache goes (`/proc/sys/vm/drop_caches`): with a full cache, every page a step
/// writes would first have to be reclaimed from earlier steps, a cost that varies from run
/// to run and taxes whichever tool runs later. Without privileges only the step's input
/// files are dropped (`POSIX_FADV_DONTNEED`). Returns whether the whole cache was dropped.
pub(super) fn settle(inputs: &[&Path]) -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    if std::fs::write("/proc/sys/vm/drop_caches", b"3").is_ok() {
        return true;
    }
    for root in inputs {
        let mut files = Vec::new();
        if root.is_file() {
            files.push(root.to_path_buf());
        }
        tree::files_below(root, &mut files);
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
pub(in crate::commands::bench) fn measure(
    cmd: &mut Command,
    what: &str,
    output: &Path,
) -> anyhow::Result<Measure> {
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

/// The run with the median wall time.
pub(super) fn median(mut runs: Vec<Measure>) -> Measure {
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    runs[runs.len() / 2]
}

/// Runs a helper command (not measured); the error says what it printed.
pub(super) fn run_quiet(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
