//! Progress of long `ferry repo` operations (backup, restore, prune, check --read-data):
//! a bar on a terminal when the totals are known, a spinner with counts and rate when they
//! are not (never a made-up total or ETA); JSON status lines with `--json`; otherwise a
//! plain line on stderr every `FERRY_PROGRESS_INTERVAL` seconds (default 10).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_repo::restore::{ProgressFn, RestoreProgress};

/// Whether an operation knows how much it will do before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Totals {
    /// Reported totals are the whole job (restore, prune, check --read-data).
    Known,
    /// Totals are not known (backup reads as it goes): counts and rate only.
    Unknown,
}

/// A progress callback for the engines, and the bar it draws (if any).
pub struct Progress {
    pub report: ProgressFn,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Removes the bar (the summary follows on stdout).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

fn plain_interval() -> Duration {
    std::env::var("FERRY_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_INTERVAL)
}

pub use ferry_text::human_bytes;

/// One plain progress line.
pub fn plain_line(
    what: &str,
    items: &str,
    p: &RestoreProgress,
    totals: Totals,
    elapsed: Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = human_bytes((p.bytes_done as f64 / secs) as u64);
    match totals {
        Totals::Known if p.total_bytes > 0 => format!(
            "{what}: {} of {} ({:.0}%), {} of {} {items}, {rate}/s",
            human_bytes(p.bytes_done),
            human_bytes(p.total_bytes),
            100.0 * p.bytes_done as f64 / p.total_bytes as f64,
            p.files_done,
            p.total_files,
        ),
        Totals::Known => format!("{what}: {} of {} {items}", p.files_done, p.total_files),
        Totals::Unknown => format!(
            "{what}: {}, {} {items}, {rate}/s",
            human_bytes(p.bytes_done),
            p.files_done
        ),
    }
}

/// The progress output for `what` ("backup", "restore", …), counting `items`.
pub fn reporter(json: bool, what: &'static str, items: &'static str, totals: Totals) -> Progress {
    reporter_with(json, what, items, totals, None)
}

/// [`reporter`] with totals known before the operation reports any (a restore walks its
/// snapshot first on a terminal): the bar shows them from the start.
pub fn reporter_with(
    json: bool,
    what: &'static str,
    items: &'static str,
    totals: Totals,
    upfront: Option<(u64, u64)>,
) -> Progress {
    if json {
        let f = move |p: &RestoreProgress| {
            let mut v = serde_json::json!({
                "message_type": "status",
                "action": what,
                "bytes_done": p.bytes_done,
                "files_done": p.files_done,
            });
            if totals == Totals::Known {
                let pct = if p.total_bytes > 0 {
                    p.bytes_done as f64 / p.total_bytes as f64
                } else if p.total_files > 0 {
                    p.files_done as f64 / p.total_files as f64
                } else {
                    1.0
                };
                v["percent_done"] = pct.into();
                v["total_bytes"] = p.total_bytes.into();
                v["total_files"] = p.total_files.into();
            }
            println!("{v}");
        };
        return Progress {
            report: Arc::new(f),
            bar: None,
        };
    }
    if std::io::stderr().is_terminal() {
        let bar = match totals {
            Totals::Known => {
                let bar = indicatif::ProgressBar::new(upfront.map_or(0, |u| u.0));
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar
            }
            Totals::Unknown => {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {msg}, {bytes} read, {binary_bytes_per_sec}, {elapsed}",
                    )
                    .expect("valid template"),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
        };
        if let Some((bytes, files)) = upfront {
            bar.set_message(format!("{what} 0/{files} {items}"));
            bar.set_length(bytes);
        }
        let b = bar.clone();
        let f = move |p: &RestoreProgress| {
            match totals {
                Totals::Known => {
                    let (total_bytes, total_files) = match upfront {
                        Some((b, f)) => (b.max(p.total_bytes), f.max(p.total_files)),
                        None => (p.total_bytes, p.total_files),
                    };
                    b.set_length(total_bytes);
                    b.set_message(format!("{what} {}/{total_files} {items}", p.files_done));
                }
                Totals::Unknown => b.set_message(format!("{what} {} {items}", p.files_done)),
            }
            b.set_position(p.bytes_done);
        };
        return Progress {
            report: Arc::new(f),
            bar: Some(bar),
        };
    }
    let interval = plain_interval();
    let started = Instant::now();
    let last = Mutex::new(Instant::now());
    let f = move |p: &RestoreProgress| {
        let mut last = last.lock().unwrap();
        if last.elapsed() < interval {
            return;
        }
        *last = Instant::now();
        eprintln!("{}", plain_line(what, items, p, totals, started.elapsed()));
    };
    Progress {
        report: Arc::new(f),
        bar: None,
    }
}

/// What restoring `snapshot` (below `subpath`) will write: bytes and files. Walks the trees
/// first, as restic does, so the bar has its totals from the start even when the restore
/// plans its work in several batches.
pub async fn restore_totals(
    repo: &ferry_repo::Repository,
    snapshot: &ferry_repo::Snapshot,
    subpath: Option<&str>,
) -> anyhow::Result<(u64, u64)> {
    let root = match subpath.filter(|s| !s.trim_matches('/').is_empty()) {
        None => snapshot.tree,
        Some(sp) => match repo.find_node(snapshot, sp).await? {
            Some(n) if n.kind == "file" => return Ok((n.size, 1)),
            Some(n) => match n.subtree {
                Some(t) => t,
                None => return Ok((0, 0)),
            },
            None => snapshot.tree,
        },
    };
    let size = repo.restore_size(root).await?;
    Ok((size.bytes, size.files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_never_invent_a_total() {
        let p = RestoreProgress {
            total_bytes: 0,
            bytes_done: 3 << 20,
            total_files: 0,
            files_done: 7,
        };
        let line = plain_line(
            "backup",
            "files",
            &p,
            Totals::Unknown,
            Duration::from_secs(1),
        );
        assert_eq!(line, "backup: 3.0 MiB, 7 files, 3.0 MiB/s");
        let p = RestoreProgress {
            total_bytes: 4 << 20,
            bytes_done: 1 << 20,
            total_files: 10,
            files_done: 2,
        };
        let line = plain_line(
            "restore",
            "files",
            &p,
            Totals::Known,
            Duration::from_secs(2),
        );
        assert_eq!(
            line,
            "restore: 1.0 MiB of 4.0 MiB (25%), 2 of 10 files, 512.0 KiB/s"
        );
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
