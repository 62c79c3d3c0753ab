//! `ferry bench backup`: the backup makespan of a StatefulSet's volumes through ferry's
//! DataUpload controller (its own `ferry controller` process) on a simulated cluster, or the
//! real control plane, against the ideal for the nodes; and the data mover's backup rate
//! against `restic backup` of the same volumes, measured in the same run.
//!
//! Three passes over the same running workload:
//! 1. **one at a time**: a VolumeSnapshot and DataUpload per volume, each created once the
//!    previous completed, so each data mover runs alone in the cluster: its rate is what one
//!    node achieves on its own (the per-node throughput);
//! 2. **restic**: `restic backup` of each volume's directory, one after another, into a new
//!    restic repository: the peer for the data mover's rate;
//! 3. **all at once**: every DataUpload created at once, as Velero's backup does, to a second
//!    BackupStorageLocation (a new repository, so nothing is incremental against pass 1):
//!    its makespan against the ideal, total bytes / (nodes × per-node throughput).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use ferry_controller::install::CONTROLLER_NAME;
use kube::api::{Api, DynamicObject};
use testenv::TestCluster;

use super::repo::measure;
use super::restore::{
    ClusterChoice, MIB, PhaseTime, comparison_table, cpus, ideal_seconds, movements_ran_alone,
    per_node_throughput,
};
use crate::commands::demo::backup;
use crate::commands::demo::backup_run::{self, Pass};
use crate::commands::demo::controller::{self, Placement};
use crate::commands::demo::kube_ops;
use crate::commands::demo::layout::Layout;
use crate::commands::demo::objects::{self, FERRY_NAMESPACE};
use crate::commands::demo::report;
use crate::commands::demo::scenario::{self, RESTORE_TIMEOUT, Written};
use crate::commands::demo::size;
use crate::commands::demo::timeline::TimelineInput;
use crate::commands::demo::timings::{ModeRun, RestoreTiming, human_seconds};
use crate::commands::demo::workload;
use ferry_text::human_bytes;

#[derive(clap::Args, Debug)]
pub struct BenchBackupArgs {
    /// Nodes of the simulated cluster.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Volumes to back up (one per StatefulSet pod).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub volumes: u16,
    /// Data in all volumes together, e.g. 1GiB or 512MiB.
    #[arg(long, default_value = "1GiB", value_parser = size::parse_size)]
    pub size: u64,
    /// Keep the run here: the figures (report.txt), the timeline picture, the repositories
    /// and the cluster's files. Default: a temporary directory, removed at the end.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the workload's data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The cluster: kubesim (in this process), the real control plane (built by
    /// testenv/build; Go needed the first time) with kubesim's nodes attached, or both.
    #[arg(long, value_enum, default_value_t = ClusterChoice::Kubesim)]
    pub cluster: ClusterChoice,
}

/// The second location, for the all-at-once pass: its own prefix, so its own repository.
const ALL_AT_ONCE_LOCATION: &str = "all-at-once";
const ALL_AT_ONCE_PREFIX: &str = "backups-all-at-once";

/// What one cluster's run measured.
struct Measured {
    one_at_a_time: ModeRun,
    all_at_once: ModeRun,
    /// `restic backup` of each volume, one after another: wall seconds and CPU seconds.
    restic_wall: f64,
    restic_cpu: f64,
    files: usize,
    /// The controller process over both passes.
    requests: usize,
    peak_rss: Option<u64>,
}

pub(super) async fn bench_backup(args: BenchBackupArgs) -> anyhow::Result<ExitCode> {
    ensure_restic()?;
    let nodes = usize::from(args.nodes);
    let volumes = usize::from(args.volumes);
    let (root, temporary) = super::run_root(args.out.as_deref(), "backup");
    let backends = args.cluster.backends();
    let started = Instant::now();
    for backend in backends.iter().copied() {
        let root = if backends.len() > 1 {
            root.join(backend.name())
        } else {
            root.clone()
        };
        let layout = Layout::prepare(&root)?;
        println!(
            "ferry bench backup: {volumes} volumes ({}) on {nodes} nodes ({}), backed up through \
             ferry's DataUpload controller one at a time and all at once, and by restic\n",
            human_bytes(args.size),
            super::restore::cluster_words(backend)
        );
        let cluster = scenario::start_cluster(&layout, nodes, backend).await?;
        let measured = measure_cluster(&cluster, &layout, nodes, volumes, &args).await;
        cluster.stop().await;
        let measured = measured?;
        let text = render_figures(&measured, nodes, cpus());
        println!("\n{text}");
        if args.out.is_some() {
            let input = TimelineInput {
                title: format!(
                    "ferry bench backup: {volumes} volumes ({}) on {nodes} nodes, {}",
                    human_bytes(measured.all_at_once.total_bytes()),
                    backend.name()
                ),
                subtitle: format!(
                    "Backed up through ferry's DataUpload controller on {}",
                    super::restore::cluster_words(backend)
                ),
                modes: vec![measured.one_at_a_time.clone(), measured.all_at_once.clone()],
            };
            layout.write_report_and_timeline(&text, &input)?;
        }
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn ensure_restic() -> anyhow::Result<()> {
    match Command::new("restic").arg("version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!(
            "`restic` is not on PATH: the benchmark measures the data mover against it \
             (Debian: apt-get install restic)"
        ),
    }
}

async fn measure_cluster(
    cluster: &TestCluster,
    layout: &Layout,
    nodes: usize,
    volumes: usize,
    args: &BenchBackupArgs,
) -> anyhow::Result<Measured> {
    let client = cluster.client();
    let plans = workload::plan_workload(volumes, args.size, args.seed);
    // The controller's service account first: its kubeconfig runs the controller process.
    controller::install(&client).await?;
    let kubeconfig = cluster
        .service_account_kubeconfig(FERRY_NAMESPACE, CONTROLLER_NAME)
        .await?;
    let user = testenv::service_account_user(FERRY_NAMESPACE, CONTROLLER_NAME);
    let written = Written::create(&client, layout, nodes, plans).await?;
    second_location(&client, layout).await?;

    let before = cluster.requests_of(&user)?;
    let log = layout.controller_log("backup");
    let controller = scenario::start_backup_controller(
        &client,
        Placement::Process {
            kubeconfig: &kubeconfig,
            log: &log,
        },
    )
    .await?;
    let passes = async {
        let one = Pass {
            name: "one at a time".into(),
            description: "each DataUpload alone in the cluster".into(),
            location: objects::LOCATION.into(),
            suffix: "alone".into(),
            one_at_a_time: true,
        };
        let one_at_a_time = backup_run::run_backups(
            &client,
            &written.plans,
            &written.nodes,
            &one,
            RESTORE_TIMEOUT,
        )
        .await?;
        backup_run::delete_snapshots(&client, &written.plans, &one).await?;

        let (restic_wall, restic_cpu) = restic_backups(layout, &written.volume_dirs).await?;

        let all = Pass {
            name: "all at once".into(),
            description: "every DataUpload at once, as Velero creates them".into(),
            location: ALL_AT_ONCE_LOCATION.into(),
            suffix: "all".into(),
            one_at_a_time: false,
        };
        let all_at_once = backup_run::run_backups(
            &client,
            &written.plans,
            &written.nodes,
            &all,
            RESTORE_TIMEOUT,
        )
        .await?;
        backup_run::delete_snapshots(&client, &written.plans, &all).await?;
        anyhow::Ok((one_at_a_time.run, all_at_once.run, restic_wall, restic_cpu))
    }
    .await;
    let peak_rss = controller.stop().await;
    let (one_at_a_time, all_at_once, restic_wall, restic_cpu) = passes?;
    let requests = cluster.requests_of(&user)? - before;
    Ok(Measured {
        one_at_a_time,
        all_at_once,
        restic_wall,
        restic_cpu,
        files: written.files,
        requests,
        peak_rss,
    })
}

/// A second BackupStorageLocation beside the default one, with a repository of its own.
async fn second_location(client: &kube::Client, layout: &Layout) -> anyhow::Result<()> {
    let mut location = objects::backup_storage_location(&layout.location().to_string_lossy());
    location.metadata.name = Some(ALL_AT_ONCE_LOCATION.into());
    location.data["spec"]["objectStorage"]["prefix"] = ALL_AT_ONCE_PREFIX.into();
    let locations: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        FERRY_NAMESPACE,
        &objects::location_resource(),
    );
    kube_ops::apply(&locations, &location)
        .await
        .context("creating the second BackupStorageLocation")?;
    // Created up front, as Velero's repository ensurer does: the data movers find it.
    let repository = layout
        .location()
        .join(objects::LOCATION_BUCKET)
        .join(ALL_AT_ONCE_PREFIX)
        .join(ferry_mover::REPOSITORY_DIR)
        .join(objects::WORKLOAD_NAMESPACE);
    backup::init_repository(&repository).await?;
    Ok(())
}

/// `restic backup` of each volume directory, one after another, into a new repository;
/// returns the summed wall and CPU seconds of the backups (not the init).
async fn restic_backups(layout: &Layout, dirs: &[PathBuf]) -> anyhow::Result<(f64, f64)> {
    let work = layout.root.join("restic");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let dirs = dirs.to_vec();
    let total = dirs.len();
    println!("  … restic backup of the same {total} volumes, one after another");
    tokio::task::spawn_blocking(move || {
        let restic = |cwd: &Path| {
            let mut c = Command::new("restic");
            c.current_dir(cwd)
                .env("RESTIC_PASSWORD", backup::REPOSITORY_PASSWORD)
                .env("RESTIC_CACHE_DIR", work.join("cache"))
                .env_remove("RESTIC_REPOSITORY")
                .env_remove("RESTIC_PASSWORD_FILE");
            c
        };
        let repo = work.join("repository");
        let repo_arg = repo.to_string_lossy().to_string();
        measure(
            restic(&work).args(["init", "-r", &repo_arg, "--repository-version", "2"]),
            "restic init",
            &work,
        )?;
        let (mut wall, mut cpu) = (0.0, 0.0);
        for dir in &dirs {
            // Relative to the volume, as the data mover stores a volume's root.
            let m = measure(
                restic(dir).args([
                    "-r",
                    &repo_arg,
                    "backup",
                    "-q",
                    "--compression",
                    "auto",
                    "--host",
                    "ferry-bench",
                    ".",
                ]),
                "restic backup",
                &work,
            )?;
            wall += m.wall;
            cpu += m.cpu;
        }
        anyhow::Ok((wall, cpu))
    })
    .await
    .context("the restic runner panicked")?
}

/// The backup phases the figures show (a backup has nothing to rebind).
const BACKUP_PHASES: &[(&str, PhaseTime)] = &[
    ("  waiting", RestoreTiming::waiting),
    ("  exposing", RestoreTiming::exposing),
    ("  moving data", RestoreTiming::moving),
];

fn render_figures(m: &Measured, nodes: usize, cpus: usize) -> String {
    let runs = [m.one_at_a_time.clone(), m.all_at_once.clone()];
    let mut out = report::render_report(&runs);
    let total = m.all_at_once.total_bytes();
    let per_node = per_node_throughput(&m.one_at_a_time);
    let ideal = ideal_seconds(total, nodes, per_node);
    let _ = writeln!(
        out,
        "\n{} volumes, {} in {} files, on {nodes} nodes\n",
        m.all_at_once.restores.len(),
        human_bytes(total),
        m.files
    );
    comparison_table(&mut out, &runs, ideal, "backup", BACKUP_PHASES, false);
    let _ = writeln!(
        out,
        "\nper-node throughput: {:.1} MiB/s, the data mover's rate in this run: all bytes over \
         all moving-data time (backup pod running → DataUpload completed) of the {} \
         one-at-a-time backups{}.",
        per_node / MIB,
        m.one_at_a_time.restores.len(),
        if movements_ran_alone(&m.one_at_a_time) {
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
    let restic_rate = if m.restic_wall > 0.0 {
        m.one_at_a_time.total_bytes() as f64 / m.restic_wall
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "\nthe data mover against restic, the same {} volumes one after another:",
        m.one_at_a_time.restores.len()
    );
    let _ = writeln!(
        out,
        "  ferry's data mover     {:>8.1} MiB/s  (bytes over moving-data time, one at a time)",
        per_node / MIB
    );
    let _ = writeln!(
        out,
        "  restic backup          {:>8.1} MiB/s  ({} in {}, CPU {}; process start to exit)",
        restic_rate / MIB,
        human_bytes(m.one_at_a_time.total_bytes()),
        human_seconds(m.restic_wall),
        human_seconds(m.restic_cpu)
    );
    if restic_rate > 0.0 {
        let _ = writeln!(
            out,
            "  ferry / restic         {:>8.2}×",
            per_node / restic_rate
        );
    }
    let backups = runs.iter().map(|r| r.restores.len()).sum::<usize>().max(1);
    let _ = writeln!(
        out,
        "\nthe controller process (ferry-controller's service account), both passes: {} API \
         requests ({:.1} per backup), peak RSS {}",
        m.requests,
        m.requests as f64 / backups as f64,
        m.peak_rss.map_or("-".into(), human_bytes)
    );
    if cpus < nodes {
        let _ = writeln!(
            out,
            "note: the {nodes} simulated nodes share this machine's {cpus} CPUs, so parallel \
             backups share them (chunking, hashing, compression, encryption) and cannot reach \
             the ideal here; on a cluster each node brings its own CPUs, disks and network."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::demo::timings::RunKind;

    /// Four backups of 100 MiB on two nodes, each moving for 1 s after 0.2 s of exposing;
    /// `start` gives when backup i is accepted.
    fn run(name: &str, start: impl Fn(usize) -> f64) -> ModeRun {
        let nodes = vec!["node-1".to_string(), "node-2".to_string()];
        let restores = (0..4)
            .map(|i| {
                let t = start(i);
                RestoreTiming {
                    volume: format!("v{i}"),
                    node: nodes[i % 2].clone(),
                    wait_start: t,
                    wait_end: t,
                    expose_end: t + 0.2,
                    move_start: t + 0.2,
                    move_end: t + 1.2,
                    completed: t + 1.2,
                    bytes: 100 << 20,
                }
            })
            .collect();
        ModeRun {
            name: name.into(),
            description: String::new(),
            kind: RunKind::Backup,
            nodes,
            restores,
        }
    }

    fn measured() -> Measured {
        Measured {
            one_at_a_time: run("one at a time", |i| i as f64 * 1.5),
            all_at_once: run("all at once", |i| (i / 2) as f64 * 1.2),
            restic_wall: 8.0,
            restic_cpu: 6.0,
            files: 40,
            requests: 120,
            peak_rss: Some(30 << 20),
        }
    }

    #[test]
    fn figures_compare_the_makespan_with_the_ideal_and_the_mover_with_restic() {
        let text = render_figures(&measured(), 2, 8);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("a {name} line in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        // 400 MiB / (2 nodes × 100 MiB/s) = 2 s; makespans 5.7 s and 2.4 s.
        assert_eq!(line("ideal "), "ideal 2.00 s 2.00 s");
        assert_eq!(line("makespan /"), "makespan / ideal 2.85× 1.20×");
        assert!(text.contains("per-node throughput: 100.0 MiB/s"), "{text}");
        assert!(text.contains("each alone in the cluster"), "{text}");
        // restic: 400 MiB in 8 s = 50 MiB/s; the data mover 100 MiB/s.
        assert_eq!(line("  restic backup").split(' ').nth(2), Some("50.0"));
        assert_eq!(line("  ferry / restic"), "ferry / restic 2.00×");
        assert!(
            text.contains("120 API requests (15.0 per backup)"),
            "{text}"
        );
        // The backup table has no rebinding.
        assert!(!text.contains("rebind"), "{text}");
    }
}
