//! `ferry bench restore`: the restore makespan of a StatefulSet's volumes on a simulated
//! cluster (kubesim, in this process), restored through ferry's DataDownload controller twice —
//! default (each restore waits for its workload pod, created one at a time) and
//! `restorePVC.ignoreDelayBinding` — each divided by the ideal measured in the same run: the
//! restore pods' own data mover, run as local processes without the controller, as many at
//! once as the nodes' `loadConcurrency` slots allow, from the same repository and snapshots
//! ([`ideal`]; measured `--runs` times, alternately with ignoreDelayBinding, the fastest of
//! each counting). That quotient is the orchestration overhead; the goal is at most 1.10×
//! with ignoreDelayBinding.
//!
//! It reuses the demo's scenario (cluster, workload, backup, restores, verification), report
//! and timeline; only the figures are its own. The controller runs as its own `ferry
//! controller` process, as ferry-controller's service account, so that its API requests (the
//! API server's audit log, or kubesim's request log) and its peak memory are its own.
//! `--cluster real` runs the same scenario on the real control plane (docs/real-cluster.md),
//! `--cluster both` on each and compares them.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use ferry_controller::install::CONTROLLER_NAME;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use testenv::{Backend, TestCluster};

use super::cpu_split::{self, CpuSplit};
use crate::commands::demo::controller::{self, Placement};
use crate::commands::demo::cpu_use::CpuUse;
use crate::commands::demo::layout::Layout;
use crate::commands::demo::objects::{self, FERRY_NAMESPACE};
use crate::commands::demo::progress::Step;
use crate::commands::demo::report;
use crate::commands::demo::restore_run::{self, Mode};
use crate::commands::demo::scenario::{self, BackedUp};
use crate::commands::demo::size;
use crate::commands::demo::timeline::TimelineInput;
use crate::commands::demo::timings::{ModeRun, RestoreTiming, human_seconds};
use crate::commands::demo::workload;
use ferry_text::human_bytes;

mod cpu_table;
mod ideal;

use ideal::Ideal;

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
    /// The cluster: kubesim (in this process), the real control plane (built by
    /// testenv/build; Go needed the first time) with kubesim's nodes attached, or both.
    #[arg(long, value_enum, default_value_t = ClusterChoice::Kubesim)]
    pub cluster: ClusterChoice,
    /// Give the real control plane this many CPUs of its own (the last ones this process may
    /// use) and the simulated nodes the others, as on a cluster whose control plane runs apart
    /// from its nodes: its work then takes no CPU time from the data movers. 0: every process
    /// shares every CPU. Only the real control plane's run is split (--cluster real or both).
    #[arg(long, default_value_t = 0)]
    pub control_plane_cpus: u16,
    /// Runs of the ideal and of ignoreDelayBinding (alternately; the default mode runs once).
    /// The fastest of each counts: more runs steady the overhead on a noisy machine, at about
    /// 25 s (kubesim) or 40 s (the real control plane) per extra pair.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=20))]
    pub runs: u16,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterChoice {
    Kubesim,
    Real,
    Both,
}

impl ClusterChoice {
    pub(super) fn backends(self) -> Vec<Backend> {
        match self {
            ClusterChoice::Kubesim => vec![Backend::Kubesim],
            ClusterChoice::Real => vec![Backend::Real],
            ClusterChoice::Both => vec![Backend::Kubesim, Backend::Real],
        }
    }
}

/// What one mode cost: the controller process's API requests and peak memory, and the CPU
/// time the whole machine used while its restores ran.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ModeCost {
    requests: usize,
    peak_rss: Option<u64>,
    /// By whom (machine, data movers, controller, control plane).
    cpu: Option<CpuUse>,
}

/// One cluster's results.
struct ClusterRun {
    backend: Backend,
    runs: Vec<ModeRun>,
    costs: Vec<ModeCost>,
    /// The measured ideal's makespan, seconds.
    ideal: f64,
}

pub(super) async fn bench_restore(args: BenchRestoreArgs) -> anyhow::Result<ExitCode> {
    let nodes = usize::from(args.nodes);
    let volumes = usize::from(args.volumes);
    let (root, temporary) = super::run_root(args.out.as_deref(), "restore");
    let backends = args.cluster.backends();
    if args.control_plane_cpus > 0 && !backends.contains(&Backend::Real) {
        bail!("--control-plane-cpus needs the real control plane (--cluster real or both)");
    }
    let started = Instant::now();
    let mut results = Vec::new();
    for backend in backends.iter().copied() {
        let root = if backends.len() > 1 {
            root.join(backend.name())
        } else {
            root.clone()
        };
        let layout = Layout::prepare(&root)?;
        println!(
            "ferry bench restore: {volumes} volumes ({}) on {nodes} nodes ({}), restored through \
             ferry's DataDownload controller, default vs ignoreDelayBinding\n",
            human_bytes(args.size),
            cluster_words(backend)
        );
        let cluster = scenario::start_cluster(&layout, nodes, backend).await?;
        let split = match split_cpus(&cluster, args.control_plane_cpus) {
            Ok(split) => split,
            Err(e) => {
                cluster.stop().await;
                return Err(e);
            }
        };
        let measured = measure(&cluster, &layout, nodes, volumes, &args).await;
        if let (Some(split), Some(group)) = (&split, cluster.control_plane_group()) {
            split.undo(group);
        }
        cluster.stop().await;
        let Measured {
            runs,
            costs,
            idb_makespans,
            ideal,
            files,
        } = measured?;

        let node_cpus = split.as_ref().map_or_else(cpus, |s| s.nodes.len());
        let mut text = render_figures(&runs, &ideal, files, node_cpus, &idb_makespans);
        text.push_str(&render_costs(&runs, &costs));
        let cpu: Vec<_> = costs.iter().map(|c| c.cpu).collect();
        text.push_str(&cpu_table::render_cpu(
            &runs,
            &cpu,
            &ideal,
            node_cpus,
            split.as_ref(),
        ));
        println!("\n{text}");
        if args.out.is_some() {
            let input = TimelineInput {
                title: format!(
                    "ferry bench restore: {} volumes ({}) on {nodes} nodes, {}",
                    volumes,
                    human_bytes(runs[0].total_bytes()),
                    backend.name()
                ),
                subtitle: format!(
                    "Restored twice through ferry's DataDownload controller on {}; every byte \
                     verified after each restore",
                    cluster_words(backend)
                ),
                modes: runs.clone(),
            };
            layout.write_report_and_timeline(&text, &input)?;
        }
        results.push(ClusterRun {
            backend,
            runs,
            costs,
            ideal: ideal.makespan(),
        });
    }
    if results.len() > 1 {
        println!("\n{}", render_comparison(&results));
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// `--control-plane-cpus` on the real control plane: its CPUs and the nodes' apart, from now
/// until the run ends (None: everything shares every CPU).
fn split_cpus(cluster: &TestCluster, control_plane_cpus: u16) -> anyhow::Result<Option<CpuSplit>> {
    let (true, Some(group)) = (control_plane_cpus > 0, cluster.control_plane_group()) else {
        return Ok(None);
    };
    let split = CpuSplit::plan(usize::from(control_plane_cpus))?;
    split.apply(group)?;
    println!("CPUs: {}\n", split.words());
    Ok(Some(split))
}

pub(super) fn cluster_words(backend: Backend) -> &'static str {
    match backend {
        Backend::Kubesim => "kubesim, a simulated cluster in this process",
        Backend::Real => "the real Kubernetes control plane with kubesim's nodes",
    }
}

/// Backs up the workload, restores it in each mode through a controller process and measures
/// the ideal (the data movers alone, no controller running), each `--runs` times but the
/// default mode.
async fn measure(
    cluster: &TestCluster,
    layout: &Layout,
    nodes: usize,
    volumes: usize,
    args: &BenchRestoreArgs,
) -> anyhow::Result<Measured> {
    let client = cluster.client();
    let plans = workload::plan_workload(volumes, args.size, args.seed);
    // The controller's service account first: its kubeconfig runs the backup's controller.
    controller::install(&client).await?;
    let kubeconfig = cluster
        .service_account_kubeconfig(FERRY_NAMESPACE, CONTROLLER_NAME)
        .await?;
    let backup_log = layout.controller_log("backup");
    let backed_up = BackedUp::prepare(
        &client,
        layout,
        nodes,
        plans,
        Placement::Process {
            kubeconfig: &kubeconfig,
            log: &backup_log,
        },
    )
    .await?;
    // The ideal before the restores (no controller runs now) and again after them, and
    // ignoreDelayBinding after each: both the faster of two, so that neither side of the
    // overhead gets more chances than the other to catch the machine at its quietest.
    let slots = ideal::slots_of_the_run(&client, &backed_up.written.nodes).await?;
    let mut ideals = vec![ideal::measure_ideal(cluster, layout, &backed_up, &slots, 1).await?];
    let restorer = Restorer {
        cluster,
        layout,
        backed_up: &backed_up,
        kubeconfig: &kubeconfig,
        user: testenv::service_account_user(FERRY_NAMESPACE, CONTROLLER_NAME),
    };
    let (default, default_cost) = restorer.restore(Mode::Default, 1).await?;
    backed_up.clear_restored(&client).await?;
    let mut idbs = vec![restorer.restore(Mode::IgnoreDelayBinding, 1).await?];
    for round in 2..=usize::from(args.runs) {
        // The controller has stopped; the disk holds the repository alone again, as before.
        backed_up.clear_restored(&client).await?;
        ideals.push(ideal::measure_ideal(cluster, layout, &backed_up, &slots, round).await?);
        idbs.push(restorer.restore(Mode::IgnoreDelayBinding, round).await?);
    }
    let idb_makespans: Vec<f64> = idbs.iter().map(|(run, _)| run.makespan()).collect();
    let (idb, idb_cost) = idbs
        .into_iter()
        .min_by(|a, b| a.0.makespan().total_cmp(&b.0.makespan()))
        .context("no ignoreDelayBinding run")?;
    let ideal = Ideal::fastest(ideals, slots.1).context("no ideal measured")?;
    Ok(Measured {
        runs: vec![default, idb],
        costs: vec![default_cost, idb_cost],
        idb_makespans,
        ideal,
        files: backed_up.written.files,
    })
}

/// What [`measure`] found.
struct Measured {
    /// Default, then the faster ignoreDelayBinding run.
    runs: Vec<ModeRun>,
    costs: Vec<ModeCost>,
    /// Every ignoreDelayBinding run's makespan, in order.
    idb_makespans: Vec<f64>,
    ideal: Ideal,
    files: usize,
}

/// Restores the backed-up workload through a controller process of its own.
struct Restorer<'a> {
    cluster: &'a TestCluster,
    layout: &'a Layout,
    backed_up: &'a BackedUp,
    kubeconfig: &'a std::path::Path,
    /// The controller's identity, whose API requests are counted.
    user: String,
}

impl Restorer<'_> {
    /// The `nth` restore in `mode` (its controller log is the mode's, numbered from the
    /// second); fails when the restored data differ from what was written.
    async fn restore(&self, mode: Mode, nth: usize) -> anyhow::Result<(ModeRun, ModeCost)> {
        let client = self.cluster.client();
        if nth > 1 {
            self.forget_data_downloads(mode).await?;
        }
        settle(self.cluster).await?;
        let before = self.cluster.requests_of(&self.user)?;
        let log = match nth {
            1 => self.layout.controller_log(mode.name()),
            n => self.layout.controller_log(&format!("{}-{n}", mode.name())),
        };
        let placement = Placement::Process {
            kubeconfig: self.kubeconfig,
            log: &log,
        };
        let controller = self
            .backed_up
            .start_controller(&client, mode, placement)
            .await?;
        let (outcome, dirs, peak_rss) = self
            .backed_up
            .restore_with_controller(
                &client,
                mode,
                controller,
                self.cluster.control_plane_group(),
            )
            .await?;
        let requests = self.cluster.requests_of(&self.user)? - before;
        if !self.backed_up.verify(mode, &dirs).await? {
            bail!(
                "the {} restore did not give back the data written; its figures do not count",
                mode.name()
            );
        }
        let cost = ModeCost {
            requests,
            peak_rss,
            cpu: outcome.cpu,
        };
        Ok((outcome.run, cost))
    }

    /// Deletes the DataDownloads an earlier run in `mode` left (their names are the mode's),
    /// finalizers first: no controller runs now to let go of them.
    async fn forget_data_downloads(&self, mode: Mode) -> anyhow::Result<()> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.cluster.client(),
            FERRY_NAMESPACE,
            &objects::data_download_resource(),
        );
        let gone = |r: Result<(), kube::Error>| match r {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other,
        };
        for volume in &self.backed_up.to_restore {
            let name = restore_run::data_download_name(mode, &volume.claim);
            let no_finalizers = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
            let context = || format!("deleting DataDownload {name} of the earlier run");
            let patched = api
                .patch(&name, &PatchParams::default(), &no_finalizers)
                .await;
            gone(patched.map(drop)).with_context(context)?;
            let deleted = api.delete(&name, &DeleteParams::default()).await;
            gone(deleted.map(drop)).with_context(context)?;
        }
        Ok(())
    }
}

/// On the real control plane, waits until kube-controller-manager's controllers are done with
/// what the run did before (deleting the previous mode's volumes): their clients are
/// rate-limited (20 requests a second), so their leftover work would be paid by the restores
/// measured next, which a cluster at rest does not ask of them.
async fn settle(cluster: &TestCluster) -> anyhow::Result<()> {
    if cluster.backend() == Backend::Kubesim {
        return Ok(());
    }
    let step = Step::start("letting the control plane settle");
    let quiet = std::time::Duration::from_millis(1500);
    let waited = cluster
        .settle(quiet, std::time::Duration::from_secs(30))
        .await?;
    step.done(&format!(
        "its controllers made no request for {} s (after {})",
        quiet.as_secs_f64(),
        human_seconds(waited.as_secs_f64())
    ));
    Ok(())
}

/// The controller process's API requests per restore and peak memory, per mode.
fn render_costs(runs: &[ModeRun], costs: &[ModeCost]) -> String {
    let mut out = String::from("\nthe controller process (ferry-controller's service account):\n");
    for (run, cost) in runs.iter().zip(costs) {
        let per_restore = cost.requests as f64 / run.restores.len().max(1) as f64;
        let _ = writeln!(
            out,
            "  {:<22}{} API requests ({per_restore:.1} per restore), peak RSS {}",
            run.name,
            cost.requests,
            cost.peak_rss.map_or("-".into(), human_bytes)
        );
    }
    out
}

/// Makespans and controller costs of the same scenario on each cluster.
fn render_comparison(results: &[ClusterRun]) -> String {
    let mut out = String::from("the same scenario on each cluster:\n");
    let _ = write!(out, "{:<42}", "");
    for r in results {
        let _ = write!(out, "{:<16}", r.backend.name());
    }
    out.push('\n');
    let _ = write!(out, "{:<42}", "measured ideal (data movers alone)");
    for r in results {
        let _ = write!(out, "{:<16}", human_seconds(r.ideal));
    }
    out.push('\n');
    let modes = results[0].runs.len();
    for m in 0..modes {
        let name = &results[0].runs[m].name;
        let _ = write!(out, "{:<42}", format!("{name} makespan"));
        for r in results {
            let _ = write!(out, "{:<16}", human_seconds(r.runs[m].makespan()));
        }
        out.push('\n');
        let _ = write!(out, "{:<42}", format!("{name} orchestration overhead"));
        for r in results {
            let cell =
                overhead(r.runs[m].makespan(), r.ideal).map_or("-".into(), |o| format!("{o:.2}×"));
            let _ = write!(out, "{cell:<16}");
        }
        out.push('\n');
        let _ = write!(out, "{:<42}", format!("{name} requests per restore"));
        for r in results {
            let per = r.costs[m].requests as f64 / r.runs[m].restores.len().max(1) as f64;
            let _ = write!(out, "{:<16}", format!("{per:.1}"));
        }
        out.push('\n');
        let _ = write!(out, "{:<42}", format!("{name} controller peak RSS"));
        for r in results {
            let _ = write!(
                out,
                "{:<16}",
                r.costs[m].peak_rss.map_or("-".into(), human_bytes)
            );
        }
        out.push('\n');
    }
    let (first, last) = (&results[0], &results[results.len() - 1]);
    for m in 0..modes {
        let (a, b) = (first.runs[m].makespan(), last.runs[m].makespan());
        if a > 0.0 {
            let _ = writeln!(
                out,
                "{}: {} / {} makespan = {:.2}×",
                first.runs[m].name,
                last.backend.name(),
                first.backend.name(),
                b / a
            );
        }
    }
    out
}

pub(super) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Smallest, middle and largest of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Spread {
    pub(super) min: f64,
    pub(super) median: f64,
    pub(super) max: f64,
}

impl Spread {
    pub(super) fn of(values: impl IntoIterator<Item = f64>) -> Spread {
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
/// The ideal makespan: `total` bytes over `nodes` moving at `per_node` bytes/s each (0 when
/// the throughput is unknown).
pub(super) fn ideal_seconds(total: u64, nodes: usize, per_node: f64) -> f64 {
    if per_node > 0.0 {
        total as f64 / (nodes as f64 * per_node)
    } else {
        0.0
    }
}

pub(super) fn per_node_throughput(run: &ModeRun) -> f64 {
    let moving: f64 = run.restores.iter().map(RestoreTiming::moving).sum();
    if moving > 0.0 {
        run.total_bytes() as f64 / moving
    } else {
        0.0
    }
}

/// Whether no two of the run's data movements overlapped in time.
pub(super) fn movements_ran_alone(run: &ModeRun) -> bool {
    let mut spans: Vec<(f64, f64)> = run
        .restores
        .iter()
        .map(|r| (r.move_start, r.move_end))
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    spans.windows(2).all(|w| w[0].1 <= w[1].0)
}

pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// Seconds a restore spent in one phase.
pub(super) type PhaseTime = fn(&RestoreTiming) -> f64;

/// The restore phases the figures show.
const RESTORE_PHASES: &[(&str, PhaseTime)] = &[
    ("  waiting", RestoreTiming::waiting),
    ("  exposing", RestoreTiming::exposing),
    ("  moving data", RestoreTiming::moving),
    ("  rebinding", RestoreTiming::rebinding),
];

/// One row of a side-by-side table: the label, then a fixed-width cell per column.
fn table_row(out: &mut String, name: &str, cells: impl IntoIterator<Item = String>) {
    let _ = write!(out, "{name:<26}");
    for cell in cells {
        let _ = write!(out, "{cell:<28}");
    }
    out.push('\n');
}

/// Each run's makespan against the first's: `1.27×`, or `-` for an empty run.
fn speedups(runs: &[ModeRun]) -> impl Iterator<Item = String> + '_ {
    let baseline = runs.first().map_or(0.0, ModeRun::makespan);
    runs.iter().map(move |r| match r.makespan() {
        m if m > 0.0 => format!("{:.2}×", baseline / m),
        _ => "-".into(),
    })
}

/// Per `unit`, the median (min – max) of each phase and of the data mover's rate.
fn spread_rows(out: &mut String, runs: &[&ModeRun], unit: &str, phases: &[(&str, PhaseTime)]) {
    let _ = writeln!(out, "per {unit}, median (min – max):");
    for (name, phase) in phases {
        table_row(
            out,
            name,
            runs.iter().map(|r| {
                let s = Spread::of(r.restores.iter().map(phase));
                format!("{:.2} s ({:.2} – {:.2})", s.median, s.min, s.max)
            }),
        );
    }
    table_row(
        out,
        "  data mover rate",
        runs.iter().map(|r| {
            let s = Spread::of(r.restores.iter().map(|t| t.throughput() / MIB));
            format!("{:.0} MiB/s ({:.0} – {:.0})", s.median, s.min, s.max)
        }),
    );
}

/// The runs side by side: makespans (and the speedup over the first), the ideal and the
/// ratio, the overall throughput, then per `unit` the median (min – max) of each phase and of
/// the data mover's rate.
pub(super) fn comparison_table(
    out: &mut String,
    runs: &[ModeRun],
    ideal: f64,
    unit: &str,
    phases: &[(&str, PhaseTime)],
    speedup: bool,
) {
    table_row(out, "", runs.iter().map(|r| r.name.clone()));
    table_row(
        out,
        "makespan",
        runs.iter().map(|r| human_seconds(r.makespan())),
    );
    if speedup && let Some(baseline) = runs.first() {
        table_row(
            out,
            &format!("speedup over {}", baseline.name),
            speedups(runs),
        );
    }
    table_row(out, "ideal", runs.iter().map(|_| human_seconds(ideal)));
    table_row(
        out,
        "makespan / ideal",
        runs.iter().map(|r| {
            if ideal > 0.0 {
                format!("{:.2}×", r.makespan() / ideal)
            } else {
                "-".into()
            }
        }),
    );
    table_row(
        out,
        "overall throughput",
        runs.iter().map(report::overall_throughput),
    );
    spread_rows(out, &runs.iter().collect::<Vec<_>>(), unit, phases);
}

/// The orchestration overhead the bench aims at with ignoreDelayBinding: makespan / measured
/// ideal.
const OVERHEAD_GOAL: f64 = 1.10;

/// Above this ratio of its slowest to its fastest measurement the ideal gets a warning.
const IDEAL_SPREAD_WARNING: f64 = 1.2;

/// How the ideal was measured: `; the faster of two runs, 6.32 s before the restores and 6.80 s
/// after` (nothing for one run).
fn measurements(ideal: &Ideal) -> String {
    match ideal.makespans.as_slice() {
        [before, after] => format!(
            "; the faster of two runs, {} before the restores and {} after",
            human_seconds(*before),
            human_seconds(*after)
        ),
        [] | [_] => String::new(),
        all => format!(
            "; the fastest of {} runs ({})",
            all.len(),
            seconds_list(all)
        ),
    }
}

/// `2.50 s, 2.60 s, 2.70 s`.
fn seconds_list(all: &[f64]) -> String {
    all.iter()
        .map(|s| human_seconds(*s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `makespan / ideal` rounded to the two decimals shown, so the verdict agrees with the text
/// (None when the ideal is unknown).
fn overhead(makespan: f64, ideal: f64) -> Option<f64> {
    (ideal > 0.0).then(|| (makespan / ideal * 100.0).round() / 100.0)
}

/// The modes and the measured ideal side by side: makespans, the speedup over the first mode,
/// the orchestration overhead (makespan / measured ideal), the overall throughput, then per
/// restore the median (min – max) of each phase and of the data mover's rate.
fn overhead_table(out: &mut String, runs: &[ModeRun], ideal: &Ideal) {
    let measured = ideal.makespan();
    let all: Vec<&ModeRun> = runs.iter().chain([&ideal.run]).collect();
    table_row(out, "", all.iter().map(|r| r.name.clone()));
    table_row(
        out,
        "makespan",
        all.iter().map(|r| human_seconds(r.makespan())),
    );
    if let Some(baseline) = runs.first() {
        table_row(
            out,
            &format!("speedup over {}", baseline.name),
            speedups(runs).chain(["-".to_string()]),
        );
    }
    table_row(
        out,
        "orchestration overhead",
        runs.iter()
            .map(|r| overhead(r.makespan(), measured).map_or("-".into(), |o| format!("{o:.2}×")))
            .chain(["(the measured ideal)".to_string()]),
    );
    table_row(
        out,
        "overall throughput",
        all.iter().map(|r| report::overall_throughput(r)),
    );
    spread_rows(out, &all, "restore", RESTORE_PHASES);
}

/// The figures: the per-volume table of the demo's report, then the modes beside the measured
/// ideal with each mode's orchestration overhead, how the ideal was measured, the goal, and
/// the ideal computed for a CPU per node.
/// `idb_makespans`: every ignoreDelayBinding run's, of which `runs` holds the fastest.
fn render_figures(
    runs: &[ModeRun],
    ideal: &Ideal,
    files: usize,
    cpus: usize,
    idb_makespans: &[f64],
) -> String {
    let mut out = report::render_report(runs);
    let Some(baseline) = runs.first() else {
        return out;
    };
    let total = baseline.total_bytes();
    let nodes = ideal.slots.len();
    let measured = ideal.makespan();

    let _ = writeln!(
        out,
        "\n{} volumes, {} in {files} files, on {nodes} nodes\n",
        baseline.restores.len(),
        human_bytes(total)
    );
    overhead_table(&mut out, runs, ideal);
    let _ = writeln!(
        out,
        "\norchestration overhead = makespan / measured ideal. The measured ideal, {}, is what \
         this machine can do: the restore pods' own data mover (`ferry data-mover restore` with \
         the arguments ferry's controller gives a restore pod) run as local processes without \
         the controller, {} at a time ({} slots: the run's loadConcurrency, every volume spread \
         over the nodes), from the same repository and snapshots into fresh directories, every \
         byte verified{}. Waiting there is waiting for a free slot.",
        human_seconds(measured),
        ideal.concurrency(),
        ideal.slots_words(),
        measurements(ideal)
    );
    if ideal.spread() > IDEAL_SPREAD_WARNING {
        let _ = writeln!(
            out,
            "warning: the slower measurement of the ideal took {:.2}× the faster: this machine's \
             load changed during the run, so the overheads are uncertain; run again on a quiet \
             machine.",
            ideal.spread()
        );
    }
    if let Some(run) = runs
        .iter()
        .find(|r| r.name == Mode::IgnoreDelayBinding.name())
    {
        let verdict = match overhead(run.makespan(), measured) {
            Some(o) if o <= OVERHEAD_GOAL => format!("met ({o:.2}×)"),
            Some(o) => format!("not met ({o:.2}×)"),
            None => "not known (no ideal measured)".into(),
        };
        let _ = writeln!(
            out,
            "goal: orchestration overhead ≤ {OVERHEAD_GOAL:.2}× with ignoreDelayBinding{}: \
             {verdict}",
            match idb_makespans {
                [first, second] => format!(
                    " (the faster of two runs, {} after the default mode's and {} after the \
                     second ideal)",
                    human_seconds(*first),
                    human_seconds(*second)
                ),
                [] | [_] => String::new(),
                all => format!(
                    " (the fastest of {} runs, each after an ideal's but the first: {})",
                    all.len(),
                    seconds_list(all)
                ),
            }
        );
    }

    let lone = per_node_throughput(baseline);
    let per_cpu = ideal_seconds(total, nodes, lone);
    if per_cpu > 0.0 {
        let _ = writeln!(
            out,
            "ideal with a CPU per node (computed, not measured): total bytes / (nodes × lone data \
             mover rate) = {} / ({nodes} × {:.1} MiB/s) = {}, the lone rate being all bytes over \
             all moving-data time of the {} {} restores, which ran one after another{}. The \
             measured ideal is {:.2}× that{}.",
            human_bytes(total),
            lone / MIB,
            human_seconds(per_cpu),
            baseline.restores.len(),
            baseline.name,
            if movements_ran_alone(baseline) {
                ", each alone in the cluster"
            } else {
                " (some overlapped: the rate is a lower bound)"
            },
            measured / per_cpu,
            if cpus < nodes {
                format!(
                    ": the {nodes} simulated nodes share {} (decryption, decompression, \
                     hashing); on a cluster each node brings its own",
                    cpu_split::count_words(cpus)
                )
            } else {
                String::new()
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::demo::timings::RunKind;

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
            kind: RunKind::Restore,
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

    /// The data movers alone on 2 nodes × 1 slot: two at a time, each 100 MiB in 1.25 s
    /// (80 MiB/s: sharing the CPUs, slower than the default run's lone 100 MiB/s); makespan
    /// 2.5 s.
    fn ideal() -> Ideal {
        let nodes = vec!["node-1".to_string(), "node-2".to_string()];
        let restores = (0..4)
            .map(|i| {
                let t = (i / 2) as f64 * 1.25;
                restore(
                    &format!("v{i}"),
                    &nodes[i % 2],
                    [0.0, t, t, t, t + 1.25, t + 1.25],
                    100,
                )
            })
            .collect();
        Ideal {
            run: ModeRun {
                name: ideal::NAME.into(),
                description: String::new(),
                kind: RunKind::Restore,
                nodes: nodes.clone(),
                restores,
            },
            slots: nodes.into_iter().map(|n| (n, 1)).collect(),
            makespans: vec![2.5, 2.6],
            cpu: None,
        }
    }

    /// The last line of `text` starting with `name` (the demo's table comes first), its
    /// words joined by single spaces.
    fn line(text: &str, name: &str) -> String {
        text.lines()
            .rev()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("a {name} line in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// CPU seconds over `wall`: the machine's, the data movers', the controller's and the
    /// control plane's.
    fn used(
        wall: f64,
        machine: f64,
        data_movers: f64,
        controller: Option<f64>,
        control_plane: f64,
    ) -> CpuUse {
        CpuUse {
            wall,
            machine,
            data_movers,
            controller,
            control_plane: Some(control_plane),
        }
    }

    #[test]
    fn the_cpu_table_says_who_used_the_machine_and_what_it_costs_in_makespan() {
        let cpu = [
            Some(used(7.8, 6.0, 3.0, Some(0.3), 2.0)),
            Some(used(2.9, 5.5, 3.1, Some(0.2), 1.6)),
        ];
        let measured = Ideal {
            cpu: Some(used(2.5, 4.8, 3.0, None, 0.4)),
            ..ideal()
        };
        let text = cpu_table::render_cpu(&runs(), &cpu, &measured, 2, None);
        assert!(text.contains("this machine's 2 CPUs"), "{text}");
        assert_eq!(
            line(&text, "  the whole machine"),
            "the whole machine 6.00 s (38% busy) 5.50 s (95% busy) 4.80 s (96% busy)"
        );
        assert_eq!(
            line(&text, "  data movers"),
            "data movers 3.00 s 3.10 s 3.00 s"
        );
        assert_eq!(
            line(&text, "  ferry's controller"),
            "ferry's controller 0.30 s 0.20 s -"
        );
        assert_eq!(
            line(&text, "  control plane"),
            "control plane 2.00 s 1.60 s 0.40 s"
        );
        assert_eq!(line(&text, "  the rest"), "the rest 0.70 s 0.60 s 1.40 s");
        assert!(
            text.contains("the control plane: etcd, kube-apiserver"),
            "{text}"
        );
        // ignoreDelayBinding: 0.7 CPU-s more than the ideal, 0.35 s on 2 CPUs, against its
        // makespan's 2.9 s − 2.5 s.
        let beyond = line(&text, "ignoreDelayBinding: ");
        assert!(
            beyond.contains(
                "95% busy; it used 0.70 CPU-seconds more than the data movers alone (control \
                 plane +1.20, ferry's controller +0.20, data movers +0.10, the rest −0.80), \
                 0.35 s on 2 CPUs, against the 0.40 s by which its makespan exceeds the \
                 measured ideal"
            ),
            "{beyond}"
        );
        // A makespan within the ideal's needs no explaining.
        let within = Ideal {
            run: runs().remove(1),
            ..measured
        };
        let text = cpu_table::render_cpu(&runs(), &cpu, &within, 2, None);
        assert!(text.contains("  the whole machine"), "{text}");
        assert!(!text.contains("ignoreDelayBinding: "), "{text}");
        // kubesim: no control plane to name, in the table or its legend.
        let no_plane = |c: &Option<CpuUse>| {
            c.map(|c| CpuUse {
                control_plane: None,
                ..c
            })
        };
        let kubesim = Ideal {
            cpu: no_plane(&measured.cpu),
            ..ideal()
        };
        let text = cpu_table::render_cpu(&runs(), &cpu.map(|c| no_plane(&c)), &kubesim, 2, None);
        assert!(text.contains("  the rest"), "{text}");
        assert!(!text.contains("control plane"), "{text}");
        // Nothing measured (no /proc): no table.
        assert_eq!(
            cpu_table::render_cpu(&runs(), &[None, None], &ideal(), 2, None),
            ""
        );
    }

    #[test]
    fn with_the_control_plane_on_cpus_of_its_own_only_the_nodes_cpus_count_beyond_the_ideal() {
        let cpu = [
            Some(used(7.8, 6.0, 3.0, Some(0.3), 2.0)),
            Some(used(2.9, 5.5, 3.1, Some(0.2), 1.2)),
        ];
        let measured = Ideal {
            cpu: Some(used(2.5, 4.6, 3.0, None, 0.4)),
            ..ideal()
        };
        let split = CpuSplit::for_test(&[0], &[1]);
        let text = cpu_table::render_cpu(&runs(), &cpu, &measured, 1, Some(&split));
        assert!(
            text.contains(
                "this machine's 2 CPUs: the control plane on CPU 1 of its own, the simulated \
                 nodes (and so the data movers and ferry's controller) on CPU 0;"
            ),
            "{text}"
        );
        // Busy over the whole machine's 2 CPUs, not the nodes' one.
        assert_eq!(
            line(&text, "  the whole machine"),
            "the whole machine 6.00 s (38% busy) 5.50 s (95% busy) 4.60 s (92% busy)"
        );
        // Outside the control plane: 5.5 − 1.2 = 4.3 against 4.6 − 0.4 = 4.2, 0.1 CPU-s on the
        // nodes' one CPU.
        let beyond = line(&text, "ignoreDelayBinding: ");
        assert!(
            beyond.contains(
                "outside the control plane (on its own CPUs) it used 0.10 CPU-seconds more than \
                 the data movers alone (ferry's controller +0.20, data movers +0.10, the rest \
                 −0.20), 0.10 s on the nodes' 1 CPU, against the 0.40 s by which its makespan \
                 exceeds the measured ideal."
            ),
            "{beyond}"
        );
        assert!(!beyond.contains("control plane +"), "{beyond}");
    }

    #[test]
    fn more_runs_are_all_named_beside_the_fastest_that_counts() {
        let measured = Ideal {
            makespans: vec![2.6, 2.5, 2.7],
            ..ideal()
        };
        let text = render_figures(&runs(), &measured, 40, 8, &[3.1, 2.9, 3.0]);
        assert!(
            text.contains("every byte verified; the fastest of 3 runs (2.60 s, 2.50 s, 2.70 s)."),
            "{text}"
        );
        let goal = line(&text, "goal:");
        assert!(
            goal.contains(
                "(the fastest of 3 runs, each after an ideal's but the first: 3.10 s, 2.90 s, \
                 3.00 s): not met (1.16×)"
            ),
            "{goal}"
        );
    }

    #[test]
    fn runs_are_counted_from_one() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: BenchRestoreArgs,
        }
        assert_eq!(Cli::try_parse_from(["bench"]).unwrap().args.runs, 2);
        assert_eq!(
            Cli::try_parse_from(["bench", "--runs", "5"])
                .unwrap()
                .args
                .runs,
            5
        );
        assert!(Cli::try_parse_from(["bench", "--runs", "0"]).is_err());
    }

    #[test]
    fn figures_compare_each_mode_with_the_ideal() {
        let text = render_figures(&runs(), &ideal(), 40, 8, &[2.9, 3.1]);
        // Makespans 7.8 s and 2.9 s against the measured 2.5 s.
        assert_eq!(line(&text, "makespan "), "makespan 7.80 s 2.90 s 2.50 s");
        assert_eq!(
            line(&text, "orchestration overhead  "),
            "orchestration overhead 3.12× 1.16× (the measured ideal)"
        );
        assert_eq!(line(&text, "speedup"), "speedup over default 1.00× 2.69× -");
        // The ideal queues v2 and v3 for 1.25 s and moves each in 1.25 s, nothing else.
        assert_eq!(
            line(&text, "  waiting"),
            "waiting 3.50 s (0.50 – 6.50) 0.85 s (0.10 – 1.60) 0.62 s (0.00 – 1.25)"
        );
        assert_eq!(
            line(&text, "  moving data"),
            "moving data 1.00 s (1.00 – 1.00) 1.00 s (1.00 – 1.00) 1.25 s (1.25 – 1.25)"
        );
        assert_eq!(
            line(&text, "  rebinding"),
            "rebinding 0.10 s (0.10 – 0.10) 0.10 s (0.10 – 0.10) 0.00 s (0.00 – 0.00)"
        );
        assert_eq!(
            line(&text, "  data mover rate"),
            "data mover rate 100 MiB/s (100 – 100) 100 MiB/s (100 – 100) 80 MiB/s (80 – 80)"
        );
        assert!(
            text.contains("The measured ideal, 2.50 s, is what this machine can do"),
            "{text}"
        );
        assert!(text.contains("2 at a time (2 nodes × 1 slots"), "{text}");
        assert!(
            text.contains(
                "every byte verified; the faster of two runs, 2.50 s before the restores and \
                 2.60 s after."
            ),
            "{text}"
        );
        assert!(!text.contains("warning:"), "{text}");
        let mut disturbed = ideal();
        disturbed.makespans = vec![2.5, 3.25];
        assert!(
            render_figures(&runs(), &disturbed, 40, 8, &[])
                .contains("warning: the slower measurement of the ideal took 1.30× the faster"),
        );
        assert_eq!(
            line(&text, "goal:"),
            "goal: orchestration overhead ≤ 1.10× with ignoreDelayBinding (the faster of two \
             runs, 2.90 s after the default mode's and 3.10 s after the second ideal): not met \
             (1.16×)"
        );
        // 400 MiB / (2 nodes × 100 MiB/s) = 2 s with a CPU per node; 2.5 s measured.
        assert!(
            text.contains(
                "= 400.0 MiB / (2 × 100.0 MiB/s) = 2.00 s, the lone rate being all bytes over all \
                 moving-data time of the 4 default restores, which ran one after another, each \
                 alone in the cluster. The measured ideal is 1.25× that."
            ),
            "{text}"
        );
        assert!(!text.contains("simulated nodes share"), "8 CPUs: {text}");
        assert!(
            render_figures(&runs(), &ideal(), 40, 1, &[])
                .contains("1.25× that: the 2 simulated nodes share 1 CPU (decryption")
        );
    }

    #[test]
    fn the_goal_is_met_within_ten_percent_of_the_measured_ideal() {
        // ignoreDelayBinding two at a time, the second pair from 1.3 s: done at 2.75 s = 1.10×.
        let runs = vec![
            run("default", |i| i as f64 * 2.0 + 0.5),
            run("ignoreDelayBinding", |i| (i / 2) as f64 * 1.3 + 0.15),
        ];
        let text = render_figures(&runs, &ideal(), 40, 8, &[]);
        assert_eq!(
            line(&text, "goal:"),
            "goal: orchestration overhead ≤ 1.10× with ignoreDelayBinding: met (1.10×)"
        );
        assert_eq!(overhead(2.76, 2.5), Some(1.1));
        assert_eq!(overhead(2.77, 2.5), Some(1.11));
        assert_eq!(overhead(1.0, 0.0), None);
    }

    #[test]
    fn the_comparison_puts_each_cluster_side_by_side_with_the_ratio() {
        let cost = |requests: usize, mib: u64| ModeCost {
            requests,
            peak_rss: Some(mib * 1024 * 1024),
            cpu: None,
        };
        let results = [
            ClusterRun {
                backend: Backend::Kubesim,
                runs: vec![run("default", |i| i as f64)],
                costs: vec![cost(40, 20)],
                ideal: 2.15,
            },
            ClusterRun {
                backend: Backend::Real,
                runs: vec![run("default", |i| 3.0 * i as f64)],
                costs: vec![cost(80, 30)],
                ideal: 5.15,
            },
        ];
        let text = render_comparison(&results);
        assert!(text.contains("kubesim") && text.contains("real"), "{text}");
        // 4 restores: 10 and 20 requests per restore.
        let requests = text
            .lines()
            .find(|l| l.contains("requests per restore"))
            .unwrap();
        assert!(
            requests.contains("10.0") && requests.contains("20.0"),
            "{requests}"
        );
        // Makespans 4.3 s and 10.3 s, ideals 2.15 s and 5.15 s.
        assert!(text.contains("real / kubesim makespan = 2.40×"), "{text}");
        let overheads = text
            .lines()
            .find(|l| l.starts_with("default orchestration overhead"))
            .unwrap();
        assert!(overheads.matches("2.00×").count() == 2, "{overheads:?}");
        assert!(
            text.contains("measured ideal (data movers alone)") && text.contains("5.15 s"),
            "{text}"
        );
        let costs = render_costs(&results[1].runs, &results[1].costs);
        assert!(
            costs.contains("80 API requests (20.0 per restore), peak RSS 30.0 MiB"),
            "{costs}"
        );
    }
}
