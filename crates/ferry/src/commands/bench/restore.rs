//! `ferry bench restore`: the restore makespan of a StatefulSet's volumes on a simulated
//! cluster (kubesim, in this process), restored through ferry's DataDownload controller twice —
//! default (each restore waits for its workload pod, created one at a time) and
//! `restorePVC.ignoreDelayBinding` — each compared with the ideal, total bytes / (nodes ×
//! per-node throughput). The per-node throughput is measured in the same run: the default
//! mode's restores run one after another, each alone in the cluster, through the same
//! controller path, so their data mover rate is what one node achieves on its own.
//!
//! It reuses the demo's scenario (cluster, workload, backup, restores, verification), report
//! and timeline; only the figures are its own.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;

use crate::commands::demo::layout::Layout;
use crate::commands::demo::report;
use crate::commands::demo::restore_run::Mode;
use crate::commands::demo::scenario::{self, BackedUp};
use crate::commands::demo::size;
use crate::commands::demo::timeline::TimelineInput;
use crate::commands::demo::timings::{ModeRun, RestoreTiming, human_bytes, human_seconds};
use crate::commands::demo::workload;

#[derive(clap::Args, Debug)]
pub struct BenchRestoreArgs {
    /// Nodes of the simulated cluster.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Volumes to restore (one per StatefulSet pod).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub volumes: u16,
    /// Data in all volumes together, e.g. 1GiB or 512MiB.
    #[arg(long, default_value = "1GiB", value_parser = size::parse_size)]
    pub size: u64,
    /// Keep the run here: the figures (report.txt), the timeline picture, the repository and
    /// the cluster's files. Default: a temporary directory, removed at the end.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the workload's data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub(super) async fn bench_restore(args: BenchRestoreArgs) -> anyhow::Result<ExitCode> {
    let nodes = usize::from(args.nodes);
    let volumes = usize::from(args.volumes);
    let (root, temporary) = match &args.out {
        Some(out) => (out.clone(), false),
        None => (
            std::env::temp_dir().join(format!("ferry-bench-restore-{}", std::process::id())),
            true,
        ),
    };
    let layout = Layout::prepare(&root)?;
    println!(
        "ferry bench restore: {volumes} volumes ({}) on {nodes} simulated nodes, restored through \
         ferry's DataDownload controller, default vs ignoreDelayBinding\n",
        human_bytes(args.size)
    );
    let started = Instant::now();
    let cluster = scenario::start_cluster(&layout, nodes).await?;
    let measured = measure(&cluster, &layout, nodes, volumes, &args).await;
    cluster.stop().await;
    let (runs, files) = measured?;

    let text = render_figures(&runs, nodes, files, cpus());
    println!("\n{text}");
    if args.out.is_some() {
        let input = TimelineInput {
            title: format!(
                "ferry bench restore: {} volumes ({}) on {nodes} nodes",
                volumes,
                human_bytes(runs[0].total_bytes())
            ),
            subtitle: "Restored twice through ferry's DataDownload controller on a simulated \
                       cluster; every byte verified after each restore"
                .into(),
            modes: runs,
        };
        layout.write_report_and_timeline(&text, &input)?;
    } else if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// Backs up the workload, then restores it in each mode through the controller; returns each
/// mode's timings and the number of files.
async fn measure(
    cluster: &kubesim::Cluster,
    layout: &Layout,
    nodes: usize,
    volumes: usize,
    args: &BenchRestoreArgs,
) -> anyhow::Result<(Vec<ModeRun>, usize)> {
    let client = cluster.client();
    let plans = workload::plan_workload(volumes, args.size, args.seed);
    let backed_up = BackedUp::prepare(&client, layout, nodes, plans).await?;
    let mut runs = Vec::new();
    for (index, mode) in [Mode::Default, Mode::IgnoreDelayBinding]
        .into_iter()
        .enumerate()
    {
        if index > 0 {
            backed_up.clear_restored(&client).await?;
        }
        let controller = backed_up.start_controller(&client, mode).await?;
        let (outcome, dirs) = backed_up
            .restore_with_controller(&client, mode, controller)
            .await?;
        if !backed_up.verify(mode, &dirs).await? {
            bail!(
                "the {} restore did not give back the data written; its figures do not count",
                mode.name()
            );
        }
        runs.push(outcome.run);
    }
    Ok((runs, backed_up.files))
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Smallest, middle and largest of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

impl Spread {
    fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            return Spread {
                min: 0.0,
                median: 0.0,
                max: 0.0,
            };
        }
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Spread {
            min: values[0],
            median,
            max: values[n - 1],
        }
    }
}

/// The per-node throughput (bytes/s): all bytes of the run over all its data movement time.
/// Meant for the default run, whose restores each ran alone.
fn per_node_throughput(run: &ModeRun) -> f64 {
    let moving: f64 = run.restores.iter().map(RestoreTiming::moving).sum();
    if moving > 0.0 {
        run.total_bytes() as f64 / moving
    } else {
        0.0
    }
}

/// Whether no two of the run's data movements overlapped in time.
fn movements_ran_alone(run: &ModeRun) -> bool {
    let mut spans: Vec<(f64, f64)> = run
        .restores
        .iter()
        .map(|r| (r.move_start, r.move_end))
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    spans.windows(2).all(|w| w[0].1 <= w[1].0)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Seconds a restore spent in one phase.
type PhaseTime = fn(&RestoreTiming) -> f64;

/// The figures: the per-volume table of the demo's report, then makespans, the ideal and the
/// ratios, per-restore phase times and throughput, and how the ideal was computed.
fn render_figures(runs: &[ModeRun], nodes: usize, files: usize, cpus: usize) -> String {
    let mut out = report::render_report(runs);
    let Some(baseline) = runs.first() else {
        return out;
    };
    let total = baseline.total_bytes();
    let per_node = per_node_throughput(baseline);
    let ideal = if per_node > 0.0 {
        total as f64 / (nodes as f64 * per_node)
    } else {
        0.0
    };

    let label = 26;
    let column = 28;
    let row = |out: &mut String, name: &str, cells: Vec<String>| {
        let _ = write!(out, "{name:<label$}");
        for cell in cells {
            let _ = write!(out, "{cell:<column$}");
        }
        out.push('\n');
    };
    let _ = writeln!(
        out,
        "\n{} volumes, {} in {files} files, on {nodes} nodes\n",
        baseline.restores.len(),
        human_bytes(total)
    );
    row(&mut out, "", runs.iter().map(|r| r.name.clone()).collect());
    row(
        &mut out,
        "makespan",
        runs.iter().map(|r| human_seconds(r.makespan())).collect(),
    );
    row(
        &mut out,
        &format!("speedup over {}", baseline.name),
        runs.iter()
            .map(|r| match r.makespan() {
                m if m > 0.0 => format!("{:.2}×", baseline.makespan() / m),
                _ => "-".into(),
            })
            .collect(),
    );
    row(
        &mut out,
        "ideal",
        runs.iter().map(|_| human_seconds(ideal)).collect(),
    );
    row(
        &mut out,
        "makespan / ideal",
        runs.iter()
            .map(|r| {
                if ideal > 0.0 {
                    format!("{:.2}×", r.makespan() / ideal)
                } else {
                    "-".into()
                }
            })
            .collect(),
    );
    row(
        &mut out,
        "overall throughput",
        runs.iter().map(report::overall_throughput).collect(),
    );
    let _ = writeln!(out, "per restore, median (min – max):");
    let phases: [(&str, PhaseTime); 4] = [
        ("  waiting", RestoreTiming::waiting),
        ("  exposing", RestoreTiming::exposing),
        ("  moving data", RestoreTiming::moving),
        ("  rebinding", RestoreTiming::rebinding),
    ];
    for (name, phase) in phases {
        row(
            &mut out,
            name,
            runs.iter()
                .map(|r| {
                    let s = Spread::of(r.restores.iter().map(phase));
                    format!("{:.2} s ({:.2} – {:.2})", s.median, s.min, s.max)
                })
                .collect(),
        );
    }
    row(
        &mut out,
        "  data mover rate",
        runs.iter()
            .map(|r| {
                let s = Spread::of(r.restores.iter().map(|t| t.throughput() / MIB));
                format!("{:.0} MiB/s ({:.0} – {:.0})", s.median, s.min, s.max)
            })
            .collect(),
    );

    let _ = writeln!(
        out,
        "\nper-node throughput: {:.1} MiB/s, the data mover's rate measured in this run: all \
         bytes over all moving-data time (restore pod running → data moved) of the {} {} \
         restores, which ran one after another through the same controller path{}.",
        per_node / MIB,
        baseline.restores.len(),
        baseline.name,
        if movements_ran_alone(baseline) {
            ", each alone in the cluster"
        } else {
            " (some data movements overlapped: the rate is a lower bound)"
        }
    );
    let _ = writeln!(
        out,
        "ideal = total bytes / (nodes × per-node throughput) = {} / ({nodes} × {:.1} MiB/s) = {}",
        human_bytes(total),
        per_node / MIB,
        human_seconds(ideal)
    );
    if cpus < nodes {
        let _ = writeln!(
            out,
            "note: the {nodes} simulated nodes share this machine's {cpus} CPUs, so parallel \
             restores share them (decryption, decompression, hashing) and cannot reach the \
             ideal here; on a cluster each node brings its own CPUs, disks and network."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore(volume: &str, node: &str, times: [f64; 6], mib: u64) -> RestoreTiming {
        RestoreTiming {
            volume: volume.into(),
            node: node.into(),
            wait_start: times[0],
            wait_end: times[1],
            expose_end: times[2],
            move_start: times[3],
            move_end: times[4],
            completed: times[5],
            bytes: mib << 20,
        }
    }

    /// A mode's run of four volumes of 100 MiB on two nodes; `start` gives when restore i's
    /// wait ends, after which it exposes for 0.2 s, moves for 1 s and rebinds for 0.1 s.
    fn run(name: &str, start: impl Fn(usize) -> f64) -> ModeRun {
        let nodes = vec!["node-1".to_string(), "node-2".to_string()];
        let restores = (0..4)
            .map(|i| {
                let t = start(i);
                restore(
                    &format!("v{i}"),
                    &nodes[i % 2],
                    [0.0, t, t + 0.2, t + 0.2, t + 1.2, t + 1.3],
                    100,
                )
            })
            .collect();
        ModeRun {
            name: name.into(),
            description: String::new(),
            nodes,
            restores,
        }
    }

    /// At 100 MiB/s: one after another by default, two at a time with ignoreDelayBinding.
    fn runs() -> Vec<ModeRun> {
        vec![
            run("default", |i| i as f64 * 2.0 + 0.5),
            run("ignoreDelayBinding", |i| (i / 2) as f64 * 1.5 + 0.1),
        ]
    }

    #[test]
    fn per_node_throughput_is_bytes_over_moving_time() {
        let runs = runs();
        assert!((per_node_throughput(&runs[0]) / MIB - 100.0).abs() < 1e-9);
        assert!(movements_ran_alone(&runs[0]));
        assert!(!movements_ran_alone(&runs[1]));
    }

    #[test]
    fn spread_has_min_median_and_max() {
        assert_eq!(
            Spread::of([3.0, 1.0, 2.0]),
            Spread {
                min: 1.0,
                median: 2.0,
                max: 3.0
            }
        );
        assert_eq!(Spread::of([4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }

    #[test]
    fn figures_compare_each_mode_with_the_ideal() {
        let text = render_figures(&runs(), 2, 40, 8);
        // 400 MiB / (2 nodes × 100 MiB/s) = 2 s; makespans 7.8 s and 2.9 s.
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("a {name} line in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("ideal "), "ideal 2.00 s 2.00 s");
        assert_eq!(line("makespan /"), "makespan / ideal 3.90× 1.45×");
        assert_eq!(
            line("  moving data"),
            "moving data 1.00 s (1.00 – 1.00) 1.00 s (1.00 – 1.00)"
        );
        assert_eq!(line("speedup"), "speedup over default 1.00× 2.69×");
        assert!(text.contains("per-node throughput: 100.0 MiB/s"), "{text}");
        assert!(text.contains("each alone in the cluster"), "{text}");
        assert!(
            !text.contains("share this machine's"),
            "8 CPUs for 2 nodes: {text}"
        );
        assert!(render_figures(&runs(), 2, 40, 1).contains("share this machine's 1 CPUs"));
    }
}
