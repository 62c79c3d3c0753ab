//! What `ferry backup` and `ferry restore` show of a DataUpload or DataDownload: one view of
//! either (phase, node, times, progress), the cells of `get` and the lines of `describe` built
//! from it, and `create --wait`'s wait (progress, a timeout, a word when no controller takes
//! the work).

use std::fmt::Debug;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ferry_controller::crds::{DataDownload, DataUpload};
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

use super::cluster_args::age;
use super::repo_progress::human_bytes;

/// The parts of a DataUpload's or DataDownload's status that people read.
#[derive(Debug, Clone, PartialEq)]
pub struct Movement {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub phase: String,
    /// "New" (no phase yet) and not canceled: no controller has taken it.
    pub waiting_for_controller: bool,
    pub terminal: bool,
    pub completed: bool,
    pub node: Option<String>,
    pub message: String,
    pub created: Option<Timestamp>,
    pub accepted: Option<Timestamp>,
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    pub bytes_done: u64,
    pub total_bytes: u64,
}

fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn bytes(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

impl From<&DataDownload> for Movement {
    fn from(dd: &DataDownload) -> Self {
        let s = dd.status.clone().unwrap_or_default();
        let p = s.progress.clone().unwrap_or_default();
        let phase = dd.phase();
        Self {
            kind: "DataDownload",
            namespace: dd.metadata.namespace.clone().unwrap_or_default(),
            name: dd.metadata.name.clone().unwrap_or_default(),
            phase: phase.as_str().to_string(),
            waiting_for_controller: s.phase.is_none() || phase.as_str() == "New",
            terminal: phase.is_terminal(),
            completed: phase.as_str() == "Completed",
            node: s.node.filter(|n| !n.is_empty()),
            message: s.message.unwrap_or_default(),
            created: ts(&dd.metadata.creation_timestamp),
            accepted: ts(&s.accepted_timestamp),
            started: ts(&s.start_timestamp),
            ended: ts(&s.completion_timestamp),
            bytes_done: bytes(p.bytes_done),
            total_bytes: bytes(p.total_bytes),
        }
    }
}

impl From<&DataUpload> for Movement {
    fn from(du: &DataUpload) -> Self {
        let s = du.status.clone().unwrap_or_default();
        let p = s.progress.clone().unwrap_or_default();
        let phase = du.phase();
        Self {
            kind: "DataUpload",
            namespace: du.metadata.namespace.clone().unwrap_or_default(),
            name: du.metadata.name.clone().unwrap_or_default(),
            phase: phase.as_str().to_string(),
            waiting_for_controller: s.phase.is_none() || phase.as_str() == "New",
            terminal: phase.is_terminal(),
            completed: phase.as_str() == "Completed",
            node: s.node.filter(|n| !n.is_empty()),
            message: s.message.unwrap_or_default(),
            created: ts(&du.metadata.creation_timestamp),
            accepted: ts(&s.accepted_timestamp),
            started: ts(&s.start_timestamp),
            ended: ts(&s.completion_timestamp),
            bytes_done: bytes(p.bytes_done),
            total_bytes: bytes(p.total_bytes),
        }
    }
}

impl Movement {
    /// `get`'s PROGRESS cell: `45% 12.3 MiB/27.0 MiB`, `-` before the data mover reports.
    pub fn progress_cell(&self) -> String {
        match (self.bytes_done, self.total_bytes) {
            (0, 0) => "-".into(),
            (done, total) => format!(
                "{} {}/{}",
                percent(done, total),
                human_bytes(done),
                human_bytes(total)
            ),
        }
    }

    /// `describe`'s progress: `45% (12.3 MiB of 27.0 MiB)`.
    pub fn progress_line(&self) -> String {
        match (self.bytes_done, self.total_bytes) {
            (0, 0) => "no progress reported yet".into(),
            (done, total) => format!(
                "{} ({} of {})",
                percent(done, total),
                human_bytes(done),
                human_bytes(total)
            ),
        }
    }

    /// From start to end (or to now while it runs); None before it started.
    pub fn duration(&self) -> Option<Duration> {
        let start = self.started?;
        let end = self.ended.unwrap_or_else(Timestamp::now);
        let secs = (end.as_millisecond() - start.as_millisecond()).max(0) as u64;
        Some(Duration::from_millis(secs))
    }

    /// Bytes moved per second over the duration; None when there is nothing to divide.
    pub fn rate(&self) -> Option<String> {
        let d = self.duration()?.as_secs_f64();
        (d >= 1.0 && self.bytes_done > 0)
            .then(|| format!("{}/s", human_bytes((self.bytes_done as f64 / d) as u64)))
    }

    /// `get`'s AGE cell.
    pub fn age_cell(&self) -> String {
        self.created.map(age).unwrap_or_else(|| "-".into())
    }

    /// `describe`'s timing lines, each label padded to `width`.
    pub fn describe_times(&self, width: usize) -> Vec<String> {
        let time = |t: Option<Timestamp>| {
            t.map(|t| format!("{} ({} ago)", t.strftime("%Y-%m-%d %H:%M:%S UTC"), age(t)))
                .unwrap_or_else(|| "<n/a>".into())
        };
        let mut lines = vec![
            format!("{:<width$}{}", "Created:", time(self.created)),
            format!("{:<width$}{}", "Accepted:", time(self.accepted)),
            format!("{:<width$}{}", "Started:", time(self.started)),
            format!("{:<width$}{}", "Completed:", time(self.ended)),
        ];
        if let Some(d) = self.duration() {
            let running = if self.ended.is_none() {
                " (running)"
            } else {
                ""
            };
            lines.push(format!("{:<width$}{}{running}", "Duration:", duration(d)));
        }
        lines.push(format!("{:<width$}{}", "Progress:", self.progress_line()));
        if let Some(rate) = self.rate() {
            lines.push(format!("{:<width$}{rate}", "Rate:"));
        }
        lines
    }
}

/// `done` of `total` as a whole percentage (100% only when done).
pub fn percent(done: u64, total: u64) -> String {
    if total == 0 {
        return "0%".into();
    }
    let p = (done.min(total) as u128 * 100 / total as u128) as u64;
    format!("{p}%")
}

/// A duration as Velero prints one: `1h2m3s`, `4m5s`, `6.5s`. Whole seconds (what two
/// Kubernetes timestamps, to the second, give) print without a false tenth, and zero as
/// `<1s`: both ends fell within one second.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 if d.subsec_millis() == 0 => "<1s".into(),
        0..60 if d.subsec_millis() == 0 => format!("{secs}s"),
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m{}s", secs / 3600, secs % 3600 / 60, secs % 60),
    }
}

/// `create`'s waiting flags, the same for backups and restores.
#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// Wait until it ends, showing progress; exit 0 only if it Completed.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long, as a Go duration (`30m`, `1h30m`); the work goes
    /// on, and the exit code is 1.
    #[arg(long, requires = "wait", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    ferry_controller::crds::parse_go_duration(text).map_err(|e| e.to_string())
}

impl WaitArgs {
    /// The wait for a movement in ferry's namespace `namespace`.
    pub fn options(&self, namespace: &str) -> WaitOptions {
        WaitOptions {
            timeout: self.timeout,
            // A short wait hears why it is not moving before it gives up.
            accept_warning_after: self
                .timeout
                .map_or(ACCEPT_WARNING_AFTER, |t| (t / 2).min(ACCEPT_WARNING_AFTER)),
            controller_hint: format!(
                "is ferry's controller running? (`kubectl -n {namespace} get deployment \
                 ferry-controller`; its data mover name must match --data-mover-name)"
            ),
        }
    }
}

/// A controller takes new work within a pass (seconds); half a minute without means none runs.
const ACCEPT_WARNING_AFTER: Duration = Duration::from_secs(30);

/// How `create --wait` waits.
pub struct WaitOptions {
    /// Give up after this long (the work goes on; the exit code says it did not end).
    pub timeout: Option<Duration>,
    /// Say so when no controller has taken the work after this long.
    pub accept_warning_after: Duration,
    /// What to suggest when nothing accepts it.
    pub controller_hint: String,
}

/// The changes of the object `name` of `api` as [`Movement`]s, from a watch: its state at
/// once, then every change (`None` once it is gone). A dropped watch is resumed with
/// kube-runtime's backoff; a refusal (no `watch` in the user's RBAC, say) ends the wait.
pub fn changes<K>(
    api: Api<K>,
    name: &str,
) -> impl Stream<Item = anyhow::Result<Option<Movement>>> + Send + Unpin + use<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    for<'a> Movement: From<&'a K>,
{
    watcher::watch_object(api, name)
        .default_backoff()
        .filter_map(|change| {
            std::future::ready(match change {
                Ok(object) => Some(Ok(object.as_ref().map(Movement::from))),
                Err(
                    watcher::Error::InitialListFailed(kube::Error::Api(status))
                    | watcher::Error::WatchStartFailed(kube::Error::Api(status)),
                ) if matches!(status.code, 401 | 403 | 404) => {
                    Some(Err(anyhow::Error::from(kube::Error::Api(status))))
                }
                // Transient: the backoff retries.
                Err(err) => {
                    tracing::debug!(error = %err, "watch interrupted; resuming");
                    None
                }
            })
        })
        .boxed()
}

/// The wait's progress bar (on a terminal), cleared however the wait ends.
struct ClearedBar(Option<indicatif::ProgressBar>);

impl Drop for ClearedBar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Follows `changes` until the movement ends, showing its progress: a bar on a terminal, a
/// line on each change of phase (and every ten seconds of progress) otherwise. Exit 0 only
/// when it Completed.
pub async fn wait<S>(mut changes: S, options: &WaitOptions) -> anyhow::Result<ExitCode>
where
    S: Stream<Item = anyhow::Result<Option<Movement>>> + Unpin,
{
    let start = Instant::now();
    let bar = ClearedBar(std::io::stdout().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:<24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar
    }));
    let mut last_phase = String::new();
    let mut last_line = Instant::now();
    let mut warned = false;
    // Warnings, the timeout and the progress lines also run on a clock, between changes.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latest: Option<Movement> = None;
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(Some(m))) => latest = Some(m),
                Some(Ok(None)) => {
                    anyhow::bail!("it was deleted while waiting");
                }
                Some(Err(err)) => {
                    return Err(err.context("watching it"));
                }
                None => anyhow::bail!("the watch ended"),
            },
            _ = tick.tick() => {}
        }
        let Some(m) = &latest else {
            // Nothing seen yet: only the timeout applies.
            if let Some(limit) = options.timeout
                && start.elapsed() >= limit
            {
                anyhow::bail!(
                    "gave up waiting after {} without seeing it",
                    duration(limit)
                );
            }
            continue;
        };
        let phase_changed = m.phase != last_phase;
        if let Some(b) = &bar.0 {
            b.set_message(format!("{} {}", m.phase, m.node.as_deref().unwrap_or("")));
            if m.total_bytes > 0 {
                b.set_length(m.total_bytes);
                b.set_position(m.bytes_done);
            }
        } else if phase_changed || (last_line.elapsed() >= Duration::from_secs(10) && !m.terminal) {
            println!(
                "{:<11} {:<16} {}",
                m.phase,
                m.node.as_deref().unwrap_or("-"),
                m.progress_cell()
            );
            last_line = Instant::now();
        }
        last_phase.clone_from(&m.phase);
        if m.terminal {
            // Cleared before the last line is printed under it.
            drop(bar);
            let took = m
                .duration()
                .map(|d| format!(" in {}", duration(d)))
                .unwrap_or_default();
            if m.completed {
                println!(
                    "Completed on {}{took}: {}",
                    m.node.as_deref().unwrap_or("-"),
                    m.progress_cell()
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}: {}", m.phase, m.message);
            return Ok(ExitCode::FAILURE);
        }
        let waited = start.elapsed();
        if m.waiting_for_controller && !warned && waited >= options.accept_warning_after {
            let text = format!(
                "no controller has accepted {} {}/{} after {}: {}",
                m.kind,
                m.namespace,
                m.name,
                duration(waited),
                options.controller_hint
            );
            match &bar.0 {
                Some(b) => b.println(format!("warning: {text}")),
                None => eprintln!("warning: {text}"),
            }
            warned = true;
        }
        if let Some(limit) = options.timeout
            && waited >= limit
        {
            anyhow::bail!(
                "gave up waiting after {} ({} {}/{} is {}, and goes on): see `describe {}`",
                duration(limit),
                m.kind,
                m.namespace,
                m.name,
                m.phase,
                m.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_never_reach_100_before_the_end() {
        assert_eq!(percent(0, 0), "0%");
        assert_eq!(percent(999, 1000), "99%");
        assert_eq!(percent(1000, 1000), "100%");
        assert_eq!(percent(2000, 1000), "100%");
        assert_eq!(percent(u64::MAX / 2, u64::MAX), "49%");
    }

    #[test]
    fn durations_read_like_velero() {
        assert_eq!(duration(Duration::from_millis(6500)), "6.5s");
        assert_eq!(duration(Duration::from_secs(10)), "10s");
        assert_eq!(duration(Duration::ZERO), "<1s");
        assert_eq!(duration(Duration::from_secs(245)), "4m5s");
        assert_eq!(duration(Duration::from_secs(3723)), "1h2m3s");
    }

    fn options(timeout: Option<Duration>) -> WaitOptions {
        WaitOptions {
            timeout,
            accept_warning_after: ACCEPT_WARNING_AFTER,
            controller_hint: String::new(),
        }
    }

    #[tokio::test]
    async fn the_wait_follows_changes_to_the_end() {
        let mut done = movement(10, 10);
        done.phase = "Completed".into();
        done.terminal = true;
        done.completed = true;
        let changes = futures::stream::iter([Ok(Some(movement(5, 10))), Ok(Some(done))])
            .chain(futures::stream::pending());
        let code = wait(Box::pin(changes), &options(None)).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);

        let mut failed = movement(5, 10);
        failed.phase = "Failed".into();
        failed.terminal = true;
        let changes = futures::stream::iter([Ok(Some(failed))]).chain(futures::stream::pending());
        let code = wait(Box::pin(changes), &options(None)).await.unwrap();
        assert_eq!(code, ExitCode::FAILURE);
    }

    #[tokio::test]
    async fn a_deletion_or_a_refused_watch_ends_the_wait_with_an_error() {
        let changes = futures::stream::iter([Ok(Some(movement(1, 10))), Ok(None)]);
        let err = wait(Box::pin(changes), &options(None)).await.unwrap_err();
        assert!(err.to_string().contains("deleted while waiting"), "{err:#}");

        let changes = futures::stream::iter([Err(anyhow::anyhow!("forbidden"))]);
        let err = wait(Box::pin(changes), &options(None)).await.unwrap_err();
        assert_eq!(format!("{err:#}"), "watching it: forbidden");
    }

    #[tokio::test]
    async fn the_timeout_counts_while_nothing_changes() {
        // Seen, then silent: the wait gives up naming the phase it was in.
        let changes =
            futures::stream::iter([Ok(Some(movement(1, 10)))]).chain(futures::stream::pending());
        let err = wait(Box::pin(changes), &options(Some(Duration::from_secs(2))))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("gave up waiting after 2s")
                && err.to_string().contains("InProgress"),
            "{err:#}"
        );
        // Never seen at all.
        let err = wait(
            Box::pin(futures::stream::pending()),
            &options(Some(Duration::from_secs(1))),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("without seeing it"), "{err:#}");
    }

    fn movement(done: u64, total: u64) -> Movement {
        Movement {
            kind: "DataDownload",
            namespace: "velero".into(),
            name: "r".into(),
            phase: "InProgress".into(),
            waiting_for_controller: false,
            terminal: false,
            completed: false,
            node: Some("n1".into()),
            message: String::new(),
            created: None,
            accepted: None,
            started: Some("2026-12-03T10:00:00Z".parse().unwrap()),
            ended: Some("2026-12-03T10:00:10Z".parse().unwrap()),
            bytes_done: done,
            total_bytes: total,
        }
    }

    #[test]
    fn progress_is_a_percentage_of_human_sizes() {
        let m = movement(33866448 / 2, 33866448);
        assert_eq!(m.progress_cell(), "50% 16.1 MiB/32.3 MiB");
        assert_eq!(m.progress_line(), "50% (16.1 MiB of 32.3 MiB)");
        assert_eq!(movement(0, 0).progress_cell(), "-");
        assert_eq!(m.rate().unwrap(), "1.6 MiB/s");
        assert_eq!(m.duration(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn describe_says_n_a_for_times_not_reached_and_shows_the_rate() {
        let lines = movement(1 << 20, 1 << 20).describe_times(12);
        assert_eq!(lines[0], "Created:    <n/a>");
        assert!(
            lines[2].starts_with("Started:    2026-12-03 10:00:00 UTC ("),
            "{lines:?}"
        );
        assert!(lines.contains(&"Duration:   10s".to_string()), "{lines:?}");
        assert!(
            lines.contains(&"Rate:       102.4 KiB/s".to_string()),
            "{lines:?}"
        );
    }
}
