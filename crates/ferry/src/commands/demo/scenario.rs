//! The demo's scenario, shared with `ferry bench restore`: a simulated cluster, a repository
//! and Velero's configuration, a StatefulSet whose volumes get real data, backed up through
//! ferry's DataUpload controller and then lost; afterwards, the volumes restored in a mode through ferry's DataDownload controller
//! (running in this process) and every byte verified. Each step prints its line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::Client;
use kube::api::{Api, DynamicObject};

use super::backup;
use super::backup_run;
use super::controller::{self, Controller};
use super::cpu_use::CpuMeter;
use super::kube_ops::{self, wait_for};
use super::layout::Layout;
use super::objects::{self, FERRY_NAMESPACE, WORKLOAD_NAMESPACE};
use super::progress::Step;
use super::restore_run::{self, Mode, ModeOutcome, PodImage, VolumeToRestore};
use super::timings::ModeRun;
use super::verify::HashTree;
use super::workload::{self, VolumePlan};
use ferry_text::human_bytes;
use testenv::{Backend, ClusterConfig, TestCluster};

/// The image the demo's pods (workload and data movers) use; kubesim runs this binary for it.
pub const IMAGE: &str = "ferry";

/// Generous limits: the scenario's steps take seconds; these only stop a stuck run.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(900);

/// Starts a cluster with `nodes` kubesim nodes, their data under the layout's cluster
/// directory; containers of the image [`IMAGE`] run this binary. kubesim runs in this
/// process; the real control plane is the one `testenv/build` makes (docs/real-cluster.md).
pub async fn start_cluster(
    layout: &Layout,
    nodes: usize,
    backend: Backend,
) -> anyhow::Result<TestCluster> {
    let exe = std::env::current_exe().context("finding this ferry binary for the pods to run")?;
    let step = Step::start(match backend {
        Backend::Kubesim => {
            format!("starting kubesim: API server, scheduler, provisioner, {nodes} kubelets")
        }
        Backend::Real => format!(
            "starting the real control plane (etcd, kube-apiserver, kube-scheduler, \
             kube-controller-manager) with {nodes} kubesim nodes"
        ),
    });
    let cluster = TestCluster::start(
        backend,
        ClusterConfig {
            nodes,
            zones: 0,
            data_dir: layout.cluster(),
            image_binaries: BTreeMap::from([(IMAGE.to_string(), exe)]),
        },
    )
    .await;
    let cluster = match cluster {
        Ok(cluster) => cluster,
        Err(err) => {
            step.failed();
            return Err(err.context(format!("starting the {} cluster", backend.name())));
        }
    };
    step.done(&format!(
        "API server at {}, storage class `{}` (WaitForFirstConsumer)",
        cluster.url(),
        objects::STORAGE_CLASS
    ));
    Ok(cluster)
}

/// The workload after the disaster: its data only in the repository, and what is needed to
/// restore and check it.
pub struct BackedUp {
    /// The workload as it was written (its volume directories are gone now).
    pub written: Written,
    pub to_restore: Vec<VolumeToRestore>,
    /// The backup through DataUploads, as observed (`None`: backed up with ferry's engine
    /// directly, because the controller could not run here).
    pub backup: Option<ModeRun>,
}

/// The workload before the backup: running, its volumes holding the written data.
pub struct Written {
    pub repository: ferry_repo::Repository,
    pub plans: Vec<VolumePlan>,
    /// Hash trees of what was written, one per volume.
    pub expected: Vec<HashTree>,
    /// Files in all volumes.
    pub files: usize,
    /// Each volume's directory on its node, in plan order.
    pub volume_dirs: Vec<PathBuf>,
    /// The cluster's node names, in lane order.
    pub nodes: Vec<String>,
    pub pod_image: PodImage,
}

impl Written {
    /// Creates the repository and Velero's configuration, then the StatefulSet with its data.
    pub async fn create(
        client: &Client,
        layout: &Layout,
        nodes: usize,
        plans: Vec<VolumePlan>,
    ) -> anyhow::Result<Written> {
        let nodes: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
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

        let step = Step::start("creating the backup repository and ferry's configuration");
        let repository = backup::init_repository(&layout.repository()).await?;
        configure(client, layout).await?;
        step.done(&format!(
            "repository {} (BackupStorageLocation `{}`)",
            layout.repository().display(),
            objects::LOCATION
        ));

        let step = Step::start(format!(
            "creating StatefulSet `{}`: {} pods, {} claims",
            workload::STATEFULSET,
            plans.len(),
            plans.len()
        ));
        let volume_dirs = create_workload(client, &plans, &pod_image).await?;
        step.done("all pods running");

        let total: u64 = plans.iter().map(VolumePlan::bytes).sum();
        let step = Step::start_bytes("writing the workload's data", total);
        let expected = write_data(&plans, &volume_dirs, &step).await?;
        let files: usize = expected.iter().map(HashTree::files).sum();
        step.done(&format!("{files} files, {}", human_bytes(total)));
        Ok(Written {
            repository,
            plans,
            expected,
            files,
            volume_dirs,
            nodes,
            pod_image,
        })
    }
}

impl BackedUp {
    /// Creates the repository and Velero's configuration, the StatefulSet with its data, backs
    /// the volumes up through DataUploads (ferry's controller started at `placement` for it),
    /// then deletes the workload and its volumes. An in-process controller that cannot start
    /// makes the backup fall back to ferry's engine; a controller process must start.
    pub async fn prepare(
        client: &Client,
        layout: &Layout,
        nodes: usize,
        plans: Vec<VolumePlan>,
        placement: controller::Placement<'_>,
    ) -> anyhow::Result<BackedUp> {
        let in_process = matches!(placement, controller::Placement::InProcess(_));
        let written = Written::create(client, layout, nodes, plans).await?;
        let Written {
            repository,
            plans,
            volume_dirs,
            nodes,
            ..
        } = &written;
        let total: u64 = plans.iter().map(VolumePlan::bytes).sum();

        let (snapshots, backup) = match start_backup_controller(client, placement).await {
            Ok(controller) => {
                let outcome = backup_run::run_backups(
                    client,
                    plans,
                    nodes,
                    &backup_run::Pass::velero(),
                    RESTORE_TIMEOUT,
                )
                .await;
                controller.stop().await;
                let outcome = outcome?;
                backup_run::delete_snapshots(client, plans, &backup_run::Pass::velero()).await?;
                (outcome.snapshot_ids, Some(outcome.run))
            }
            Err(err) if in_process => {
                println!(
                    "      ferry's controller cannot run in-process here ({err:#}).\n      \
                     The volumes are backed up with ferry's engine directly."
                );
                let step = Step::start_bytes(
                    "backing up the volumes (ferry's engine, restic format)",
                    total,
                );
                let snapshots = back_up(repository, plans, volume_dirs, &step).await?;
                step.done(&format!("{} snapshots", snapshots.len()));
                (snapshots, None)
            }
            Err(err) => return Err(err),
        };

        let step = Step::start("deleting the workload and its volumes (the disaster)");
        lose_workload(client, volume_dirs).await?;
        step.done("pods, claims, volumes and their directories gone");

        let to_restore = plans
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
        Ok(BackedUp {
            written,
            to_restore,
            backup,
        })
    }

    pub fn total_bytes(&self) -> u64 {
        self.written.plans.iter().map(VolumePlan::bytes).sum()
    }

    /// Writes the mode's node-agent ConfigMap, creates the restore target claims and starts a
    /// controller that reads the ConfigMap.
    pub async fn start_controller(
        &self,
        client: &Client,
        mode: Mode,
        placement: controller::Placement<'_>,
    ) -> anyhow::Result<Controller> {
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), FERRY_NAMESPACE);
        kube_ops::apply(
            &configmaps,
            &objects::node_agent_config(mode == Mode::IgnoreDelayBinding),
        )
        .await
        .context("writing the node-agent ConfigMap")?;
        restore_run::create_target_claims(client, &self.to_restore).await?;
        let step = Step::start(format!(
            "starting ferry's controller (restorePVC.ignoreDelayBinding: {})",
            mode == Mode::IgnoreDelayBinding
        ));
        match controller::start(placement, IMAGE).await {
            Ok(controller) => {
                step.done(controller.description());
                Ok(controller)
            }
            Err(err) => {
                step.failed();
                Err(err)
            }
        }
    }

    /// Restores every volume in `mode` through `controller` (stopped afterwards) and returns
    /// the timings, the restored volumes' directories and, for a controller process, its peak
    /// resident memory.
    pub async fn restore_with_controller(
        &self,
        client: &Client,
        mode: Mode,
        controller: Controller,
        control_plane: Option<i32>,
    ) -> anyhow::Result<(ModeOutcome, Vec<PathBuf>, Option<u64>)> {
        let meter = CpuMeter {
            control_plane,
            controller: controller.pid(),
        };
        let outcome = restore_run::run_mode(
            client,
            mode,
            &self.to_restore,
            &self.written.nodes,
            &self.written.pod_image,
            RESTORE_TIMEOUT,
            &meter,
        )
        .await;
        let peak_rss = controller.stop().await;
        let outcome = outcome?;
        Ok((
            outcome,
            bound_volume_dirs(client, &self.written.plans).await?,
            peak_rss,
        ))
    }

    /// Deletes what a restore brought back (workload, claims, volumes), for the next mode.
    pub async fn clear_restored(&self, client: &Client) -> anyhow::Result<()> {
        let step = Step::start("deleting the restored workload and volumes again");
        let dirs = bound_volume_dirs(client, &self.written.plans).await?;
        lose_workload(client, &dirs).await?;
        step.done("");
        Ok(())
    }

    /// Compares every restored volume with what was written; prints the outcome (and up to
    /// 20 differences) and says whether all matched.
    pub async fn verify(&self, mode: Mode, dirs: &[PathBuf]) -> anyhow::Result<bool> {
        let step = Step::start(format!("verifying every byte ({})", mode.name()));
        let problems = verify_restored(&self.written.plans, dirs, &self.written.expected).await?;
        if problems.is_empty() {
            step.done(&format!(
                "{} files identical (SHA-256 hash trees)",
                self.written.files
            ));
            return Ok(true);
        }
        step.failed();
        for problem in problems.iter().take(20) {
            println!("      {problem}");
        }
        if problems.len() > 20 {
            println!("      … and {} more", problems.len() - 20);
        }
        Ok(false)
    }
}

/// Starts ferry's controller for the backup, with the node-agent ConfigMap's defaults.
pub async fn start_backup_controller(
    client: &Client,
    placement: controller::Placement<'_>,
) -> anyhow::Result<Controller> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), FERRY_NAMESPACE);
    kube_ops::apply(&configmaps, &objects::node_agent_config(false))
        .await
        .context("writing the node-agent ConfigMap")?;
    let step = Step::start("starting ferry's controller for the backup");
    match controller::start(placement, IMAGE).await {
        Ok(controller) => {
            step.done(controller.description());
            Ok(controller)
        }
        Err(err) => {
            step.failed();
            Err(err)
        }
    }
}

/// The location, the repository password, kubesim's VolumeSnapshotClass and the namespaces,
/// as a Velero install has them.
pub async fn configure(client: &Client, layout: &Layout) -> anyhow::Result<()> {
    controller::install(client).await?;
    kube_ops::ensure_namespace(client, WORKLOAD_NAMESPACE).await?;
    backup_run::ensure_snapshot_class(client).await?;
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
            || kube_ops::pod_running(&pods, &plan.pod),
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
        // kubesim's CSI volumes say where their data is in a volume attribute.
        let csi_path = spec
            .csi
            .and_then(|c| c.volume_attributes)
            .and_then(|a| a.get(kubesim::nodes::volume_data::PATH_ATTRIBUTE).cloned());
        let path = csi_path
            .or_else(|| spec.local.map(|l| l.path))
            .or_else(|| spec.host_path.map(|h| h.path))
            .with_context(|| {
                format!("PersistentVolume {pv_name} is not a kubesim volume with a local path")
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
    let ticker = step.follow(done.clone());
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
