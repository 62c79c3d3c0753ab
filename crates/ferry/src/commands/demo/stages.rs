//! The demo from start to end: cluster, repository, controller, workload with real data,
//! backup, loss, two restores with verification, report and picture.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::Client;
use kube::api::{Api, DynamicObject};

use super::backup;
use super::controller;
use super::direct;
use super::kube_ops::{self, wait_for};
use super::layout::Layout;
use super::objects::{self, FERRY_NAMESPACE, WORKLOAD_NAMESPACE};
use super::progress::Step;
use super::report;
use super::restore_run::{self, Mode, ModeOutcome, PodImage, VolumeToRestore};
use super::timeline::{self, TimelineInput};
use super::timings::human_bytes;
use super::verify::HashTree;
use super::workload::{self, VolumePlan};

/// The image the demo's pods (workload and data movers) use; kubesim runs this binary for it.
pub const IMAGE: &str = "ferry";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub nodes: usize,
    pub volumes: usize,
    pub total_bytes: u64,
    pub out: PathBuf,
    pub keep: bool,
    pub seed: u64,
}

/// Generous limits: the demo's steps take seconds; these only stop a stuck run.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn run(options: DemoOptions) -> anyhow::Result<ExitCode> {
    let layout = Layout::prepare(&options.out)?;
    let plans = workload::plan_workload(options.volumes, options.total_bytes, options.seed);
    println!(
        "ferry demo: a StatefulSet with {} volumes ({}) on a simulated cluster of {} nodes\n",
        options.volumes,
        human_bytes(options.total_bytes),
        options.nodes
    );
    let started = Instant::now();

    let exe = std::env::current_exe().context("finding this ferry binary for the pods to run")?;
    let step = Step::start(format!(
        "starting kubesim: API server, scheduler, provisioner, {} kubelets",
        options.nodes
    ));
    let cluster = kubesim::Cluster::start(kubesim::ClusterConfig {
        nodes: options.nodes,
        zones: 0,
        data_dir: layout.cluster(),
        port: None,
        image_binaries: BTreeMap::from([(IMAGE.to_string(), exe.clone())]),
    })
    .await
    .context("starting the simulated cluster")?;
    step.done(&format!(
        "API server at {}, storage class `{}` (WaitForFirstConsumer)",
        cluster.url(),
        objects::STORAGE_CLASS
    ));

    let outcome = in_cluster(&cluster, &layout, &options, &plans).await;
    let code = match outcome {
        Ok(code) => code,
        Err(err) => {
            cluster.stop().await;
            return Err(err);
        }
    };
    if options.keep {
        println!();
        println!("The simulated cluster keeps running. In another shell:");
        println!(
            "  export KUBECONFIG={}",
            cluster.kubeconfig_path().display()
        );
        println!("  kubectl get datadownloads -n {FERRY_NAMESPACE}");
        println!("  kubectl get pods,pvc -n {WORKLOAD_NAMESPACE} -o wide");
        println!("Press Ctrl-C to stop it.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    cluster.stop().await;
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(code)
}

async fn in_cluster(
    cluster: &kubesim::Cluster,
    layout: &Layout,
    options: &DemoOptions,
    plans: &[VolumePlan],
) -> anyhow::Result<ExitCode> {
    let client = cluster.client();
    let nodes: Vec<String> = (1..=options.nodes).map(|i| format!("node-{i}")).collect();
    let pod_image = PodImage {
        image: IMAGE.into(),
        command: vec![
            IMAGE.into(),
            "demo".into(),
            "ledger-pod".into(),
            "--volume".into(),
            objects::MOUNT_PATH.into(),
        ],
    };

    // Repository and Velero's side of the configuration.
    let step = Step::start("creating the backup repository and ferry's configuration");
    let repository = backup::init_repository(&layout.repository()).await?;
    configure(&client, layout).await?;
    step.done(&format!(
        "repository {} (BackupStorageLocation `{}`)",
        layout.repository().display(),
        objects::LOCATION
    ));

    let result = async {
        // The workload, with real data.
        let step = Step::start(format!(
            "creating StatefulSet `{}`: {} pods, {} claims",
            workload::STATEFULSET,
            plans.len(),
            plans.len()
        ));
        let volume_dirs = create_workload(&client, plans, &pod_image).await?;
        step.done("all pods running");

        let total: u64 = plans.iter().map(VolumePlan::bytes).sum();
        let step = Step::start_bytes("writing the workload's data", total);
        let expected = write_data(plans, &volume_dirs, &step).await?;
        let files: usize = expected.iter().map(HashTree::files).sum();
        step.done(&format!("{files} files, {}", human_bytes(total)));

        // Back up.
        let step = Step::start_bytes(
            "backing up the volumes (ferry's engine, restic format)",
            total,
        );
        let snapshots = back_up(&repository, plans, &volume_dirs, &step).await?;
        step.done(&format!("{} snapshots", snapshots.len()));

        // Lose everything.
        let step = Step::start("deleting the workload and its volumes (the disaster)");
        lose_workload(&client, &volume_dirs).await?;
        step.done("pods, claims, volumes and their directories gone");

        let to_restore: Vec<VolumeToRestore> = plans
            .iter()
            .zip(&snapshots)
            .map(|(plan, snapshot)| VolumeToRestore {
                claim: plan.pvc.clone(),
                pod: plan.pod.clone(),
                snapshot_id: snapshot.clone(),
                bytes: plan.bytes(),
                capacity: objects::capacity_for(plan.bytes()),
            })
            .collect();

        // The controller reads the node-agent ConfigMap when it starts: one controller per
        // mode, started once the mode's ConfigMap is in place.
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), FERRY_NAMESPACE);
        kube_ops::apply(&configmaps, &objects::node_agent_config(false))
            .await
            .context("writing the node-agent ConfigMap")?;
        let step = Step::start("starting ferry's controller");
        let mut controller = match controller::start(&client, IMAGE).await {
            Ok(controller) => {
                step.done(controller.description());
                Some(controller)
            }
            Err(err) => {
                step.failed();
                println!(
                    "      ferry's controller cannot run in-process here ({err:#}).\n      \
                     The restores go through the data path directly (ferry's restore engine);\n      \
                     the controller's waiting and placement are emulated."
                );
                None
            }
        };
        let emulated = controller.is_none();

        let mut outcomes: Vec<ModeOutcome> = Vec::new();
        let mut all_verified = true;
        for (index, mode) in [Mode::Default, Mode::IgnoreDelayBinding].into_iter().enumerate() {
            let (outcome, dirs) = if !emulated {
                if index > 0 {
                    let step = Step::start("deleting the restored workload and volumes again");
                    let dirs = bound_volume_dirs(&client, plans).await?;
                    lose_workload(&client, &dirs).await?;
                    step.done("");
                    kube_ops::apply(
                        &configmaps,
                        &objects::node_agent_config(mode == Mode::IgnoreDelayBinding),
                    )
                    .await
                    .context("writing the node-agent ConfigMap")?;
                    let step = Step::start(format!(
                        "restarting ferry's controller with restorePVC.ignoreDelayBinding: {}",
                        mode == Mode::IgnoreDelayBinding
                    ));
                    controller = Some(controller::start(&client, IMAGE).await?);
                    step.done("");
                }
                let outcome = restore_run::run_mode(
                    &client,
                    mode,
                    &to_restore,
                    &nodes,
                    &pod_image,
                    RESTORE_TIMEOUT,
                )
                .await;
                if let Some(controller) = controller.take() {
                    controller.stop().await;
                }
                (outcome?, bound_volume_dirs(&client, plans).await?)
            } else {
                let root = layout.cluster().join("direct-restores").join(mode.name());
                direct::run_mode(&repository, mode, &to_restore, &nodes, &root).await?
            };
            let step = Step::start(format!("verifying every byte ({})", mode.name()));
            let problems = verify_restored(plans, &dirs, &expected).await?;
            if problems.is_empty() {
                step.done(&format!("{files} files identical (SHA-256 hash trees)"));
            } else {
                step.failed();
                all_verified = false;
                for problem in problems.iter().take(20) {
                    println!("      {problem}");
                }
                if problems.len() > 20 {
                    println!("      … and {} more", problems.len() - 20);
                }
            }
            outcomes.push(outcome);
        }
        anyhow::Ok((outcomes, all_verified, emulated))
    }
    .await;
    let (outcomes, all_verified, emulated) = result?;

    // Report and picture.
    let runs: Vec<_> = outcomes.iter().map(|o| o.run.clone()).collect();
    let text = report::render_report(&runs);
    println!("\n{text}");
    if !emulated {
        for outcome in &outcomes {
            println!(
                "{}: the whole StatefulSet was running {:.1} s after the restores were created.",
                outcome.run.name, outcome.workload_running_after
            );
        }
    }
    let total: u64 = plans.iter().map(VolumePlan::bytes).sum();
    let input = TimelineInput {
        title: format!(
            "ferry: restoring {} volumes ({}) on {} nodes",
            plans.len(),
            human_bytes(total),
            options.nodes
        ),
        subtitle: format!(
            "Backed up, lost and restored twice on a simulated cluster{}; {}",
            if emulated {
                " (data path run directly, controller's waiting and placement emulated)"
            } else {
                ""
            },
            if all_verified {
                "every byte verified after each restore"
            } else {
                "VERIFICATION FAILED"
            }
        ),
        modes: runs,
    };
    let svg = timeline::render_svg(&input);
    let html = timeline::render_html(&input, &svg);
    std::fs::write(layout.report(), &text)
        .with_context(|| format!("writing {}", layout.report().display()))?;
    std::fs::write(layout.svg(), &svg)
        .with_context(|| format!("writing {}", layout.svg().display()))?;
    std::fs::write(layout.html(), &html)
        .with_context(|| format!("writing {}", layout.html().display()))?;
    println!("\nTimeline: {}", layout.svg().display());
    println!("          {}", layout.html().display());
    println!("Report:   {}", layout.report().display());
    if all_verified {
        println!("Verification: every byte of every volume matched after both restores.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Verification FAILED: see the differences above.");
        Ok(ExitCode::FAILURE)
    }
}

/// The location, the repository password and the namespaces, as a Velero install has them.
async fn configure(client: &Client, layout: &Layout) -> anyhow::Result<()> {
    controller::install_crds(client).await?;
    kube_ops::ensure_namespace(client, FERRY_NAMESPACE).await?;
    kube_ops::ensure_namespace(client, WORKLOAD_NAMESPACE).await?;
    let locations: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        FERRY_NAMESPACE,
        &objects::location_resource(),
    );
    let location = layout.location();
    kube_ops::apply(
        &locations,
        &objects::backup_storage_location(&location.to_string_lossy()),
    )
    .await
    .context("creating the BackupStorageLocation")?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), FERRY_NAMESPACE);
    kube_ops::apply(
        &secrets,
        &objects::repository_secret(backup::REPOSITORY_PASSWORD),
    )
    .await
    .context("creating the repository password secret")?;
    Ok(())
}

/// Creates the StatefulSet's claims and pods, waits until they run, and returns each
/// volume's directory.
async fn create_workload(
    client: &Client,
    plans: &[VolumePlan],
    pod_image: &PodImage,
) -> anyhow::Result<Vec<PathBuf>> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    for plan in plans {
        claims
            .create(
                &Default::default(),
                &objects::workload_claim(&plan.pvc, &objects::capacity_for(plan.bytes())),
            )
            .await
            .with_context(|| format!("creating claim {}", plan.pvc))?;
        pods.create(
            &Default::default(),
            &objects::workload_pod(
                &plan.pod,
                &plan.pvc,
                &pod_image.image,
                pod_image.command.clone(),
            ),
        )
        .await
        .with_context(|| format!("creating pod {}", plan.pod))?;
    }
    for plan in plans {
        wait_for(
            &format!("pod {}/{} to run", WORKLOAD_NAMESPACE, plan.pod),
            SETUP_TIMEOUT,
            || {
                let pods = pods.clone();
                let name = plan.pod.clone();
                async move {
                    let pod = pods.get(&name).await?;
                    let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
                    if phase == "Failed" {
                        bail!("pod {WORKLOAD_NAMESPACE}/{name} failed");
                    }
                    Ok((phase == "Running").then_some(()))
                }
            },
        )
        .await?;
    }
    bound_volume_dirs(client, plans).await
}

/// The directory of the PV bound to each plan's claim.
async fn bound_volume_dirs(client: &Client, plans: &[VolumePlan]) -> anyhow::Result<Vec<PathBuf>> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut dirs = Vec::new();
    for plan in plans {
        let claim = claims
            .get(&plan.pvc)
            .await
            .with_context(|| format!("reading claim {WORKLOAD_NAMESPACE}/{}", plan.pvc))?;
        let Some(pv_name) = claim
            .spec
            .and_then(|s| s.volume_name)
            .filter(|n| !n.is_empty())
        else {
            bail!(
                "claim {WORKLOAD_NAMESPACE}/{} is not bound to a volume",
                plan.pvc
            );
        };
        let pv = volumes
            .get(&pv_name)
            .await
            .with_context(|| format!("reading PersistentVolume {pv_name}"))?;
        let spec = pv.spec.unwrap_or_default();
        let path = spec
            .local
            .map(|l| l.path)
            .or_else(|| spec.host_path.map(|h| h.path))
            .with_context(|| {
                format!(
                    "PersistentVolume {pv_name} has neither spec.local.path nor spec.hostPath.path"
                )
            })?;
        dirs.push(PathBuf::from(path));
    }
    Ok(dirs)
}

/// Writes each volume's files (two volumes at a time) and returns their hash trees.
async fn write_data(
    plans: &[VolumePlan],
    dirs: &[PathBuf],
    step: &Step,
) -> anyhow::Result<Vec<HashTree>> {
    let done = Arc::new(AtomicU64::new(0));
    let jobs = plans
        .iter()
        .cloned()
        .zip(dirs.iter().cloned())
        .map(|(plan, dir)| {
            let done = done.clone();
            async move {
                let bytes = plan.bytes();
                let tree = tokio::task::spawn_blocking(move || workload::write_volume(&dir, &plan))
                    .await
                    .context("the data writer panicked")?
                    .context("writing the workload's data")?;
                done.fetch_add(bytes, Ordering::Relaxed);
                anyhow::Ok(tree)
            }
        });
    let mut stream = futures::stream::iter(jobs).buffered(2);
    let mut trees = Vec::new();
    while let Some(tree) = stream.next().await {
        trees.push(tree?);
        step.set_position(done.load(Ordering::Relaxed));
    }
    Ok(trees)
}

async fn back_up(
    repository: &ferry_repo::Repository,
    plans: &[VolumePlan],
    dirs: &[PathBuf],
    step: &Step,
) -> anyhow::Result<Vec<String>> {
    let done = Arc::new(AtomicU64::new(0));
    let ticker = {
        let done = done.clone();
        let bar = step.bar();
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut snapshots = Vec::new();
    let mut base = 0;
    for (plan, dir) in plans.iter().zip(dirs) {
        done.store(base, Ordering::Relaxed);
        let result = backup::backup_volume(repository, dir, &plan.pvc, done.clone()).await;
        match result {
            Ok(id) => snapshots.push(id),
            Err(err) => {
                ticker.abort();
                return Err(err);
            }
        }
        base += plan.bytes();
    }
    ticker.abort();
    Ok(snapshots)
}

/// Deletes the workload's pods and claims, then their volumes, and makes sure the volumes'
/// directories are gone: after this only the backups hold the data.
async fn lose_workload(client: &Client, dirs: &[PathBuf]) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    kube_ops::delete_all_and_wait(&pods, None, "workload pods", SETUP_TIMEOUT).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    kube_ops::delete_all_and_wait(&claims, None, "workload claims", SETUP_TIMEOUT).await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let all = volumes
        .list(&Default::default())
        .await
        .context("listing PersistentVolumes")?;
    for pv in all.items {
        let of_workload = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.namespace.as_deref())
            == Some(WORKLOAD_NAMESPACE);
        if of_workload {
            let name = pv.metadata.name.clone().unwrap_or_default();
            match volumes.delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("deleting PersistentVolume {name}"));
                }
            }
        }
    }
    for dir in dirs {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| {
                format!("removing the lost volume's directory {}", dir.display())
            })?;
        }
    }
    Ok(())
}

/// Compares every restored volume with the hash tree of what was written.
async fn verify_restored(
    plans: &[VolumePlan],
    dirs: &[PathBuf],
    expected: &[HashTree],
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for ((plan, dir), expected) in plans.iter().zip(dirs).zip(expected) {
        let dir = dir.clone();
        let actual = tokio::task::spawn_blocking(move || HashTree::of_directory(&dir))
            .await
            .context("the verifier panicked")?
            .with_context(|| format!("reading restored volume {}", plan.pvc))?;
        for difference in expected.differences(&actual) {
            problems.push(format!("{}: {difference}", plan.pvc));
        }
    }
    Ok(problems)
}
