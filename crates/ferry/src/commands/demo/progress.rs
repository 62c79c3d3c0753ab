//! Progress while the demo works: one line per step on stdout, with a spinner (or a byte
//! bar for long data steps) on the terminal while the step runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A running step; `done` prints its line with the time it took.
pub struct Step {
    title: String,
    started: Instant,
    bar: ProgressBar,
}

impl Step {
    /// A step shown with a spinner.
    pub fn start(title: impl Into<String>) -> Step {
        let title = title.into();
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("  {spinner:.cyan} {msg} ({elapsed})")
                .expect("the template is valid"),
        );
        bar.set_message(title.clone());
        bar.enable_steady_tick(Duration::from_millis(100));
        Step {
            title,
            started: Instant::now(),
            bar,
        }
    }

    /// A step shown with a bar of `total` bytes.
    pub fn start_bytes(title: impl Into<String>, total: u64) -> Step {
        let title = title.into();
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "  {spinner:.cyan} {msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_message(title.clone());
        bar.enable_steady_tick(Duration::from_millis(100));
        Step {
            title,
            started: Instant::now(),
            bar,
        }
    }

    /// Updates the bytes done (for a byte bar).
    pub fn set_position(&self, bytes: u64) {
        self.bar.set_position(bytes);
    }

    /// Shows `done` (bytes, counted by other tasks) on the bar ten times a second until the
    /// returned task is aborted.
    pub fn follow(&self, done: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
        let bar = self.bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// Ends the step: clears the spinner and prints `✓ title — summary (time)`.
    pub fn done(self, summary: &str) {
        self.bar.finish_and_clear();
        let secs = self.started.elapsed().as_secs_f64();
        if summary.is_empty() {
            println!("  ✓ {} ({secs:.1} s)", self.title);
        } else {
            println!("  ✓ {}: {summary} ({secs:.1} s)", self.title);
        }
    }

    /// Ends the step as failed.
    pub fn failed(self) {
        self.bar.finish_and_clear();
        println!("  ✗ {}", self.title);
    }
}
