//! The measured ideal of `ferry bench restore`: what this machine can do with the restore
//! pods' own work and nothing else. The restore pods' data mover (`ferry data-mover restore`
//! with the arguments ferry's controller gives a restore pod, [`restore_pod_for`]) runs as
//! local processes — as kubesim's kubelets run a pod's container, on kubesim and on the real
//! control plane alike — without the controller and without pods: as many at once as the
//! cluster allows (each node's `loadConcurrency` slots from the run's node-agent ConfigMap,
//! all volumes spread over the nodes as with ignoreDelayBinding), from the same repository and
//! snapshots into fresh directories. It is measured before the restores and after them, and
//! the faster run counts (the machine at its least disturbed); its makespan is what each
//! mode's makespan is divided by.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use ferry_config::{NodeAgentConfig, Strictness, from_configmap_data};
use ferry_controller::crds::DataDownload;
use ferry_controller::data_mover_exit::{DataMoverResult, parse_termination_message};
use ferry_controller::expose::{
    FILESYSTEM_MOUNT_PATH, PodSettings, TERMINATION_MESSAGE_PATH, restore_pod_for,
};
use ferry_controller::install::DATA_MOVER_NAME;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject};
use testenv::TestCluster;

use crate::commands::demo::cpu_use::{CpuMeter, CpuUse};
use crate::commands::demo::layout::Layout;
use crate::commands::demo::objects::{self, FERRY_NAMESPACE, NODE_AGENT_CONFIGMAP};
use crate::commands::demo::progress::Step;
use crate::commands::demo::restore_run::VolumeToRestore;
use crate::commands::demo::scenario::{BackedUp, IMAGE};
use crate::commands::demo::timings::{ModeRun, RestoreTiming, RunKind};
use crate::commands::demo::verify::HashTree;
use ferry_text::human_bytes;

/// The name of the ideal's column and run.
pub(in crate::commands::bench) const NAME: &str = "data movers alone";

/// The measured ideal: the data movers' fastest run and the concurrency it had.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::commands::bench) struct Ideal {
    /// One entry per volume, in the volumes' order: `wait_start` 0, waiting until a slot was
    /// free (`move_start`, the process started), moving until the process ended (`move_end`
    /// = `completed`); nothing exposed or rebound.
    pub(in crate::commands::bench) run: ModeRun,
    /// Each node's data mover slots, in node order.
    pub(in crate::commands::bench) slots: Vec<(String, usize)>,
    /// Every measurement's makespan, in the order measured (`run` is the fastest).
    pub(in crate::commands::bench) makespans: Vec<f64>,
    /// The CPU time `run` used while its data movers ran.
    pub(in crate::commands::bench) cpu: Option<CpuUse>,
}

impl Ideal {
    /// The fastest of `runs` (measured with `slots`): what the machine can do, when it was
    /// least disturbed. None without a run.
    pub(in crate::commands::bench) fn fastest(
        runs: Vec<(ModeRun, Option<CpuUse>)>,
        slots: Vec<(String, usize)>,
    ) -> Option<Ideal> {
        let makespans: Vec<f64> = runs.iter().map(|(run, _)| run.makespan()).collect();
        let (run, cpu) = runs
            .into_iter()
            .min_by(|a, b| a.0.makespan().total_cmp(&b.0.makespan()))?;
        Some(Ideal {
            run,
            slots,
            makespans,
            cpu,
        })
    }

    /// Data movers at once: all nodes' slots.
    pub(in crate::commands::bench) fn concurrency(&self) -> usize {
        self.slots.iter().map(|(_, n)| n).sum()
    }

    pub(in crate::commands::bench) fn makespan(&self) -> f64 {
        self.run.makespan()
    }

    /// The slowest measurement over the fastest (1 for a single one): how much the machine's
    /// load moved during the run.
    pub(in crate::commands::bench) fn spread(&self) -> f64 {
        let fastest = self.makespan();
        let slowest = self.makespans.iter().copied().fold(0.0, f64::max);
        if fastest > 0.0 {
            slowest / fastest
        } else {
            1.0
        }
    }

    /// `4 nodes × 2` when every node has the same slots, else each node's.
    pub(in crate::commands::bench) fn slots_words(&self) -> String {
        let first = self.slots.first().map_or(0, |(_, n)| *n);
        if self.slots.iter().all(|(_, n)| *n == first) {
            format!("{} nodes × {first}", self.slots.len())
        } else {
            self.slots
                .iter()
                .map(|(node, n)| format!("{node}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// The node-agent configuration the ignoreDelayBinding restore runs with (the ConfigMap
/// `start_controller` applies for it), as the controller reads it, and each node's slots: the
/// configuration's `loadConcurrency` for the node's labels, as ferry's placement reads it.
pub(in crate::commands::bench) async fn slots_of_the_run(
    client: &kube::Client,
    nodes: &[String],
) -> anyhow::Result<(NodeAgentConfig, Vec<(String, usize)>)> {
    let map = objects::node_agent_config(true);
    let config = from_configmap_data(
        NODE_AGENT_CONFIGMAP,
        &map.data.unwrap_or_default(),
        Strictness::Lenient,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .config;
    let api: Api<Node> = Api::all(client.clone());
    let mut slots = Vec::new();
    for name in nodes {
        let node = api
            .get(name)
            .await
            .with_context(|| format!("reading node {name}"))?;
        let labels = node.metadata.labels.unwrap_or_default();
        slots.push((name.clone(), config.concurrency_for_node(&labels)));
    }
    Ok((config, slots))
}

/// The lanes data movers run in, one per slot: slot 0 of every node, then slot 1, …, so the
/// first volumes spread over the nodes as ferry's least-loaded placement spreads them.
pub(in crate::commands::bench) fn lanes(slots: &[(String, usize)]) -> Vec<String> {
    let most = slots.iter().map(|(_, n)| *n).max().unwrap_or(0);
    (0..most)
        .flat_map(|slot| {
            slots
                .iter()
                .filter(move |(_, n)| slot < *n)
                .map(|(node, _)| node.clone())
        })
        .collect()
}

/// A restore pod's program arguments with its in-pod paths pointed at local ones, as
/// kubesim's kubelet points them at the pod's volume and termination message file. The
/// container's `command`, if any, names the program; its other words come first.
pub(in crate::commands::bench) fn local_arguments(
    pod: &Pod,
    volume: &Path,
    termination: &Path,
) -> anyhow::Result<Vec<String>> {
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .context("the restore pod has no container")?;
    let words = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten());
    let local = |path: &Path| path.to_string_lossy().into_owned();
    let arguments: Vec<String> = words
        .map(|word| match word.as_str() {
            FILESYSTEM_MOUNT_PATH => local(volume),
            TERMINATION_MESSAGE_PATH => local(termination),
            _ => word.clone(),
        })
        .collect();
    let (volume, termination) = (local(volume), local(termination));
    if !arguments.contains(&volume) || !arguments.contains(&termination) {
        bail!(
            "the restore pod's arguments {:?} do not name {FILESYSTEM_MOUNT_PATH} and \
             {TERMINATION_MESSAGE_PATH}: the ideal cannot point them at local paths",
            container.args
        );
    }
    Ok(arguments)
}

/// The restore pod container's own environment (literal values only).
fn container_env(pod: &Pod) -> anyhow::Result<BTreeMap<String, String>> {
    let container = pod.spec.as_ref().and_then(|s| s.containers.first());
    let mut env = BTreeMap::new();
    for var in container.and_then(|c| c.env.as_ref()).into_iter().flatten() {
        if var.value_from.is_some() {
            bail!(
                "the restore pod's variable {} comes from valueFrom, which the ideal cannot give",
                var.name
            );
        }
        env.insert(var.name.clone(), var.value.clone().unwrap_or_default());
    }
    if container.is_some_and(|c| c.env_from.is_some()) {
        bail!("the restore pod takes envFrom, which the ideal cannot give");
    }
    Ok(env)
}

/// One data mover to run.
struct Job {
    index: usize,
    volume: VolumeToRestore,
    /// The volume's directory, the termination message file, the log.
    target: PathBuf,
    termination: PathBuf,
    log: PathBuf,
    arguments: Vec<String>,
    env: BTreeMap<String, String>,
}

/// One data mover's end.
struct Ended {
    index: usize,
    volume: String,
    node: String,
    start: f64,
    end: f64,
    exit: Option<i32>,
    result: Option<DataMoverResult>,
    log: PathBuf,
}

/// Measures the ideal once (`round` names it): every volume of `backed_up` restored by the
/// restore pods' data mover run as local processes, without the controller, as many at once
/// as `slots` (from `config`) allow; every byte verified. No controller may run.
pub(in crate::commands::bench) async fn measure_ideal(
    cluster: &TestCluster,
    layout: &Layout,
    backed_up: &BackedUp,
    (config, slots): &(NodeAgentConfig, Vec<(String, usize)>),
    round: usize,
) -> anyhow::Result<(ModeRun, Option<CpuUse>)> {
    let client = cluster.client();
    let meter = CpuMeter {
        control_plane: cluster.control_plane_group(),
        controller: None,
    };
    let lanes = lanes(slots);
    if lanes.is_empty() {
        bail!("the node-agent configuration gives the nodes no data mover slots");
    }
    // As the restore pods: the data mover's service account (kubesim: its name as token).
    let kubeconfig = cluster
        .service_account_kubeconfig(FERRY_NAMESPACE, DATA_MOVER_NAME)
        .await?;
    let root = layout.root.join(format!("ideal-{round}"));
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("removing the previous ideal's {}", root.display()))?;
    }

    // A DataDownload per volume, as the restores had, under names of their own; no controller
    // runs, so nothing but the data movers reads them.
    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        FERRY_NAMESPACE,
        &objects::data_download_resource(),
    );
    let typed: Api<DataDownload> = Api::namespaced(client.clone(), FERRY_NAMESPACE);
    let names: Vec<String> = backed_up
        .to_restore
        .iter()
        .map(|v| format!("{}-ideal-{round}", v.claim))
        .collect();
    let outcome = async {
        let mut jobs = VecDeque::new();
        for (index, (volume, name)) in backed_up.to_restore.iter().zip(&names).enumerate() {
            dynamic
                .create(
                    &Default::default(),
                    &objects::data_download(name, &volume.snapshot_id, &volume.claim, volume.bytes),
                )
                .await
                .with_context(|| format!("creating DataDownload {name}"))?;
            jobs.push_back(job(&typed, config, &root, index, volume, name, &kubeconfig).await?);
        }
        let before = meter.sample();
        let ended = run_data_movers(jobs, lanes, backed_up.total_bytes(), round).await?;
        let cpu = before.zip(meter.sample()).map(|(a, b)| a.until(&b));
        anyhow::Ok((ended, cpu))
    }
    .await;
    for name in &names {
        match dynamic.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(err) => return Err(err).context(format!("deleting DataDownload {name}")),
        }
    }
    let (ended, cpu) = outcome?;

    for end in &ended {
        let failure = match (&end.result, end.exit) {
            (Some(result), Some(0)) if result.ok => continue,
            (Some(result), _) => result.error.clone().unwrap_or_default(),
            (None, exit) => format!("no termination message (exit {exit:?})"),
        };
        bail!(
            "the data mover for {} failed: {failure} (log {})",
            end.volume,
            end.log.display()
        );
    }
    verify(backed_up, &root).await?;

    let restores = ended
        .iter()
        .map(|e| RestoreTiming {
            volume: e.volume.clone(),
            node: e.node.clone(),
            wait_start: 0.0,
            wait_end: e.start,
            expose_end: e.start,
            move_start: e.start,
            move_end: e.end,
            completed: e.end,
            bytes: e.result.as_ref().map_or(0, |r| r.total_bytes),
        })
        .collect();
    let run = ModeRun {
        name: NAME.into(),
        description: "the measured ideal: the restore pods' data mover without the controller"
            .into(),
        kind: RunKind::Restore,
        nodes: backed_up.written.nodes.clone(),
        restores,
    };
    Ok((run, cpu))
}

/// The data mover for one volume: the restore pod ferry's controller would create for its
/// DataDownload, its arguments pointed at a fresh directory.
async fn job(
    downloads: &Api<DataDownload>,
    config: &NodeAgentConfig,
    root: &Path,
    index: usize,
    volume: &VolumeToRestore,
    name: &str,
    kubeconfig: &Path,
) -> anyhow::Result<Job> {
    let dd = downloads
        .get(name)
        .await
        .with_context(|| format!("reading DataDownload {name}"))?;
    let settings = PodSettings {
        image: format!("{IMAGE}:demo"),
        service_account: Some(DATA_MOVER_NAME.into()),
        log_filter: None,
        password_secret: None,
        tolerations: Vec::new(),
    };
    let target_claim = objects::restore_target_claim(&volume.claim, &volume.capacity);
    let pod = restore_pod_for(&dd, FERRY_NAMESPACE, &target_claim, None, config, &settings);
    let dir = root.join(&volume.claim);
    let target = dir.join("volume");
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    let termination = dir.join("termination-log");
    let arguments = local_arguments(&pod, &target, &termination)?;
    // What kubesim's kubelet gives a container: a minimal base, then the pod's own.
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    for passthrough in ["RUST_LOG", "RUST_BACKTRACE", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(passthrough) {
            env.insert(passthrough.into(), v);
        }
    }
    env.insert("HOME".into(), dir.to_string_lossy().into_owned());
    env.insert("HOSTNAME".into(), name.into());
    env.insert(
        "KUBECONFIG".into(),
        kubeconfig.to_string_lossy().into_owned(),
    );
    env.extend(container_env(&pod)?);
    Ok(Job {
        index,
        volume: volume.clone(),
        log: dir.join("data-mover.log"),
        target,
        termination,
        arguments,
        env,
    })
}

/// Runs the jobs, one lane per slot, each lane taking the next job when its data mover ends;
/// returns each job's end, in the jobs' order. Times are seconds since the first started.
async fn run_data_movers(
    jobs: VecDeque<Job>,
    lanes: Vec<String>,
    total: u64,
    round: usize,
) -> anyhow::Result<Vec<Ended>> {
    let exe = std::env::current_exe().context("finding this ferry binary for the data movers")?;
    let step = Step::start_bytes(
        format!(
            "measuring the ideal ({round}): the restore pods' data mover alone, {} at a time, no \
             controller",
            lanes.len()
        ),
        total,
    );
    let done = Arc::new(AtomicU64::new(0));
    let ticker = step.follow(done.clone());
    let queue = Mutex::new(jobs);
    let started = Instant::now();
    let lane_runs = lanes.iter().map(|node| {
        let (queue, exe, done) = (&queue, &exe, done.clone());
        async move {
            let mut ended = Vec::new();
            loop {
                let Some(job) = queue.lock().unwrap().pop_front() else {
                    return anyhow::Ok(ended);
                };
                let log = std::fs::File::create(&job.log)
                    .with_context(|| format!("creating {}", job.log.display()))?;
                let start = started.elapsed().as_secs_f64();
                let status = tokio::process::Command::new(exe)
                    .args(&job.arguments)
                    .env_clear()
                    .envs(&job.env)
                    .current_dir(job.target.parent().unwrap_or(&job.target))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true)
                    .status()
                    .await
                    .with_context(|| format!("running the data mover for {}", job.volume.claim))?;
                let end = started.elapsed().as_secs_f64();
                let result = std::fs::read_to_string(&job.termination)
                    .ok()
                    .and_then(|text| parse_termination_message(&text));
                done.fetch_add(job.volume.bytes, Ordering::Relaxed);
                ended.push(Ended {
                    index: job.index,
                    volume: job.volume.claim.clone(),
                    node: node.clone(),
                    start,
                    end,
                    exit: status.code(),
                    result,
                    log: job.log.clone(),
                });
            }
        }
    });
    let results = futures::future::join_all(lane_runs).await;
    let makespan = started.elapsed().as_secs_f64();
    ticker.abort();
    let mut ended = Vec::new();
    for result in results {
        match result {
            Ok(lane) => ended.extend(lane),
            Err(err) => {
                step.failed();
                return Err(err);
            }
        }
    }
    ended.sort_by_key(|e| e.index);
    step.done(&format!(
        "{} volumes, {} in {makespan:.2} s",
        ended.len(),
        human_bytes(total)
    ));
    Ok(ended)
}

/// Compares every volume the data movers restored with what was written, then removes the
/// data (the logs and termination messages stay).
async fn verify(backed_up: &BackedUp, root: &Path) -> anyhow::Result<()> {
    let step = Step::start(format!("verifying every byte ({NAME})"));
    let mut problems = Vec::new();
    let written = &backed_up.written;
    for (volume, expected) in backed_up.to_restore.iter().zip(&written.expected) {
        let dir = root.join(&volume.claim).join("volume");
        let read = dir.clone();
        let actual = tokio::task::spawn_blocking(move || HashTree::of_directory(&read))
            .await
            .context("the verifier panicked")?
            .with_context(|| format!("reading {}", dir.display()))?;
        for difference in expected.differences(&actual) {
            problems.push(format!("{}: {difference}", volume.claim));
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    if problems.is_empty() {
        step.done(&format!(
            "{} files identical (SHA-256 hash trees)",
            written.files
        ));
        return Ok(());
    }
    step.failed();
    for problem in problems.iter().take(20) {
        println!("      {problem}");
    }
    bail!(
        "the data movers alone did not give back the data written ({} differences); the ideal \
         does not count",
        problems.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::demo::restore_run::VolumeToRestore;

    fn slots(spec: &[(&str, usize)]) -> Vec<(String, usize)> {
        spec.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn lanes_take_every_nodes_first_slot_before_any_second() {
        assert_eq!(
            lanes(&slots(&[("node-1", 2), ("node-2", 2), ("node-3", 1)])),
            ["node-1", "node-2", "node-3", "node-1", "node-2"]
        );
        assert!(lanes(&[]).is_empty());
        let ideal = Ideal {
            run: ModeRun {
                name: NAME.into(),
                description: String::new(),
                kind: RunKind::Restore,
                nodes: Vec::new(),
                restores: Vec::new(),
            },
            slots: slots(&[("node-1", 2), ("node-2", 2)]),
            makespans: Vec::new(),
            cpu: None,
        };
        assert_eq!(ideal.concurrency(), 4);
        assert_eq!(ideal.slots_words(), "2 nodes × 2");
        let uneven = Ideal {
            slots: slots(&[("node-1", 2), ("node-2", 1)]),
            ..ideal
        };
        assert_eq!(uneven.slots_words(), "node-1: 2, node-2: 1");
    }

    #[test]
    fn the_fastest_measurement_counts() {
        let run = |end: f64| ModeRun {
            name: NAME.into(),
            description: String::new(),
            kind: RunKind::Restore,
            nodes: vec!["node-1".into()],
            restores: vec![RestoreTiming {
                volume: "v".into(),
                node: "node-1".into(),
                wait_start: 0.0,
                wait_end: 0.0,
                expose_end: 0.0,
                move_start: 0.0,
                move_end: end,
                completed: end,
                bytes: 1,
            }],
        };
        let cpu = |machine: f64| {
            Some(CpuUse {
                machine,
                ..CpuUse::default()
            })
        };
        let ideal = Ideal::fastest(
            vec![(run(3.0), cpu(5.0)), (run(2.5), cpu(4.0))],
            slots(&[("node-1", 1)]),
        )
        .unwrap();
        assert_eq!(ideal.cpu.unwrap().machine, 4.0, "the fastest run's CPU");
        assert_eq!(ideal.makespan(), 2.5);
        assert_eq!(ideal.makespans, [3.0, 2.5]);
        assert!((ideal.spread() - 1.2).abs() < 1e-12);
        assert!(Ideal::fastest(Vec::new(), Vec::new()).is_none());
    }

    /// The restore pod ferry's controller creates, with its in-pod paths made local.
    #[test]
    fn the_data_mover_gets_the_restore_pods_arguments_with_local_paths() {
        let volume = VolumeToRestore {
            claim: "data-ledger-0".into(),
            pod: "ledger-0".into(),
            snapshot_id: "abc123".into(),
            bytes: 1 << 20,
            capacity: "64Mi".into(),
        };
        let dd: DataDownload = serde_json::from_value(
            serde_json::to_value(objects::data_download(
                "data-ledger-0-ideal",
                &volume.snapshot_id,
                &volume.claim,
                volume.bytes,
            ))
            .unwrap(),
        )
        .unwrap();
        let settings = PodSettings {
            image: "ferry:demo".into(),
            service_account: Some(DATA_MOVER_NAME.into()),
            log_filter: None,
            password_secret: None,
            tolerations: Vec::new(),
        };
        let pod = restore_pod_for(
            &dd,
            FERRY_NAMESPACE,
            &objects::restore_target_claim(&volume.claim, &volume.capacity),
            None,
            &NodeAgentConfig::default(),
            &settings,
        );
        let arguments = local_arguments(
            &pod,
            Path::new("/tmp/ideal/data-ledger-0/volume"),
            Path::new("/tmp/ideal/data-ledger-0/termination-log"),
        )
        .unwrap();
        let text = arguments.join(" ");
        assert!(
            text.starts_with("data-mover restore --data-download data-ledger-0-ideal"),
            "{text}"
        );
        assert!(
            text.contains("--namespace ferry --volume-path /tmp/ideal/data-ledger-0/volume"),
            "{text}"
        );
        assert!(
            text.contains("--termination-message-path /tmp/ideal/data-ledger-0/termination-log"),
            "{text}"
        );
        assert!(!text.contains(FILESYSTEM_MOUNT_PATH), "{text}");
        assert!(container_env(&pod).unwrap().is_empty());
    }
}
