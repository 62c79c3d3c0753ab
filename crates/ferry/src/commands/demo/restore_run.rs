//! One restore mode, run as Velero would drive it (ferry's controller already started with the
//! mode's node-agent ConfigMap): a target claim and a DataDownload per volume, and the
//! workload's pods created one at a time as a StatefulSet does (each only once the previous one
//! runs). A watcher records when each restore waits, is exposed, moves its data and is rebound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_controller::crds::{DataDownload, DataDownloadPhase};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, DynamicObject};
use tokio::sync::watch;

use super::cpu_use::{CpuMeter, CpuUse};
use super::kube_ops::{self, wait_for};
use super::objects::{self, FERRY_NAMESPACE, WORKLOAD_NAMESPACE};
use super::observe::{PhaseRecorder, Sighting};
use super::progress::Step;
use super::timings::{ModeRun, RestoreTiming, RunKind};
use super::watched::{Changes, IDLE_LOOK, Watched};

/// Which restore configuration a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `restorePVC` unset: restores wait for their workload pods.
    Default,
    /// `restorePVC.ignoreDelayBinding: true`.
    IgnoreDelayBinding,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::IgnoreDelayBinding => "ignoreDelayBinding",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Mode::Default => {
                "each restore waits for its workload pod (StatefulSet: one pod at a time)"
            }
            Mode::IgnoreDelayBinding => "restores start at once, spread over the nodes",
        }
    }
}

/// A volume to restore: its claim, the pod that uses it, the snapshot and its size.
#[derive(Debug, Clone)]
pub struct VolumeToRestore {
    pub claim: String,
    pub pod: String,
    pub snapshot_id: String,
    pub bytes: u64,
    pub capacity: String,
}

/// What a pod runs: image and command.
#[derive(Debug, Clone)]
pub struct PodImage {
    pub image: String,
    pub command: Vec<String>,
}

/// A finished mode: the timings and when the whole workload was running.
#[derive(Debug, Clone)]
pub struct ModeOutcome {
    pub run: ModeRun,
    pub workload_running_after: f64,
    /// The CPU time used from the first DataDownload's creation until every one had ended.
    pub cpu: Option<CpuUse>,
}

/// The DataDownload's name for a volume in a mode (names stay unique across modes).
pub fn data_download_name(mode: Mode, claim: &str) -> String {
    let suffix = match mode {
        Mode::Default => "default",
        Mode::IgnoreDelayBinding => "idb",
    };
    format!("{claim}-{suffix}")
}

/// Creates the restore target claims, as Velero does before the DataDownloads. Before the
/// controller starts, too: ferry's controller reads claims from a watch cache, and a target
/// claim missing from it fails its DataDownload (reported to the controller's owner).
pub async fn create_target_claims(
    client: &Client,
    volumes: &[VolumeToRestore],
) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    for volume in volumes {
        claims
            .create(
                &Default::default(),
                &objects::restore_target_claim(&volume.claim, &volume.capacity),
            )
            .await
            .with_context(|| format!("creating restore target claim {}", volume.claim))?;
    }
    Ok(())
}

/// Runs one mode to the end (target claims created, controller running): every restore
/// completed and every workload pod running.
pub async fn run_mode(
    client: &Client,
    mode: Mode,
    volumes: &[VolumeToRestore],
    nodes: &[String],
    pod_image: &PodImage,
    timeout: Duration,
    meter: &CpuMeter,
) -> anyhow::Result<ModeOutcome> {
    let downloads: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        FERRY_NAMESPACE,
        &objects::data_download_resource(),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    let mut changes = Changes::default();
    let workload_pods = changes.watch(pods.clone());

    let total: u64 = volumes.iter().map(|v| v.bytes).sum();
    let step = Step::start_bytes(format!("restoring ({})", mode.name()), total);
    let started = Instant::now();
    let cpu_at_start = meter.sample();
    let recorder = Arc::new(Mutex::new(PhaseRecorder::default()));
    // The DataDownloads up front (their target claims exist already), then the workload.
    for volume in volumes {
        let name = data_download_name(mode, &volume.claim);
        recorder
            .lock()
            .unwrap()
            .created(&name, &volume.claim, started.elapsed().as_secs_f64());
        downloads
            .create(
                &Default::default(),
                &objects::data_download(&name, &volume.snapshot_id, &volume.claim, volume.bytes),
            )
            .await
            .with_context(|| format!("creating DataDownload {name}"))?;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_restores(
        client.clone(),
        mode,
        volumes.to_vec(),
        recorder.clone(),
        started,
        stop_rx,
        step,
    ));

    let result = async {
        let deadline = Instant::now() + timeout;
        // When the last restore ended (in this mode, before the workload starts).
        let mut cpu_at_end = None;
        if mode == Mode::IgnoreDelayBinding {
            // Nothing waits for the workload: let every restore finish first, so the
            // picture shows the restores alone; then the workload starts on restored volumes.
            wait_for("every DataDownload to finish", timeout, || {
                let recorder = recorder.clone();
                async move { Ok(recorder.lock().unwrap().all_done().then_some(())) }
            })
            .await?;
            cpu_at_end = meter.sample();
            fail_on_failed(&recorder)?;
        }
        // The StatefulSet: one pod at a time, the next once the previous runs.
        for volume in volumes {
            let pod = objects::workload_pod(
                &volume.pod,
                &volume.claim,
                &pod_image.image,
                pod_image.command.clone(),
            );
            pods.create(&Default::default(), &pod)
                .await
                .with_context(|| format!("creating workload pod {}", volume.pod))?;
            wait_until_running(
                &workload_pods,
                &mut changes,
                &volume.pod,
                &recorder,
                deadline,
            )
            .await?;
        }
        let workload_running_after = started.elapsed().as_secs_f64();
        wait_for(
            "every DataDownload to complete",
            deadline.saturating_duration_since(Instant::now()),
            || {
                let recorder = recorder.clone();
                async move { Ok(recorder.lock().unwrap().all_done().then_some(())) }
            },
        )
        .await?;
        let cpu_at_end = cpu_at_end.or_else(|| meter.sample());
        fail_on_failed(&recorder)?;
        anyhow::Ok((workload_running_after, cpu_at_end))
    }
    .await;
    let _ = stop_tx.send(true);
    let step = watcher.await.context("the restore watcher panicked")?;
    let (workload_running_after, cpu_at_end) = match result {
        Ok(ended) => {
            step.done(&format!("{} volumes", volumes.len()));
            ended
        }
        Err(err) => {
            step.failed();
            return Err(err);
        }
    };

    let recorder = recorder.lock().unwrap();
    let mut restores: Vec<RestoreTiming> = recorder.timings();
    // In the volumes' order (ledger-0, ledger-1, …).
    let order: BTreeMap<&str, usize> = volumes
        .iter()
        .enumerate()
        .map(|(i, v)| (v.claim.as_str(), i))
        .collect();
    restores.sort_by_key(|r| order.get(r.volume.as_str()).copied().unwrap_or(usize::MAX));
    Ok(ModeOutcome {
        run: ModeRun {
            name: mode.name().into(),
            description: mode.description().into(),
            kind: RunKind::Restore,
            nodes: nodes.to_vec(),
            restores,
        },
        workload_running_after,
        cpu: cpu_at_start
            .zip(cpu_at_end)
            .map(|(start, end)| start.until(&end)),
    })
}

/// Waits until the workload pod runs: an error once it or a restore failed, or at `deadline`.
async fn wait_until_running(
    pods: &Watched<Pod>,
    changes: &mut Changes,
    name: &str,
    recorder: &Mutex<PhaseRecorder>,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        fail_on_failed(recorder)?;
        if let Some(pod) = pods.get(WORKLOAD_NAMESPACE, name)
            && kube_ops::running(&pod)?
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("gave up waiting for workload pod {WORKLOAD_NAMESPACE}/{name} to run");
        }
        changes.next(IDLE_LOOK).await;
    }
}

fn fail_on_failed(recorder: &Mutex<PhaseRecorder>) -> anyhow::Result<()> {
    let recorder = recorder.lock().unwrap();
    for (name, record) in recorder.records() {
        if let Some(failure) = &record.failed {
            bail!(
                "DataDownload {FERRY_NAMESPACE}/{name} (volume {}) ended {failure}",
                record.volume
            );
        }
    }
    Ok(())
}

/// Follows the DataDownloads and claims through watches until told to stop, feeding the
/// recorder and the progress bar at each change. Returns the step so the caller can finish it.
async fn watch_restores(
    client: Client,
    mode: Mode,
    volumes: Vec<VolumeToRestore>,
    recorder: Arc<Mutex<PhaseRecorder>>,
    started: Instant,
    mut stop: watch::Receiver<bool>,
    step: Step,
) -> Step {
    let mut changes = Changes::default();
    let downloads = changes.watch(Api::<DataDownload>::namespaced(
        client.clone(),
        FERRY_NAMESPACE,
    ));
    let targets = changes.watch(Api::<PersistentVolumeClaim>::namespaced(
        client.clone(),
        WORKLOAD_NAMESPACE,
    ));
    let restore_claims = changes.watch(Api::<PersistentVolumeClaim>::namespaced(
        client,
        FERRY_NAMESPACE,
    ));
    loop {
        if *stop.borrow() {
            break;
        }
        let bytes_done = {
            let at = started.elapsed().as_secs_f64();
            let mut recorder = recorder.lock().unwrap();
            let mut bytes_done = 0;
            for volume in &volumes {
                let name = data_download_name(mode, &volume.claim);
                let Some(dd) = downloads.get(FERRY_NAMESPACE, &name) else {
                    continue;
                };
                let target_node_selected = targets
                    .get(WORKLOAD_NAMESPACE, &volume.claim)
                    .is_some_and(|c| {
                        c.metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key("volume.kubernetes.io/selected-node"))
                    });
                let sighting = sighting(&dd, || {
                    target_node_selected || restore_claims.get(FERRY_NAMESPACE, &name).is_some()
                });
                bytes_done += if dd.phase() == DataDownloadPhase::Completed {
                    volume.bytes
                } else {
                    sighting.bytes_done.min(volume.bytes)
                };
                recorder.saw(&name, at, &sighting);
            }
            bytes_done
        };
        step.set_position(bytes_done);
        tokio::select! {
            _ = changes.next(IDLE_LOOK) => {}
            _ = stop.changed() => {}
        }
    }
    step
}

/// What a look at a DataDownload tells: `consumed` says whether its volume is taken already
/// (a node chosen for the target claim, or the restore claim created).
fn sighting(dd: &DataDownload, consumed: impl FnOnce() -> bool) -> Sighting {
    let status = dd.status.clone().unwrap_or_default();
    let progress = status.progress.unwrap_or_default();
    let phase = dd.phase();
    Sighting {
        consumed: consumed(),
        node: status.node.filter(|n| !n.is_empty()),
        total_bytes: progress.total_bytes.unwrap_or(0).max(0) as u64,
        bytes_done: progress.bytes_done.unwrap_or(0).max(0) as u64,
        data_moved: dd
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ferry_controller::reconciler::DATA_MOVED_ANNOTATION)),
        message: status.message,
        phase: Some(phase.as_str().to_string()),
    }
}
