//! `ferry bench scale`: many DataDownloads on many nodes through ferry's DataDownload
//! controller (its own `ferry controller` process), on kubesim, the real control plane or
//! both: the makespan, DataDownloads per second, each DataDownload's phases from its status
//! timestamps, how evenly the restores spread over the nodes, and the controller's API
//! requests per DataDownload and peak memory.
//!
//! What is restored is deliberately tiny: one small volume backed up once, into a repository
//! whose key uses cheap scrypt parameters, and every DataDownload restores that snapshot into
//! a target claim of its own (created as Velero creates it). So the figures measure the
//! orchestration — the controller, the API server, the scheduler, the provisioner, the data
//! mover pods' start — not the data mover's throughput (`ferry bench restore` measures that)
//! or key derivation. `restorePVC.ignoreDelayBinding` is on: nothing waits for a workload.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_controller::crds::DataDownload;
use ferry_controller::install::CONTROLLER_NAME;
use ferry_repo::kdf::KdfParams;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use testenv::{Backend, TestCluster};

use super::restore::{ClusterChoice, Spread, cluster_words, cpus};
use crate::commands::demo::backup;
use crate::commands::demo::controller::{self, Placement};
use crate::commands::demo::kube_ops;
use crate::commands::demo::layout::Layout;
use crate::commands::demo::objects::{self, FERRY_NAMESPACE, WORKLOAD_NAMESPACE};
use crate::commands::demo::progress::Step;
use crate::commands::demo::scenario::{self, IMAGE};
use crate::commands::demo::timings::human_seconds;
use crate::commands::demo::verify::HashTree;
use crate::commands::demo::workload;
use ferry_text::human_bytes;

#[derive(clap::Args, Debug)]
pub struct BenchScaleArgs {
    /// DataDownloads to run, each restoring the same small snapshot into a target claim of
    /// its own.
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub data_downloads: u32,
    /// Nodes of the cluster (kubesim's nodes, also on the real control plane).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub nodes: u16,
    /// The cluster: kubesim (in this process), the real control plane (built by
    /// testenv/build; Go needed the first time) with kubesim's nodes attached, or both.
    #[arg(long, value_enum, default_value_t = ClusterChoice::Kubesim)]
    pub cluster: ClusterChoice,
    /// Data movements per node at once: the node-agent ConfigMap's
    /// loadConcurrency.globalConfig (Velero's default is 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub load_concurrency: u16,
    /// Keep the run here: the figures (report.txt), the controller's log, the repository and
    /// the cluster's files. Default: a temporary directory, removed at the end.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Give up on a cluster when its DataDownloads have not all ended after this many minutes.
    #[arg(long, default_value_t = 60)]
    pub timeout_minutes: u64,
}

/// The repository key's scrypt parameters: cheap (1 MiB, about a millisecond), so that a
/// thousand data movers opening the repository measure orchestration, not key derivation.
/// A repository made by `ferry repo init` or restic calibrates them to about 0.5 s.
const CHEAP_KDF: KdfParams = KdfParams {
    n: 1024,
    r: 8,
    p: 1,
};

/// The one volume backed up: a few small files.
const VOLUME_BYTES: u64 = 16 * 1024;

/// Objects created at once while setting up (claims, DataDownloads).
const CREATE_AT_ONCE: usize = 32;

/// Every `VERIFY_EVERY`th restored volume (and the last) is read back and compared.
const VERIFY_EVERY: usize = 50;

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The label on the bench's DataDownloads (objects::data_download's).
const DEMO_LABEL: &str = "ferry.dev/demo=true";

/// One DataDownload at its end, as the API server has it. Times are milliseconds since the
/// epoch, from the API's timestamps (whole seconds).
#[derive(Debug, Clone, PartialEq)]
struct Download {
    name: String,
    phase: String,
    message: Option<String>,
    node: Option<String>,
    created: Option<i64>,
    accepted: Option<i64>,
    started: Option<i64>,
    completed: Option<i64>,
}

impl Download {
    fn of(dd: &DataDownload) -> Download {
        let status = dd.status.clone().unwrap_or_default();
        let ms = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.map(|t| t.0.as_millisecond())
        };
        Download {
            name: dd.metadata.name.clone().unwrap_or_default(),
            phase: dd.phase().as_str().to_string(),
            message: status.message.clone(),
            node: status.node.clone().filter(|n| !n.is_empty()),
            created: ms(dd.metadata.creation_timestamp.as_ref()),
            accepted: ms(status.accepted_timestamp.as_ref()),
            started: ms(status.start_timestamp.as_ref()),
            completed: ms(status.completion_timestamp.as_ref()),
        }
    }
}

/// How the restores spread over the cluster's nodes.
#[derive(Debug, Clone, PartialEq)]
struct NodeSpread {
    /// Nodes that ran at least one restore.
    used: usize,
    /// Nodes of the cluster.
    nodes: usize,
    /// Restores per node over all the cluster's nodes (an idle node counts 0).
    per_node: Spread,
}

/// The figures of one cluster's run, from its DataDownloads.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    count: usize,
    /// First DataDownload created → last completed, seconds.
    makespan: f64,
    /// Per DataDownload, seconds.
    to_accepted: Spread,
    to_started: Spread,
    to_completed: Spread,
    /// Completions, seconds after the first creation.
    completions: Spread,
    nodes: NodeSpread,
}

impl Summary {
    fn per_second(&self) -> f64 {
        if self.makespan > 0.0 {
            self.count as f64 / self.makespan
        } else {
            0.0
        }
    }
}

/// What one cluster's run measured.
#[derive(Debug, Clone, PartialEq)]
struct Measured {
    backend: Backend,
    summary: Summary,
    /// Creating every DataDownload took this long (seconds).
    created_in: f64,
    /// Creation of the first DataDownload until the bench saw them all end (seconds).
    observed: f64,
    requests: usize,
    peak_rss: Option<u64>,
    /// Restored volumes read back and compared, and the files in each.
    verified: usize,
    files: usize,
}

/// Creates `count` objects made by `make(i)`, [`CREATE_AT_ONCE`] requests at a time.
async fn create_all<K>(
    api: &Api<K>,
    count: usize,
    what: &str,
    make: impl Fn(usize) -> K,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(0..count)
        .map(|i| {
            let object = make(i);
            async move {
                api.create(&PostParams::default(), &object)
                    .await
                    .with_context(|| format!("creating {what} {}", name(i)))
            }
        })
        .buffer_unordered(CREATE_AT_ONCE)
        .try_for_each(|_| async { Ok(()) })
        .await
}

pub(super) async fn bench_scale(args: BenchScaleArgs) -> anyhow::Result<ExitCode> {
    let (root, temporary) = super::run_root(args.out.as_deref(), "scale");
    let top = Layout::prepare(&root)?;
    let backends = args.cluster.backends();
    let started = Instant::now();
    let mut results = Vec::new();
    let mut report = String::new();
    for backend in backends.iter().copied() {
        let layout = if backends.len() > 1 {
            Layout::prepare(&root.join(backend.name()))?
        } else {
            top.clone()
        };
        println!(
            "ferry bench scale: {} DataDownloads on {} nodes ({}), through ferry's \
             DataDownload controller (restorePVC.ignoreDelayBinding, loadConcurrency {})\n",
            args.data_downloads,
            args.nodes,
            cluster_words(backend),
            args.load_concurrency
        );
        let cluster = scenario::start_cluster(&layout, usize::from(args.nodes), backend).await?;
        let measured = measure(&cluster, &layout, &args).await;
        cluster.stop().await;
        let measured = measured?;
        let text = render_figures(&measured, &args, cpus());
        println!("\n{text}");
        report.push_str(&text);
        report.push('\n');
        results.push(measured);
    }
    if results.len() > 1 {
        let text = render_comparison(&results);
        println!("{text}");
        report.push_str(&text);
    }
    if args.out.is_some() {
        std::fs::write(top.report(), &report)
            .with_context(|| format!("writing {}", top.report().display()))?;
        println!("Report: {}", top.report().display());
    } else if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// The DataDownload and its target claim for number `i`.
fn name(i: usize) -> String {
    format!("scale-{i:05}")
}

async fn measure(
    cluster: &TestCluster,
    layout: &Layout,
    args: &BenchScaleArgs,
) -> anyhow::Result<Measured> {
    let client = cluster.client();
    let count = args.data_downloads as usize;
    let nodes: Vec<String> = (1..=usize::from(args.nodes))
        .map(|i| format!("node-{i}"))
        .collect();

    let step = Step::start(format!(
        "installing ferry (CRDs, RBAC, location, repository secret), node-agent ConfigMap \
         (ignoreDelayBinding, loadConcurrency {})",
        args.load_concurrency
    ));
    scenario::configure(&client, layout).await?;
    kube_ops::apply(
        &Api::<ConfigMap>::namespaced(client.clone(), FERRY_NAMESPACE),
        &objects::node_agent_config_with(true, args.load_concurrency),
    )
    .await
    .context("writing the node-agent ConfigMap")?;
    let kubeconfig = cluster
        .service_account_kubeconfig(FERRY_NAMESPACE, CONTROLLER_NAME)
        .await?;
    step.done("");

    let step = Step::start(format!(
        "backing up one volume of {} into a repository keyed with cheap scrypt parameters \
         (N={} r={} p={}: the data movers measure orchestration, not key derivation)",
        human_bytes(VOLUME_BYTES),
        CHEAP_KDF.n,
        CHEAP_KDF.r,
        CHEAP_KDF.p
    ));
    let repository =
        backup::init_repository_with_kdf(&layout.repository(), Some(CHEAP_KDF)).await?;
    let plan = workload::plan_workload(1, VOLUME_BYTES, 1)
        .pop()
        .expect("one volume planned");
    let source = layout.root.join("source");
    let expected = {
        let (source, plan) = (source.clone(), plan.clone());
        tokio::task::spawn_blocking(move || workload::write_volume(&source, &plan))
            .await
            .context("the data writer panicked")?
            .context("writing the volume to back up")?
    };
    let snapshot =
        backup::backup_volume(&repository, &source, &plan.pvc, std::sync::Arc::default()).await?;
    step.done(&format!(
        "{} files, snapshot {}",
        expected.files(),
        &snapshot[..8]
    ));

    let step = Step::start(format!(
        "creating {count} restore target claims (selector {}), {CREATE_AT_ONCE} at a time",
        objects::DYNAMIC_PV_RESTORE_LABEL
    ));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    let capacity = objects::capacity_for(VOLUME_BYTES);
    create_all(&claims, count, "restore target claim", |i| {
        objects::restore_target_claim(&name(i), &capacity)
    })
    .await?;
    step.done("");

    // Counted from before the controller starts: its start-up lists are part of its cost.
    let user = testenv::service_account_user(FERRY_NAMESPACE, CONTROLLER_NAME);
    let before = cluster.requests_of(&user)?;
    let log = layout.controller_log("scale");
    let step = Step::start("starting ferry's controller");
    let controller = match controller::start(
        Placement::Process {
            kubeconfig: &kubeconfig,
            log: &log,
        },
        IMAGE,
    )
    .await
    {
        Ok(c) => {
            step.done(c.description());
            c
        }
        Err(err) => {
            step.failed();
            return Err(err);
        }
    };
    let run = run_downloads(&client, count, &snapshot, args).await;
    let peak_rss = controller.stop().await;
    let (created_in, observed) = run?;
    let requests = cluster.requests_of(&user)? - before;

    let downloads: Vec<Download> = Api::<DataDownload>::namespaced(client.clone(), FERRY_NAMESPACE)
        .list(&ListParams::default().labels(DEMO_LABEL))
        .await
        .context("listing the DataDownloads")?
        .items
        .iter()
        .map(Download::of)
        .collect();
    let problems = failures(&downloads, count);
    if !problems.is_empty() {
        for p in problems.iter().take(8) {
            println!("      {p}");
        }
        bail!(
            "{} of {count} DataDownloads did not complete (controller log: {})",
            problems.len(),
            log.display()
        );
    }
    let summary = summarize(&downloads, &nodes);

    let verified = verify_sample(cluster, count, &expected).await?;
    Ok(Measured {
        backend: cluster.backend(),
        summary,
        created_in,
        observed,
        requests,
        peak_rss,
        verified,
        files: expected.files(),
    })
}

/// Creates the DataDownloads as fast as the API server takes them and waits until every one
/// has ended, printing a progress line every few seconds. Returns how long the creation
/// took and when the last one was seen to end, in seconds after the first creation.
async fn run_downloads(
    client: &kube::Client,
    count: usize,
    snapshot: &str,
    args: &BenchScaleArgs,
) -> anyhow::Result<(f64, f64)> {
    let typed: Api<DataDownload> = Api::namespaced(client.clone(), FERRY_NAMESPACE);
    // A watch, not lists: a thousand objects listed every second would load the API server
    // being measured.
    let (store, writer) = reflector::store();
    let watch = tokio::spawn(
        reflector(
            writer,
            watcher::watcher(typed, watcher::Config::default().labels(DEMO_LABEL))
                .default_backoff(),
        )
        .for_each(|_| async {}),
    );
    let result = async {
        let downloads: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            FERRY_NAMESPACE,
            &objects::data_download_resource(),
        );
        let step = Step::start(format!(
            "creating {count} DataDownloads, {CREATE_AT_ONCE} at a time"
        ));
        let started = Instant::now();
        create_all(&downloads, count, "DataDownload", |i| {
            objects::data_download(&name(i), snapshot, &name(i), VOLUME_BYTES)
        })
        .await?;
        let created_in = started.elapsed().as_secs_f64();
        step.done(&format!(
            "{:.0} per second",
            count as f64 / created_in.max(1e-3)
        ));

        println!("  … waiting for every DataDownload to end (progress on stderr)");
        let deadline = Duration::from_secs(args.timeout_minutes * 60);
        let mut printed = Instant::now();
        loop {
            let phases = phase_counts(store.state().iter().map(|dd| dd.phase().to_string()));
            let ended: usize = ["Completed", "Failed", "Canceled"]
                .iter()
                .filter_map(|p| phases.get(*p))
                .sum();
            if ended >= count {
                eprintln!("{}", progress_line(started.elapsed(), &phases, count));
                return Ok((created_in, started.elapsed().as_secs_f64()));
            }
            if started.elapsed() > deadline {
                bail!(
                    "gave up after {} minutes: {}",
                    args.timeout_minutes,
                    progress_line(started.elapsed(), &phases, count).trim()
                );
            }
            if printed.elapsed() >= PROGRESS_EVERY {
                eprintln!("{}", progress_line(started.elapsed(), &phases, count));
                printed = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    .await;
    watch.abort();
    result
}

/// DataDownloads per phase.
fn phase_counts(phases: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for phase in phases {
        *counts.entry(phase).or_insert(0) += 1;
    }
    counts
}

/// `  [  12 s] 1000 DataDownloads: New 400, Accepted 100, …` in the phases' order, with those
/// not seen yet.
fn progress_line(elapsed: Duration, phases: &BTreeMap<String, usize>, count: usize) -> String {
    const ORDER: &[&str] = &[
        "New",
        "Accepted",
        "Prepared",
        "InProgress",
        "Completed",
        "Failed",
        "Canceling",
        "Canceled",
    ];
    let mut line = format!(
        "  [{:>5.0} s] {count} DataDownloads:",
        elapsed.as_secs_f64()
    );
    let seen: usize = phases.values().sum();
    if seen < count {
        let _ = write!(line, " not seen yet {}", count - seen);
    }
    let mut parts = Vec::new();
    for phase in ORDER {
        parts.push(format!(
            "{phase} {}",
            phases.get(*phase).copied().unwrap_or(0)
        ));
    }
    for (phase, n) in phases {
        if !ORDER.contains(&phase.as_str()) {
            parts.push(format!("{phase} {n}"));
        }
    }
    let _ = write!(line, " {}", parts.join(", "));
    line
}

/// What keeps a run from counting: DataDownloads missing, not Completed, or without their
/// timestamps. One line each.
fn failures(downloads: &[Download], expected: usize) -> Vec<String> {
    let mut problems = Vec::new();
    if downloads.len() != expected {
        problems.push(format!(
            "{} DataDownloads found, {expected} created",
            downloads.len()
        ));
    }
    for d in downloads {
        if d.phase != "Completed" {
            problems.push(format!(
                "{} ended {}: {}",
                d.name,
                d.phase,
                d.message.as_deref().unwrap_or("(no message)")
            ));
        } else if d.created.is_none()
            || d.accepted.is_none()
            || d.started.is_none()
            || d.completed.is_none()
        {
            problems.push(format!(
                "{} is Completed without all its timestamps",
                d.name
            ));
        }
    }
    problems
}

/// The run's figures from its (Completed, see [`failures`]) DataDownloads on `nodes`.
fn summarize(downloads: &[Download], nodes: &[String]) -> Summary {
    let secs = |from: Option<i64>, to: Option<i64>| match (from, to) {
        (Some(a), Some(b)) => (b - a).max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    let first = downloads.iter().filter_map(|d| d.created).min();
    let last = downloads.iter().filter_map(|d| d.completed).max();
    let mut per_node: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.as_str(), 0)).collect();
    for d in downloads {
        if let Some(node) = &d.node {
            *per_node.entry(node.as_str()).or_insert(0) += 1;
        }
    }
    let used: BTreeSet<&str> = downloads.iter().filter_map(|d| d.node.as_deref()).collect();
    Summary {
        count: downloads.len(),
        makespan: secs(first, last),
        to_accepted: Spread::of(downloads.iter().map(|d| secs(d.created, d.accepted))),
        to_started: Spread::of(downloads.iter().map(|d| secs(d.accepted, d.started))),
        to_completed: Spread::of(downloads.iter().map(|d| secs(d.started, d.completed))),
        completions: Spread::of(downloads.iter().map(|d| secs(first, d.completed))),
        nodes: NodeSpread {
            used: used.len(),
            nodes: per_node.len(),
            per_node: Spread::of(per_node.values().map(|&n| n as f64)),
        },
    }
}

/// Reads back every [`VERIFY_EVERY`]th restored volume and the last: its target claim must be
/// Bound to a PV whose directory holds the backed-up files. Returns how many were compared.
async fn verify_sample(
    cluster: &TestCluster,
    count: usize,
    expected: &HashTree,
) -> anyhow::Result<usize> {
    let mut sample: Vec<usize> = (0..count).step_by(VERIFY_EVERY).collect();
    if sample.last() != Some(&(count - 1)) {
        sample.push(count - 1);
    }
    let step = Step::start(format!(
        "verifying {} restored volumes (every {VERIFY_EVERY}th and the last)",
        sample.len()
    ));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client(), WORKLOAD_NAMESPACE);
    let volumes: Api<PersistentVolume> = Api::all(cluster.client());
    let mut problems = Vec::new();
    for &i in &sample {
        let claim = claims
            .get(&name(i))
            .await
            .with_context(|| format!("reading target claim {}", name(i)))?;
        let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
        let pv = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|n| !n.is_empty());
        let (Some("Bound"), Some(pv)) = (phase.as_deref(), pv) else {
            problems.push(format!("{}: not Bound ({phase:?})", name(i)));
            continue;
        };
        volumes
            .get(&pv)
            .await
            .with_context(|| format!("reading PersistentVolume {pv}"))?;
        let dir = cluster.nodes().volume_path(&pv);
        let actual = tokio::task::spawn_blocking(move || HashTree::of_directory(&dir))
            .await
            .context("the verifier panicked")?
            .with_context(|| format!("reading restored volume {}", name(i)))?;
        for difference in expected.differences(&actual) {
            problems.push(format!("{}: {difference}", name(i)));
        }
    }
    if !problems.is_empty() {
        step.failed();
        for p in problems.iter().take(20) {
            println!("      {p}");
        }
        bail!(
            "{} problems in the restored volumes sampled; the figures do not count",
            problems.len()
        );
    }
    step.done(&format!(
        "{} files each, identical (SHA-256)",
        expected.files()
    ));
    Ok(sample.len())
}

fn spread_secs(s: &Spread) -> String {
    format!(
        "{} ({} – {})",
        human_seconds(s.median),
        human_seconds(s.min),
        human_seconds(s.max)
    )
}

fn render_figures(m: &Measured, args: &BenchScaleArgs, cpus: usize) -> String {
    let s = &m.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ferry bench scale, {}: {} DataDownloads on {} nodes, loadConcurrency {}, \
         restorePVC.ignoreDelayBinding; each restores the same snapshot of {} ({} files) from \
         a repository keyed with cheap scrypt parameters (N={} r={} p={})",
        m.backend.name(),
        s.count,
        s.nodes.nodes,
        args.load_concurrency,
        human_bytes(VOLUME_BYTES),
        m.files,
        CHEAP_KDF.n,
        CHEAP_KDF.r,
        CHEAP_KDF.p
    );
    let row = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "  {label:<38}{value}");
    };
    row(
        &mut out,
        "makespan",
        format!(
            "{} (first created → last completed, the API's timestamps; the bench saw the last \
             end after {})",
            human_seconds(s.makespan),
            human_seconds(m.observed)
        ),
    );
    row(
        &mut out,
        "DataDownloads per second",
        format!("{:.2}", s.per_second()),
    );
    row(
        &mut out,
        "creating them took",
        format!(
            "{} ({CREATE_AT_ONCE} at a time)",
            human_seconds(m.created_in)
        ),
    );
    let _ = writeln!(
        out,
        "  per DataDownload, median (min – max), whole seconds:"
    );
    row(
        &mut out,
        "  created → accepted",
        spread_secs(&s.to_accepted),
    );
    row(&mut out, "  accepted → started", spread_secs(&s.to_started));
    row(
        &mut out,
        "  started → completed",
        spread_secs(&s.to_completed),
    );
    row(
        &mut out,
        "completions after the first creation",
        format!(
            "first {}, median {}, last {}",
            human_seconds(s.completions.min),
            human_seconds(s.completions.median),
            human_seconds(s.completions.max)
        ),
    );
    let even = s.count as f64 / s.nodes.nodes.max(1) as f64;
    row(
        &mut out,
        "nodes that ran restores",
        format!(
            "{} of {}; restores per node min {:.0}, median {:.1}, max {:.0} (even: {even:.1})",
            s.nodes.used,
            s.nodes.nodes,
            s.nodes.per_node.min,
            s.nodes.per_node.median,
            s.nodes.per_node.max
        ),
    );
    row(
        &mut out,
        "controller API requests",
        format!(
            "{} ({:.1} per DataDownload; ferry-controller's service account, from its start)",
            m.requests,
            m.requests as f64 / s.count.max(1) as f64
        ),
    );
    row(
        &mut out,
        "controller peak RSS",
        m.peak_rss.map_or("-".into(), human_bytes),
    );
    row(
        &mut out,
        "verified",
        format!(
            "{} restored volumes (every {VERIFY_EVERY}th and the last): Bound, {} files identical",
            m.verified, m.files
        ),
    );
    if cpus < s.nodes.nodes {
        let _ = writeln!(
            out,
            "  note: the {} simulated nodes, their data mover processes, the API server and the \
             controller share this machine's {cpus} CPUs.",
            s.nodes.nodes
        );
    }
    out
}

/// One figure of a cluster's run, for the comparison, and how it is shown.
type Figure = fn(&Measured) -> f64;
type Show = fn(f64) -> String;

/// The clusters side by side, with the last's ratio to the first.
fn render_comparison(results: &[Measured]) -> String {
    let mut out = String::from("the same scenario on each cluster:\n");
    let (first, last) = (&results[0], &results[results.len() - 1]);
    let ratio_head = format!("{} / {}", last.backend.name(), first.backend.name());
    let _ = write!(out, "  {:<34}", "");
    for r in results {
        let _ = write!(out, "{:>14}", r.backend.name());
    }
    let _ = writeln!(out, "{ratio_head:>18}");
    let rows: [(&str, Figure, Show); 7] = [
        ("makespan", |m| m.summary.makespan, human_seconds),
        (
            "DataDownloads per second",
            |m| m.summary.per_second(),
            |v| format!("{v:.2}"),
        ),
        (
            "created → accepted (median)",
            |m| m.summary.to_accepted.median,
            human_seconds,
        ),
        (
            "accepted → started (median)",
            |m| m.summary.to_started.median,
            human_seconds,
        ),
        (
            "started → completed (median)",
            |m| m.summary.to_completed.median,
            human_seconds,
        ),
        (
            "API requests per DataDownload",
            |m| m.requests as f64 / m.summary.count.max(1) as f64,
            |v| format!("{v:.1}"),
        ),
        (
            "controller peak RSS (MiB)",
            |m| m.peak_rss.map_or(0.0, |b| b as f64 / (1024.0 * 1024.0)),
            |v| format!("{v:.1}"),
        ),
    ];
    for (label, value, show) in rows {
        let _ = write!(out, "  {label:<34}");
        for r in results {
            let _ = write!(out, "{:>14}", show(value(r)));
        }
        let (a, b) = (value(first), value(last));
        let ratio = if a > 0.0 {
            format!("{:.2}×", b / a)
        } else {
            "-".into()
        };
        let _ = writeln!(out, "{ratio:>18}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download(name: &str, node: &str, times: [i64; 4]) -> Download {
        Download {
            name: name.into(),
            phase: "Completed".into(),
            message: None,
            node: Some(node.into()),
            created: Some(times[0] * 1000),
            accepted: Some(times[1] * 1000),
            started: Some(times[2] * 1000),
            completed: Some(times[3] * 1000),
        }
    }

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    /// Four DataDownloads on two of three nodes.
    fn downloads() -> Vec<Download> {
        vec![
            download("a", "node-1", [100, 101, 103, 104]),
            download("b", "node-1", [100, 102, 105, 107]),
            download("c", "node-2", [101, 101, 102, 110]),
            download("d", "node-1", [102, 104, 104, 106]),
        ]
    }

    #[test]
    fn the_summary_reads_phases_makespan_and_nodes_from_the_timestamps() {
        let s = summarize(&downloads(), &nodes(3));
        assert_eq!(s.count, 4);
        // 100 → 110.
        assert_eq!(s.makespan, 10.0);
        assert_eq!(s.per_second(), 0.4);
        // created → accepted: 1, 2, 0, 2.
        assert_eq!(
            s.to_accepted,
            Spread {
                min: 0.0,
                median: 1.5,
                max: 2.0
            }
        );
        // accepted → started: 2, 3, 1, 0; started → completed: 1, 2, 8, 2.
        assert_eq!(s.to_started.median, 1.5);
        assert_eq!(s.to_completed.median, 2.0);
        assert_eq!(s.to_completed.max, 8.0);
        // Completions 4, 7, 10, 6 s after the first creation.
        assert_eq!(s.completions.min, 4.0);
        assert_eq!(s.completions.median, 6.5);
        // node-1: 3, node-2: 1, node-3: 0.
        assert_eq!(s.nodes.used, 2);
        assert_eq!(s.nodes.nodes, 3);
        assert_eq!(
            s.nodes.per_node,
            Spread {
                min: 0.0,
                median: 1.0,
                max: 3.0
            }
        );
    }

    #[test]
    fn failures_name_what_did_not_complete() {
        let mut all = downloads();
        assert!(failures(&all, 4).is_empty());
        all[1].phase = "Failed".into();
        all[1].message = Some("data mover failed: boom".into());
        all[2].accepted = None;
        let problems = failures(&all, 5);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("4 DataDownloads found, 5 created"));
        assert_eq!(problems[1], "b ended Failed: data mover failed: boom");
        assert!(problems[2].starts_with("c is Completed without"));
    }

    #[test]
    fn the_progress_line_counts_each_phase_and_the_unseen() {
        let phases = phase_counts(
            ["New", "New", "InProgress", "Completed", "Odd"]
                .into_iter()
                .map(String::from),
        );
        let line = progress_line(Duration::from_secs(12), &phases, 7);
        assert!(
            line.contains("[   12 s] 7 DataDownloads: not seen yet 2"),
            "{line}"
        );
        assert!(line.contains("New 2, Accepted 0"), "{line}");
        assert!(
            line.contains("InProgress 1, Completed 1, Failed 0"),
            "{line}"
        );
        assert!(line.ends_with("Canceled 0, Odd 1"), "{line}");
    }

    fn measured(backend: Backend, scale: i64, requests: usize) -> Measured {
        let all: Vec<Download> = downloads()
            .into_iter()
            .map(|mut d| {
                for t in [&mut d.accepted, &mut d.started, &mut d.completed] {
                    *t = t.map(|v| d.created.unwrap() + (v - d.created.unwrap()) * scale);
                }
                d
            })
            .collect();
        Measured {
            backend,
            summary: summarize(&all, &nodes(2)),
            created_in: 0.5,
            observed: 11.0,
            requests,
            peak_rss: Some(40 << 20),
            verified: 2,
            files: 11,
        }
    }

    fn args() -> BenchScaleArgs {
        BenchScaleArgs {
            data_downloads: 4,
            nodes: 2,
            cluster: ClusterChoice::Both,
            load_concurrency: 1,
            out: None,
            timeout_minutes: 1,
        }
    }

    #[test]
    fn the_figures_show_rate_phases_spread_and_costs() {
        let text = render_figures(&measured(Backend::Kubesim, 1, 40), &args(), 1);
        let line = |label: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("a {label} line in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(line("makespan").starts_with("makespan 10.0 s"), "{text}");
        assert_eq!(
            line("DataDownloads per second"),
            "DataDownloads per second 0.40"
        );
        assert_eq!(
            line("created → accepted"),
            "created → accepted 1.50 s (0.00 s – 2.00 s)"
        );
        assert!(
            line("nodes that ran")
                .contains("2 of 2; restores per node min 1, median 2.0, max 3 (even: 2.0)"),
            "{text}"
        );
        assert!(
            line("controller API requests")
                .starts_with("controller API requests 40 (10.0 per DataDownload"),
            "{text}"
        );
        assert_eq!(line("controller peak RSS"), "controller peak RSS 40.0 MiB");
        assert!(text.contains("share this machine's 1 CPUs"), "{text}");
    }

    #[test]
    fn the_comparison_puts_the_clusters_side_by_side_with_ratios() {
        let text = render_comparison(&[
            measured(Backend::Kubesim, 1, 40),
            measured(Backend::Real, 2, 100),
        ]);
        let cells = |label: &str| -> Vec<String> {
            let l = text
                .lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("a {label} line in\n{text}"));
            l[2 + 34..].split_whitespace().map(String::from).collect()
        };
        assert!(text.contains("real / kubesim"), "{text}");
        // Phases twice as long on real: c, created at 101, completes at 119 instead of 110.
        assert_eq!(cells("makespan"), ["10.0", "s", "19.0", "s", "1.90×"]);
        assert_eq!(cells("DataDownloads per second"), ["0.40", "0.21", "0.53×"]);
        assert_eq!(
            cells("API requests per DataDownload"),
            ["10.0", "25.0", "2.50×"]
        );
        assert_eq!(cells("controller peak RSS"), ["40.0", "40.0", "1.00×"]);
    }
}
