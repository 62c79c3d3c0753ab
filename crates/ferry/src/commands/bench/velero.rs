//! `ferry bench velero`: the makespan of Velero's own backup and restore with ferry as its data
//! mover, on the real control plane, for StatefulSets of several sizes; the restore by default
//! (each volume restored once its pod is scheduled, the StatefulSet starting its pods one by
//! one) against `restorePVC.ignoreDelayBinding` (every restore at once, spread over the nodes).
//!
//! For each volume count N: a namespace with an N-replica StatefulSet on the WaitForFirstConsumer
//! class, each volume filled with its own data; `velero backup create --snapshot-move-data
//! --data-mover ferry --wait`; the namespace deleted; `velero restore create --wait` with the
//! default node-agent ConfigMap; every byte compared; the namespace deleted again; the same
//! restore with ignoreDelayBinding; every byte compared. Each step is timed as its user sees it
//! (the velero CLI's `--wait`) and by ferry's share (first DataUpload/DataDownload created to
//! last completed). Velero itself runs as in the acceptance test (docs/velero.md), with its
//! defaults: it looks at running data mover operations every 10 s.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_controller::ControllerOptions;
use ferry_controller::crds::{DataDownload, DataUpload};
use ferry_controller::install::{CONTROLLER_NAME, DATA_MOVER_NAME, InstallOptions, render};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use testenv::velero::{NAMESPACE, VELERO_VERSION, Velero};
use testenv::{Backend, TestCluster};

use crate::commands::demo::layout::Layout;
use crate::commands::demo::progress::Step;
use crate::commands::demo::scenario::{self, IMAGE};
use crate::commands::demo::timings::human_seconds;
use crate::commands::demo::verify::HashTree;
use crate::commands::demo::{kube_ops, objects, size, workload};
use ferry_text::human_bytes;

#[derive(clap::Args, Debug)]
pub struct BenchVeleroArgs {
    /// Volume counts to measure, comma-separated: a StatefulSet with that many replicas each.
    #[arg(long, value_delimiter = ',', default_value = "8,32",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub volumes: Vec<u16>,
    /// Nodes of the cluster (kubesim's nodes attached to the real control plane).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Data in each volume, e.g. 16MiB.
    #[arg(long, default_value = "16MiB", value_parser = size::parse_size)]
    pub volume_size: u64,
    /// Keep the run here: the figures (report.txt), Velero's and the cluster's logs. Default:
    /// a temporary directory, removed at the end.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the workload's data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

const CONFIGMAP: &str = "node-agent-config";
const STATEFULSET: &str = "db";

/// One step as the user saw it and as ferry did it.
struct Timed {
    /// The velero CLI's `--wait`, start to end.
    velero: f64,
    /// First data mover object created to last completed (whole seconds: the API's timestamps).
    ferry: f64,
    /// Nodes the data movements ran on.
    nodes: usize,
    /// Each data mover object: name, node, and its creation, start and completion in seconds
    /// after the first creation.
    objects: Vec<(String, String, f64, f64, f64)>,
}

/// What a step's timing is read from, per data mover object.
struct Times {
    name: String,
    node: Option<String>,
    created: Option<k8s_openapi::jiff::Timestamp>,
    started: Option<k8s_openapi::jiff::Timestamp>,
    completed: Option<k8s_openapi::jiff::Timestamp>,
}

impl Times {
    /// A DataUpload's or DataDownload's: its metadata and its status's node and timestamps.
    fn of(
        meta: &kube::api::ObjectMeta,
        node: Option<String>,
        started: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
        completed: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    ) -> Times {
        Times {
            name: meta.name.clone().unwrap_or_default(),
            node,
            created: meta.creation_timestamp.clone().map(|t| t.0),
            started: started.map(|t| t.0),
            completed: completed.map(|t| t.0),
        }
    }
}

struct Measured {
    volumes: usize,
    backup: Timed,
    default: Timed,
    ignore_delay_binding: Timed,
    files: usize,
}

pub(super) async fn bench_velero(args: BenchVeleroArgs) -> anyhow::Result<ExitCode> {
    let nodes = usize::from(args.nodes);
    let (root, temporary) = super::run_root(args.out.as_deref(), "velero");
    let layout = Layout::prepare(&root)?;
    let started = Instant::now();
    println!(
        "ferry bench velero: Velero {VELERO_VERSION} backs up and restores StatefulSets of {} \
         volumes ({} each) with ferry as its data mover, on the real Kubernetes control plane \
         with {nodes} kubesim nodes\n",
        args.volumes
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        human_bytes(args.volume_size),
    );
    let cluster = scenario::start_cluster(&layout, nodes, Backend::Real).await?;
    let measured = measure_all(&cluster, &layout, &args).await;
    cluster.stop().await;
    let measured = measured?;
    let text = render_figures(&measured, nodes, args.volume_size);
    println!("\n{text}");
    if args.out.is_some() {
        std::fs::write(layout.report(), &text).context("writing report.txt")?;
        println!("Figures in {}", layout.report().display());
    } else if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

async fn measure_all(
    cluster: &TestCluster,
    layout: &Layout,
    args: &BenchVeleroArgs,
) -> anyhow::Result<Vec<Measured>> {
    let client = cluster.client();
    let step = Step::start("starting Velero (its CRDs, moto's S3 bucket, velero server)");
    let dir = layout.root.join("velero");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let velero = match Velero::start(cluster, &dir).await {
        Ok(v) => v,
        Err(err) => {
            step.failed();
            return Err(err.context("starting Velero (docs/velero.md)"));
        }
    };
    step.done(&format!("server log {}", velero.logs().display()));

    // ferry beside Velero in its namespace, its controller in this process as its own
    // service account (the Deployment at zero replicas).
    let step = Step::start("installing ferry in namespace velero, starting its controller");
    let mut manifests = render(&InstallOptions::new(CONFIGMAP))?;
    if let Some(spec) = manifests.deployment.spec.as_mut() {
        spec.replicas = Some(0);
    }
    ferry_controller::install::apply(&client, &manifests).await?;
    set_config(&client, false).await?;
    let mut options = ControllerOptions::new(
        cluster
            .service_account_client(NAMESPACE, CONTROLLER_NAME)
            .await?,
        NAMESPACE,
        CONFIGMAP,
    );
    options.image = format!("{IMAGE}:bench");
    options.identity = "ferry-bench-controller".into();
    options.service_account = Some(DATA_MOVER_NAME.into());
    let controller = ferry_controller::start_controller(options).await?;
    step.done("");

    let mut results = Vec::new();
    for &volumes in &args.volumes {
        let measured = measure(cluster, &velero, usize::from(volumes), args).await;
        match measured {
            Ok(m) => results.push(m),
            Err(err) => {
                controller.stop().await;
                return Err(err.context(format!(
                    "the run with {volumes} volumes (Velero's log: {})",
                    velero.logs().join("velero-server.log").display()
                )));
            }
        }
    }
    controller.stop().await;
    Ok(results)
}

/// One volume count: backup, then both restores, each checked byte for byte.
async fn measure(
    cluster: &TestCluster,
    velero: &Velero,
    volumes: usize,
    args: &BenchVeleroArgs,
) -> anyhow::Result<Measured> {
    let client = cluster.client();
    let app = format!("app-{volumes}");
    let backup = format!("b-{volumes}");
    println!("\n{volumes} volumes, namespace {app}:");

    let step = Step::start(format!(
        "a StatefulSet of {volumes} replicas, each volume written with its own data"
    ));
    set_config(&client, false).await?;
    kube_ops::ensure_namespace(&client, &app).await?;
    Api::<StatefulSet>::namespaced(client.clone(), &app)
        .create(
            &PostParams::default(),
            &statefulset(&app, volumes, args.volume_size),
        )
        .await
        .context("creating the StatefulSet")?;
    let plans = workload::plan_workload(volumes, args.volume_size * volumes as u64, args.seed);
    let mut expected = Vec::new();
    let mut files = 0;
    for (i, plan) in plans.into_iter().enumerate() {
        let dir = volume_dir(cluster, &app, i).await?;
        files += plan.files.len();
        let tree = tokio::task::spawn_blocking(move || workload::write_volume(&dir, &plan))
            .await?
            .context("writing a volume")?;
        expected.push(tree);
    }
    step.done(&format!("{files} files"));

    let backup_timed = velero_step(
        velero,
        &client,
        format!("velero backup create {backup} --snapshot-move-data --data-mover ferry --wait"),
        &[
            "backup",
            "create",
            &backup,
            "--include-namespaces",
            &app,
            "--snapshot-move-data",
            "--data-mover",
            "ferry",
            "--wait",
        ],
        &["backup", "describe", &backup],
        &format!("velero.io/backup-name={backup}"),
        volumes,
        |du: &DataUpload| {
            let status = du.status.clone().unwrap_or_default();
            Times::of(
                du.meta(),
                status.node,
                status.start_timestamp,
                status.completion_timestamp,
            )
        },
    )
    .await?;

    let mut restores = Vec::new();
    for ignore_delay_binding in [false, true] {
        lose_namespace(&client, &app).await?;
        set_config(&client, ignore_delay_binding).await?;
        let mode = if ignore_delay_binding {
            "ignoreDelayBinding"
        } else {
            "default"
        };
        let restore = format!(
            "r-{volumes}-{}",
            if ignore_delay_binding {
                "idb"
            } else {
                "default"
            }
        );
        let restore_timed = velero_step(
            velero,
            &client,
            format!("velero restore create {restore} --from-backup {backup} --wait ({mode})"),
            &[
                "restore",
                "create",
                &restore,
                "--from-backup",
                &backup,
                "--wait",
            ],
            &["restore", "describe", &restore],
            &format!("velero.io/restore-name={restore}"),
            volumes,
            |dd: &DataDownload| {
                let status = dd.status.clone().unwrap_or_default();
                Times::of(
                    dd.meta(),
                    status.node,
                    status.start_timestamp,
                    status.completion_timestamp,
                )
            },
        )
        .await?;
        let step = Step::start(format!("verifying every byte ({mode})"));
        let mut differences = Vec::new();
        for (i, tree) in expected.iter().enumerate() {
            let dir = volume_dir(cluster, &app, i).await?;
            let actual = tokio::task::spawn_blocking(move || HashTree::of_directory(&dir))
                .await?
                .context("reading a restored volume")?;
            for difference in tree.differences(&actual) {
                differences.push(format!("data-{STATEFULSET}-{i}: {difference}"));
            }
        }
        if !differences.is_empty() {
            step.failed();
            for d in differences.iter().take(20) {
                println!("      {d}");
            }
            bail!(
                "restore {restore} ({mode}) differs from what was written in {} places",
                differences.len()
            );
        }
        step.done(&format!("{files} files identical"));
        restores.push(restore_timed);
    }
    lose_namespace(&client, &app).await?;
    set_config(&client, false).await?;
    let ignore_delay_binding = restores.pop().expect("two restores");
    let default = restores.pop().expect("two restores");
    Ok(Measured {
        volumes,
        backup: backup_timed,
        default,
        ignore_delay_binding,
        files,
    })
}

/// The StatefulSet: `volumes` replicas, each with a claim from the WaitForFirstConsumer class.
fn statefulset(namespace: &str, volumes: usize, volume_size: u64) -> StatefulSet {
    let labels = json!({"app": STATEFULSET});
    serde_json::from_value(json!({
        "metadata": {"name": STATEFULSET, "namespace": namespace},
        "spec": {
            "replicas": volumes, "serviceName": STATEFULSET,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                {"name": "db", "image": "busybox",
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": objects::STORAGE_CLASS,
                "resources": {"requests": {"storage": objects::capacity_for(volume_size)}}}}],
        },
    }))
    .expect("a valid StatefulSet")
}

/// The node agent configuration: Velero's defaults (one data movement per node at once), with
/// or without ignoreDelayBinding.
async fn set_config(client: &Client, ignore_delay_binding: bool) -> anyhow::Result<()> {
    let config = if ignore_delay_binding {
        json!({"restorePVC": {"ignoreDelayBinding": true}})
    } else {
        json!({})
    };
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE},
        "data": {"node-agent-config.json": config.to_string()},
    }))?;
    kube_ops::apply(&Api::namespaced(client.clone(), NAMESPACE), &map)
        .await
        .context("writing the node-agent ConfigMap")?;
    // The controller reloads it on change; give the watch a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// The directory of claim `data-db-i`'s volume once it is bound.
async fn volume_dir(cluster: &TestCluster, namespace: &str, i: usize) -> anyhow::Result<PathBuf> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client(), namespace);
    let name = format!("data-{STATEFULSET}-{i}");
    let pv = kube_ops::wait_for(
        &format!("claim {namespace}/{name} to be bound"),
        Duration::from_secs(600),
        || {
            let claims = claims.clone();
            let name = name.clone();
            async move {
                let Some(claim) = claims.get_opt(&name).await? else {
                    return Ok(None);
                };
                if claim.status.and_then(|s| s.phase).as_deref() != Some("Bound") {
                    return Ok(None);
                }
                Ok(claim.spec.and_then(|s| s.volume_name))
            }
        },
    )
    .await?;
    Ok(cluster.nodes().volume_path(&pv))
}

/// Deletes the application's namespace and waits until it is gone, its volumes with it.
async fn lose_namespace(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.delete(namespace, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e).context(format!("deleting namespace {namespace}")),
    }
    kube_ops::wait_for(
        &format!("namespace {namespace} to be deleted"),
        Duration::from_secs(600),
        || {
            let namespaces = namespaces.clone();
            async move { Ok(namespaces.get_opt(namespace).await?.is_none().then_some(())) }
        },
    )
    .await
}

/// One velero step under a progress line: the command, then its data mover objects (in
/// Velero's namespace, labelled `label`, one per volume) for ferry's share of the time.
#[allow(clippy::too_many_arguments)]
async fn velero_step<K>(
    velero: &Velero,
    client: &Client,
    title: String,
    command: &[&str],
    describe: &[&str],
    label: &str,
    volumes: usize,
    times: impl Fn(&K) -> Times,
) -> anyhow::Result<Timed>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let step = Step::start(title);
    let took = match velero_wait(velero, command, describe).await {
        Ok(took) => took,
        Err(err) => {
            step.failed();
            return Err(err);
        }
    };
    let objects: Vec<K> = Api::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(label))
        .await?
        .items;
    let timed = timed(
        took,
        objects.iter().map(times),
        volumes,
        K::kind(&()).as_ref(),
    )?;
    step.done(&format!(
        "{} (ferry's data movement {}, on {} node{})",
        human_seconds(timed.velero),
        human_seconds(timed.ferry),
        timed.nodes,
        if timed.nodes == 1 { "" } else { "s" }
    ));
    Ok(timed)
}

/// Runs a velero command with `--wait`; fails unless `describe` then says Completed. Returns
/// the command's wall time in seconds.
async fn velero_wait(velero: &Velero, command: &[&str], describe: &[&str]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(3600), velero.cli(command))
        .await
        .with_context(|| format!("velero {} did not end within an hour", command.join(" ")))??;
    let took = started.elapsed().as_secs_f64();
    let mut args = describe.to_vec();
    args.extend(["--details", "--colorized=false"]);
    let details = velero.cli(&args).await?;
    let text = String::from_utf8_lossy(&details.stdout);
    let phase = text
        .lines()
        .find_map(|l| l.strip_prefix("Phase:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    if !out.status.success() || phase != "Completed" {
        bail!(
            "velero {} ended {phase:?}: {}{}\n{text}",
            command.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// A step's timing from its data mover objects.
fn timed(
    velero: f64,
    objects: impl Iterator<Item = Times>,
    expected: usize,
    kind: &str,
) -> anyhow::Result<Timed> {
    let mut spans = Vec::new();
    for t in objects {
        let (Some(created), Some(completed)) = (t.created, t.completed) else {
            bail!("{kind} {} without its creation or completion time", t.name);
        };
        let started = t.started.unwrap_or(created);
        spans.push((
            t.name,
            t.node.unwrap_or_default(),
            created.as_millisecond(),
            started.as_millisecond(),
            completed.as_millisecond(),
        ));
    }
    if spans.len() != expected {
        bail!("{} {kind} objects for {expected} volumes", spans.len());
    }
    let first = spans.iter().map(|s| s.2).min().unwrap_or(0);
    let last = spans.iter().map(|s| s.4).max().unwrap_or(0);
    let seconds = |ms: i64| (ms - first) as f64 / 1000.0;
    spans.sort_by_key(|s| (s.2, s.0.clone()));
    let nodes: BTreeSet<&str> = spans
        .iter()
        .map(|s| s.1.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    Ok(Timed {
        velero,
        ferry: seconds(last),
        nodes: nodes.len(),
        objects: spans
            .iter()
            .map(|(name, node, c, s, e)| {
                (
                    name.clone(),
                    node.clone(),
                    seconds(*c),
                    seconds(*s),
                    seconds(*e),
                )
            })
            .collect(),
    })
}

fn render_figures(measured: &[Measured], nodes: usize, volume_size: u64) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Velero {VELERO_VERSION} with ferry as its data mover, {nodes} nodes, {} per volume \
         (Velero's defaults: one data movement per node at once, operations looked at every 10 s)\n",
        human_bytes(volume_size)
    );
    let _ = writeln!(
        text,
        "{:>7}  {:<29} {:>14} {:>22} {:>6}",
        "volumes", "step", "velero --wait", "ferry's data movement", "nodes"
    );
    for m in measured {
        for (step, t) in [
            ("backup", &m.backup),
            ("restore, default", &m.default),
            ("restore, ignoreDelayBinding", &m.ignore_delay_binding),
        ] {
            let _ = writeln!(
                text,
                "{:>7}  {:<29} {:>14} {:>22} {:>6}",
                m.volumes,
                step,
                human_seconds(t.velero),
                human_seconds(t.ferry),
                t.nodes
            );
        }
        let _ = writeln!(
            text,
            "{:>7}  restore default / ignoreDelayBinding: {:.2}× (velero --wait), {:.2}× (ferry's data movement); {} files compared after each restore\n",
            m.volumes,
            m.default.velero / m.ignore_delay_binding.velero.max(0.001),
            m.default.ferry / m.ignore_delay_binding.ferry.max(0.001),
            m.files
        );
    }
    let _ = writeln!(
        text,
        "Each data movement, in seconds after the step's first (created, started, completed; \
         the API's timestamps are whole seconds):"
    );
    for m in measured {
        for (step, t) in [
            ("backup", &m.backup),
            ("restore, default", &m.default),
            ("restore, ignoreDelayBinding", &m.ignore_delay_binding),
        ] {
            let _ = writeln!(text, "  {} volumes, {step}:", m.volumes);
            for (name, node, created, started, completed) in &t.objects {
                let _ = writeln!(
                    text,
                    "    {name:<24} {node:<16} {created:>6.0} {started:>6.0} {completed:>6.0}"
                );
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(name: &str, node: &str, created: i64, completed: Option<i64>) -> Times {
        let ts = |ms: i64| Some(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap());
        Times {
            name: name.into(),
            node: Some(node.into()),
            created: ts(created),
            started: None,
            completed: completed.and_then(ts),
        }
    }

    #[test]
    fn the_span_runs_from_the_first_creation_to_the_last_completion() {
        let t = timed(
            9.0,
            [
                times("b", "n1", 2_000, Some(5_000)),
                times("a", "n2", 1_000, Some(7_000)),
                times("c", "n1", 3_000, Some(4_000)),
            ]
            .into_iter(),
            3,
            "DataDownload",
        )
        .unwrap();
        assert_eq!(t.ferry, 6.0);
        assert_eq!(t.nodes, 2);
        assert_eq!(t.velero, 9.0);
        assert_eq!(t.objects[0].0, "a", "in order of creation");
        assert_eq!(t.objects[2].4, 3.0, "c completed 3 s after a was created");
    }

    #[test]
    fn a_missing_or_unfinished_object_is_an_error() {
        let err = timed(
            1.0,
            [times("x", "n1", 1, None)].into_iter(),
            1,
            "DataUpload",
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("DataUpload x without"), "{err}");
        let err = timed(1.0, std::iter::empty(), 2, "DataUpload")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("0 DataUpload objects for 2 volumes"),
            "{err}"
        );
    }
}
