//! One shape's figures as `ferry bench repo` prints them: the table, the goals (met or not)
//! and the other ratios.

use super::Measure;

/// One step's median run, and the same step on the one-file data set (its fixed cost).
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    pub(super) m: Measure,
    pub(super) startup: Measure,
    /// Restores: the blocks the restored tree takes (sparse files restored as such take
    /// less than their length).
    pub(super) on_disk: Option<u64>,
}

impl Step {
    /// Wall time without the fixed start-up (None when the start-up was not shorter).
    fn net(&self) -> Option<f64> {
        let net = self.m.wall - self.startup.wall;
        (net > 0.0).then_some(net)
    }
}

/// Everything measured for one data shape.
#[derive(Debug, Clone, Copy)]
pub(super) struct Figures {
    /// The data set's size (file lengths) in MiB.
    pub(super) mib: f64,
    pub(super) restic_backup: Step,
    pub(super) ferry_backup: Step,
    pub(super) tar: Step,
    /// ferry restoring its own repository.
    pub(super) ferry: Step,
    /// ferry restoring the repository restic wrote.
    pub(super) ferry_restic: Step,
    /// The same with `--flush`, as the data mover restores.
    pub(super) ferry_restic_flush: Step,
    pub(super) restic: Step,
    /// rustic restoring the repository restic wrote, when rustic is installed.
    pub(super) rustic: Option<Step>,
}

/// The table: a header, then one line per step.
pub(super) fn table(f: &Figures) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<38} {:>11} {:>8} {:>8} {:>8} {:>10} {:>9} {:>15} {:>10}",
        "",
        "throughput",
        "wall",
        "+flush",
        "CPU",
        "peak RSS",
        "start-up",
        "w/o start-up",
        "on disk"
    )];
    let mut row = |name: &str, s: &Step| {
        lines.push(format!(
            "{name:<38} {:>6.1} MiB/s {:>6.2} s {:>6.2} s {:>6.2} s {:>6.1} MiB {:>7.3} s {:>9} MiB/s {:>10}",
            f.mib / s.m.wall,
            s.m.wall,
            s.m.flushed,
            s.m.cpu,
            s.m.max_rss_mib,
            s.startup.wall,
            s.net()
                .map_or_else(|| "-".to_string(), |n| format!("{:.1}", f.mib / n)),
            s.on_disk.map_or_else(
                || "-".to_string(),
                |b| format!("{:.1} MiB", b as f64 / 1048576.0)
            ),
        ));
    };
    row("tar -x (the floor)", &f.tar);
    row("ferry restore (ferry's repository)", &f.ferry);
    row("ferry restore (restic's repository)", &f.ferry_restic);
    row(
        "ferry restore --flush (restic's repo)",
        &f.ferry_restic_flush,
    );
    row("restic restore", &f.restic);
    if let Some(r) = &f.rustic {
        row("rustic restore (restic's repository)", r);
    }
    row("restic backup", &f.restic_backup);
    row("ferry backup", &f.ferry_backup);
    lines
}

/// A target figure and whether it was reached.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Goal {
    pub(super) what: &'static str,
    pub(super) value: f64,
    pub(super) limit: f64,
    /// The value must stay at or below the limit (else at or above it).
    pub(super) at_most: bool,
    /// "x" for ratios, " MiB" for memory.
    pub(super) unit: &'static str,
}

impl Goal {
    pub(super) fn met(&self) -> bool {
        if self.at_most {
            self.value <= self.limit
        } else {
            self.value >= self.limit
        }
    }

    pub(super) fn line(&self) -> String {
        let digits = if self.unit == "x" { 2 } else { 0 };
        format!(
            "{}: {:.digits$}{} (goal {} {}{}): {}",
            self.what,
            self.value,
            self.unit,
            if self.at_most { "<=" } else { ">=" },
            self.limit,
            self.unit,
            if self.met() { "met" } else { "NOT met" }
        )
    }
}

/// The goals, judged on wall time (process start to exit) and peak RSS.
pub(super) fn goals(f: &Figures) -> Vec<Goal> {
    let rss = [
        f.ferry_backup,
        f.ferry,
        f.ferry_restic,
        f.ferry_restic_flush,
    ]
    .iter()
    .map(|s| s.m.max_rss_mib)
    .fold(0.0, f64::max);
    vec![
        Goal {
            what: "ferry restore / tar -x, wall time",
            value: f.ferry.m.wall / f.tar.m.wall,
            limit: 1.1,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "ferry restore of restic's repository / restic restore, throughput",
            value: f.restic.m.wall / f.ferry_restic.m.wall,
            limit: 2.0,
            at_most: false,
            unit: "x",
        },
        Goal {
            what: "ferry backup / restic backup, throughput",
            value: f.restic_backup.m.wall / f.ferry_backup.m.wall,
            limit: 2.0,
            at_most: false,
            unit: "x",
        },
        Goal {
            what: "ferry peak RSS (backup and restores)",
            value: rss,
            limit: 256.0,
            at_most: true,
            unit: " MiB",
        },
    ]
}

/// `a / b` as "1.23x", or "-" when a figure is missing.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// The ratios beside the goals: with the flush, without the start-up, CPU, and the peers.
pub(super) fn ratio_lines(f: &Figures) -> Vec<String> {
    let (w, fl) = (|s: &Step| Some(s.m.wall), |s: &Step| Some(s.m.flushed));
    let net = |s: &Step| s.net();
    let mut lines = vec![
        format!(
            "same ratios with the flush: ferry/tar {}, ferry on restic's repository vs restic {}, backup {}",
            ratio(fl(&f.ferry), fl(&f.tar)),
            ratio(fl(&f.restic), fl(&f.ferry_restic)),
            ratio(fl(&f.restic_backup), fl(&f.ferry_backup)),
        ),
        format!(
            "same ratios without the start-up: ferry/tar {}, ferry on restic's repository vs restic {}, backup {}",
            ratio(net(&f.ferry), net(&f.tar)),
            ratio(net(&f.restic), net(&f.ferry_restic)),
            ratio(net(&f.restic_backup), net(&f.ferry_backup)),
        ),
        format!(
            "ferry restore of its own repository vs restic restore: throughput {} (+flush {}); CPU ferry/restic: restore {}, restore of restic's repository {}, backup {}",
            ratio(w(&f.restic), w(&f.ferry)),
            ratio(fl(&f.restic), fl(&f.ferry)),
            ratio(Some(f.ferry.m.cpu), Some(f.restic.m.cpu)),
            ratio(Some(f.ferry_restic.m.cpu), Some(f.restic.m.cpu)),
            ratio(Some(f.ferry_backup.m.cpu), Some(f.restic_backup.m.cpu)),
        ),
        format!(
            "as the data mover restores (--flush, so large files written directly), restic's repository: {:.2} s, +flush {:.2} s; throughput with the flush {} restic's, {} ferry's without --flush",
            f.ferry_restic_flush.m.wall,
            f.ferry_restic_flush.m.flushed,
            ratio(fl(&f.restic), fl(&f.ferry_restic_flush)),
            ratio(fl(&f.ferry_restic), fl(&f.ferry_restic_flush)),
        ),
        format!(
            "start-up ferry/restic: restore {}, restore of restic's repository {}, backup {}",
            ratio(Some(f.ferry.startup.wall), Some(f.restic.startup.wall)),
            ratio(
                Some(f.ferry_restic.startup.wall),
                Some(f.restic.startup.wall)
            ),
            ratio(
                Some(f.ferry_backup.startup.wall),
                Some(f.restic_backup.startup.wall)
            ),
        ),
    ];
    lines.push(match &f.rustic {
        Some(r) => format!(
            "ferry restore of restic's repository vs rustic restore: throughput {} (+flush {}, without start-up {}), CPU {}",
            ratio(w(r), w(&f.ferry_restic)),
            ratio(fl(r), fl(&f.ferry_restic)),
            ratio(net(r), net(&f.ferry_restic)),
            ratio(Some(f.ferry_restic.m.cpu), Some(r.m.cpu)),
        ),
        None => "rustic: not installed".into(),
    });
    lines
}

/// One line per shape for the closing summary.
pub(super) fn summary_line(shape: &str, goals: &[Goal]) -> String {
    let met = goals.iter().filter(|g| g.met()).count();
    let parts: Vec<String> = goals
        .iter()
        .map(|g| {
            let digits = if g.unit == "x" { 2 } else { 0 };
            format!(
                "{:.digits$}{} {}",
                g.value,
                g.unit,
                if g.met() { "met" } else { "NOT met" }
            )
        })
        .collect();
    format!(
        "{shape:<7} {met}/{} goals met: {}",
        goals.len(),
        parts.join(" | ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(wall: f64, cpu: f64, rss: f64) -> Measure {
        Measure {
            wall,
            flushed: wall + 0.5,
            cpu,
            max_rss_mib: rss,
        }
    }

    fn step(wall: f64, startup: f64, rss: f64) -> Step {
        Step {
            m: m(wall, wall / 2.0, rss),
            startup: m(startup, startup, 10.0),
            on_disk: Some(64 << 20),
        }
    }

    fn figures() -> Figures {
        Figures {
            mib: 64.0,
            restic_backup: step(4.0, 0.8, 120.0),
            ferry_backup: step(2.5, 0.3, 140.0),
            tar: step(1.0, 0.01, 5.0),
            ferry: step(1.05, 0.25, 118.0),
            ferry_restic: step(1.5, 0.3, 300.0),
            ferry_restic_flush: step(1.8, 0.3, 140.0),
            restic: step(4.5, 0.7, 110.0),
            rustic: None,
        }
    }

    #[test]
    fn goals_are_judged_on_the_given_figures() {
        let g = goals(&figures());
        assert_eq!(g.len(), 4);
        // 1.05 / 1.0 <= 1.1
        assert!((g[0].value - 1.05).abs() < 1e-9);
        assert!(g[0].met());
        // 4.5 / 1.5 = 3 >= 2
        assert!((g[1].value - 3.0).abs() < 1e-9);
        assert!(g[1].met());
        // 4 / 2.5 = 1.6 < 2
        assert!((g[2].value - 1.6).abs() < 1e-9);
        assert!(!g[2].met());
        // the largest of ferry's four: 300 MiB > 256
        assert_eq!(g[3].value, 300.0);
        assert!(!g[3].met());
        assert_eq!(
            g[2].line(),
            "ferry backup / restic backup, throughput: 1.60x (goal >= 2x): NOT met"
        );
        assert_eq!(
            g[0].line(),
            "ferry restore / tar -x, wall time: 1.05x (goal <= 1.1x): met"
        );
        assert_eq!(
            g[3].line(),
            "ferry peak RSS (backup and restores): 300 MiB (goal <= 256 MiB): NOT met"
        );
        assert_eq!(
            summary_line("sparse", &g),
            "sparse  2/4 goals met: 1.05x met | 3.00x met | 1.60x NOT met | 300 MiB NOT met"
        );
    }

    #[test]
    fn a_goal_exactly_at_its_limit_is_met() {
        let mut f = figures();
        f.ferry_backup = step(2.0, 0.3, 100.0);
        f.ferry_restic = step(2.25, 0.3, 256.0);
        let g = goals(&f);
        assert!(g[1].met() && g[2].met() && g[3].met());
    }

    #[test]
    fn ratios_without_start_up_subtract_each_tools_own_start_up() {
        let lines = ratio_lines(&figures());
        // restic (4.5 - 0.7) / ferry on restic's repository (1.5 - 0.3) = 3.1666
        // ferry (1.05 - 0.25) / tar (1.0 - 0.01) = 0.808
        // backup (4.0 - 0.8) / (2.5 - 0.3) = 1.4545
        assert_eq!(
            lines[1],
            "same ratios without the start-up: ferry/tar 0.81x, ferry on restic's repository vs restic 3.17x, backup 1.45x"
        );
        // +0.5 s each: (1.55 / 1.5), (5.0 / 2.0), (4.5 / 3.0)
        assert_eq!(
            lines[0],
            "same ratios with the flush: ferry/tar 1.03x, ferry on restic's repository vs restic 2.50x, backup 1.50x"
        );
        assert_eq!(lines.last().unwrap(), "rustic: not installed");
        // With the flush: restic 5.0 s, ferry --flush 2.3 s, ferry without it 2.0 s.
        assert_eq!(
            lines[3],
            "as the data mover restores (--flush, so large files written directly), restic's repository: 1.80 s, +flush 2.30 s; throughput with the flush 2.17x restic's, 0.87x ferry's without --flush"
        );
    }

    #[test]
    fn the_table_shows_throughput_with_and_without_start_up() {
        let mut f = figures();
        // A start-up as long as the step: no net throughput to show.
        f.tar = step(1.0, 1.0, 5.0);
        f.rustic = Some(step(2.0, 0.5, 50.0));
        let t = table(&f);
        assert_eq!(t.len(), 9);
        let ferry = t
            .iter()
            .find(|l| l.starts_with("ferry restore (ferry's"))
            .unwrap();
        // 64 MiB / 1.05 s = 61.0; 64 / (1.05 - 0.25) = 80.0
        assert!(ferry.contains("61.0 MiB/s"), "{ferry}");
        assert!(ferry.contains("80.0 MiB/s"), "{ferry}");
        assert!(ferry.contains("64.0 MiB"), "{ferry}");
        let tar = &t[1];
        assert!(tar.starts_with("tar -x"));
        assert!(tar.contains(" - MiB/s"), "{tar}");
        assert!(t.iter().any(|l| l.starts_with("rustic restore")));
        assert!(ratio_lines(&f).last().unwrap().starts_with(
            "ferry restore of restic's repository vs rustic restore: throughput 1.33x"
        ));
    }
}
