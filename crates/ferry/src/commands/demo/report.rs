//! The printed report: for each restore, per mode, the node and the time spent waiting,
//! exposing, moving data and rebinding, with the data mover's throughput; then each mode's makespan side by side and
//! their ratio. Pure: timings in, text out.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::timings::{ModeRun, RestoreTiming, human_bytes};

/// Renders the report for the modes (the first is the baseline the others are compared to).
pub fn render_report(modes: &[ModeRun]) -> String {
    let mut out = String::new();
    // Volumes in a stable order: as the first mode lists them, then any others.
    let mut volumes: Vec<&str> = Vec::new();
    let mut seen = BTreeSet::new();
    for mode in modes {
        for r in &mode.restores {
            if seen.insert(r.volume.as_str()) {
                volumes.push(r.volume.as_str());
            }
        }
    }
    let volume_width = volumes
        .iter()
        .map(|v| v.chars().count())
        .chain(std::iter::once("volume".len()))
        .max()
        .unwrap_or(6);
    let node_width = modes
        .iter()
        .flat_map(|m| m.restores.iter().map(|r| r.node.chars().count()))
        .chain(std::iter::once("node".len()))
        .max()
        .unwrap_or(4);
    // node, wait, expose, move, rebind, MiB/s
    let cell_width = node_width + 2 + 7 + 7 + 7 + 7 + 8;

    // Header: the mode names over their columns.
    let _ = write!(out, "{:volume_width$}  {:>9}", "", "");
    for mode in modes {
        let _ = write!(out, "  │ {:<cell_width$}", mode.name);
    }
    out.push('\n');
    let _ = write!(out, "{:volume_width$}  {:>9}", "volume", "size");
    for _ in modes {
        let _ = write!(
            out,
            "  │ {:<node_width$}  {:>6} {:>6} {:>6} {:>6} {:>7}",
            "node", "wait", "expose", "move", "rebind", "MiB/s"
        );
    }
    out.push('\n');
    for volume in &volumes {
        let size = modes
            .iter()
            .flat_map(|m| m.restores.iter())
            .find(|r| r.volume == *volume)
            .map(|r| r.bytes)
            .unwrap_or(0);
        let _ = write!(out, "{volume:volume_width$}  {:>9}", human_bytes(size));
        for mode in modes {
            match mode.restores.iter().find(|r| r.volume == *volume) {
                Some(r) => {
                    let _ = write!(out, "  │ {}", restore_cells(r, node_width));
                }
                None => {
                    let _ = write!(out, "  │ {:<cell_width$}", "(not restored)");
                }
            }
        }
        out.push('\n');
    }

    // Makespans side by side, under their columns.
    out.push('\n');
    let _ = write!(out, "{:volume_width$}  {:>9}", "makespan", "");
    for mode in modes {
        let cell = seconds(mode.makespan());
        let _ = write!(out, "  │ {cell:<cell_width$}");
    }
    out.push('\n');
    let _ = write!(out, "{:volume_width$}  {:>9}", "throughput", "");
    for mode in modes {
        let cell = format!("{} overall", overall_throughput(mode));
        let _ = write!(out, "  │ {cell:<cell_width$}");
    }
    out.push('\n');

    if let Some((first, rest)) = modes.split_first() {
        for mode in rest {
            if mode.makespan() > 0.0 {
                let _ = writeln!(
                    out,
                    "\n{} finished {:.1}× sooner than {} ({} → {}).",
                    mode.name,
                    first.makespan() / mode.makespan(),
                    first.name,
                    seconds(first.makespan()),
                    seconds(mode.makespan())
                );
            }
        }
    }
    out
}

/// All the mode's bytes over its makespan, in MiB/s (`-` when it took no time).
pub fn overall_throughput(mode: &ModeRun) -> String {
    let makespan = mode.makespan();
    if makespan > 0.0 {
        format!(
            "{:.0} MiB/s",
            mode.total_bytes() as f64 / makespan / (1024.0 * 1024.0)
        )
    } else {
        "-".to_string()
    }
}

fn restore_cells(r: &RestoreTiming, node_width: usize) -> String {
    format!(
        "{:<node_width$}  {:>6} {:>6} {:>6} {:>6} {:>7.0}",
        r.node,
        seconds(r.waiting()),
        seconds(r.exposing()),
        seconds(r.moving()),
        seconds(r.rebinding()),
        r.throughput() / (1024.0 * 1024.0)
    )
}

/// Seconds with two decimals below ten (the demo's phases are often sub-second), else one.
pub fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2}s")
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::demo::timeline::tests::sample_input;

    #[test]
    fn report_has_a_row_per_volume_with_both_modes() {
        let input = sample_input();
        let report = render_report(&input.modes);
        for i in 0..8 {
            let volume = format!("data-web-{i}");
            let line = report
                .lines()
                .find(|l| l.starts_with(&volume))
                .unwrap_or_else(|| panic!("a row for {volume} in\n{report}"));
            // The node appears once per mode.
            let node = format!("node-{}", i % 4 + 1);
            assert_eq!(line.matches(&node).count(), 2, "{line}");
            assert!(line.contains("32.0 MiB"), "{line}");
        }
    }

    #[test]
    fn report_shows_phase_times_and_throughput() {
        let input = sample_input();
        let report = render_report(&input.modes);
        let line = report
            .lines()
            .find(|l| l.starts_with("data-web-0"))
            .unwrap();
        // default: waited 0.2 s, exposed 0.35 s, moved 32 MiB in 1.15 s = 28 MiB/s, rebound
        // in 0.1 s.
        let cells: Vec<&str> = line.split('│').collect();
        let figures: Vec<&str> = cells[1].split_whitespace().collect();
        assert_eq!(
            figures,
            ["node-1", "0.20s", "0.35s", "1.15s", "0.10s", "28"],
            "{line}"
        );
    }

    #[test]
    fn report_compares_makespans() {
        let input = sample_input();
        let report = render_report(&input.modes);
        let makespans = report.lines().find(|l| l.starts_with("makespan")).unwrap();
        assert!(
            makespans.contains("15.8s") && makespans.contains("3.90s"),
            "{makespans}"
        );
        assert!(
            report.contains("ignoreDelayBinding finished 4.1× sooner than default"),
            "{report}"
        );
    }
}
