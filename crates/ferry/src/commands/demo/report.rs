//! The printed report: for each backup and restore, per run, the node and the time spent
//! waiting, exposing, moving data (and rebinding, for restores), with the data mover's
//! throughput; then each run's makespan side by side, and the restore modes' ratio. Pure:
//! timings in, text out.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::timings::{ModeRun, RestoreTiming, RunKind};
use ferry_text::human_bytes;

/// Renders the report: the backup's table first if there is one, then the restore modes side
/// by side (the first restore mode is the baseline the others are compared to).
pub fn render_report(modes: &[ModeRun]) -> String {
    let backups: Vec<&ModeRun> = modes.iter().filter(|m| m.kind == RunKind::Backup).collect();
    let restores: Vec<&ModeRun> = modes
        .iter()
        .filter(|m| m.kind == RunKind::Restore)
        .collect();
    let mut out = String::new();
    if !backups.is_empty() {
        out.push_str(&render_table(&backups, RunKind::Backup));
        if !restores.is_empty() {
            out.push('\n');
        }
    }
    if restores.is_empty() {
        return out;
    }
    out.push_str(&render_table(&restores, RunKind::Restore));
    if let Some((first, rest)) = restores.split_first() {
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

/// A row per volume with each run's node and phase times, then makespans and throughputs.
/// Backups have no rebind column.
fn render_table(modes: &[&ModeRun], kind: RunKind) -> String {
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
    let rebind = kind == RunKind::Restore;
    // node, wait, expose, move, [rebind,] MiB/s
    let cell_width = node_width + 2 + 7 + 7 + 7 + if rebind { 7 } else { 0 } + 8;

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
            "  │ {:<node_width$}  {:>6} {:>6} {:>6}",
            "node", "wait", "expose", "move"
        );
        if rebind {
            let _ = write!(out, " {:>6}", "rebind");
        }
        let _ = write!(out, " {:>7}", "MiB/s");
    }
    out.push('\n');
    let missing = match kind {
        RunKind::Restore => "(not restored)",
        RunKind::Backup => "(not backed up)",
    };
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
                    let _ = write!(out, "  │ {}", restore_cells(r, node_width, rebind));
                }
                None => {
                    let _ = write!(out, "  │ {missing:<cell_width$}");
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

fn restore_cells(r: &RestoreTiming, node_width: usize, rebind: bool) -> String {
    let mut cells = format!(
        "{:<node_width$}  {:>6} {:>6} {:>6}",
        r.node,
        seconds(r.waiting()),
        seconds(r.exposing()),
        seconds(r.moving()),
    );
    if rebind {
        let _ = write!(cells, " {:>6}", seconds(r.rebinding()));
    }
    let _ = write!(cells, " {:>7.0}", r.throughput() / (1024.0 * 1024.0));
    cells
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
    fn a_backup_gets_its_own_table_without_rebinding_and_is_not_compared() {
        let mut input = sample_input();
        let mut backup = input.modes[1].clone();
        backup.name = "backup".into();
        backup.kind = RunKind::Backup;
        input.modes.insert(0, backup);
        let report = render_report(&input.modes);
        let tables: Vec<&str> = report.split("\n\n").collect();
        assert!(
            tables[0].lines().next().unwrap().contains("backup"),
            "{report}"
        );
        assert!(!tables[0].contains("rebind"), "{report}");
        assert!(!tables[0].contains("default"), "{report}");
        // Each backup row: node, wait, expose, move, MiB/s.
        let row = tables[0]
            .lines()
            .find(|l| l.starts_with("data-web-0"))
            .unwrap();
        let cells: Vec<&str> = row.split('│').collect();
        assert_eq!(cells[1].split_whitespace().count(), 5, "{row}");
        // The restore modes are compared with each other only.
        assert!(
            report.contains("ignoreDelayBinding finished 4.1× sooner than default"),
            "{report}"
        );
        assert!(!report.contains("than backup"), "{report}");
        assert!(!report.contains("backup finished"), "{report}");
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
