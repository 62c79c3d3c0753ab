//! One restore mode, run as Velero would drive it (ferry's controller already started with the
//! mode's node-agent ConfigMap): a target claim and a DataDownload per volume, and the
//! workload's pods created one at a time as a StatefulSet does (each only once the previous one
//! runs). A watcher records when each restore waits, is exposed, moves its data and is rebound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use tokio::sync::watch;

use super::kube_ops::{self, POLL, wait_for};
use super::objects::{self, FERRY_NAMESPACE, WORKLOAD_NAMESPACE};
use super::observe::{PhaseRecorder, Sighting};
use super::progress::Step;
use super::timings::{ModeRun, RestoreTiming, RunKind};

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
) -> anyhow::Result<ModeOutcome> {
    let downloads: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        FERRY_NAMESPACE,
        &objects::data_download_resource(),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);

    let total: u64 = volumes.iter().map(|v| v.bytes).sum();
    let step = Step::start_bytes(format!("restoring ({})", mode.name()), total);
    let started = Instant::now();
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
        if mode == Mode::IgnoreDelayBinding {
            // Nothing waits for the workload: let every restore finish first, so the
            // picture shows the restores alone; then the workload starts on restored volumes.
            wait_for("every DataDownload to finish", timeout, || {
                let recorder = recorder.clone();
                async move { Ok(recorder.lock().unwrap().all_done().then_some(())) }
            })
            .await?;
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
            let left = deadline.saturating_duration_since(Instant::now());
            wait_for(&format!("workload pod {} to run", volume.pod), left, || {
                let pods = pods.clone();
                let recorder = recorder.clone();
                let name = volume.pod.clone();
                async move {
                    fail_on_failed(&recorder)?;
                    kube_ops::pod_running(&pods, &name).await
                }
            })
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
        fail_on_failed(&recorder)?;
        anyhow::Ok(workload_running_after)
    }
    .await;
    let _ = stop_tx.send(true);
    let step = watcher.await.context("the restore watcher panicked")?;
    let workload_running_after = match result {
        Ok(t) => {
            step.done(&format!("{} volumes", volumes.len()));
            t
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
    })
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

/// Polls the DataDownloads and claims until told to stop, feeding the recorder and the
/// progress bar. Returns the step so the caller can finish it.
async fn watch_restores(
    client: Client,
    mode: Mode,
    volumes: Vec<VolumeToRestore>,
    recorder: Arc<Mutex<PhaseRecorder>>,
    started: Instant,
    mut stop: watch::Receiver<bool>,
    step: Step,
) -> Step {
    let downloads: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        FERRY_NAMESPACE,
        &objects::data_download_resource(),
    );
    let targets: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    let restore_claims: Api<PersistentVolumeClaim> = Api::namespaced(client, FERRY_NAMESPACE);
    loop {
        if *stop.borrow() {
            break;
        }
        let all = ListParams::default();
        let (dds, target_list, restore_list) = tokio::join!(
            downloads.list(&all),
            targets.list(&all),
            restore_claims.list(&all),
        );
        let at = started.elapsed().as_secs_f64();
        if let (Ok(dds), Ok(target_list), Ok(restore_list)) = (dds, target_list, restore_list) {
            let selected: BTreeMap<String, bool> = target_list
                .items
                .iter()
                .map(|c| {
                    let annotated = c
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key("volume.kubernetes.io/selected-node"));
                    (c.metadata.name.clone().unwrap_or_default(), annotated)
                })
                .collect();
            let restore_claim_names: Vec<String> = restore_list
                .items
                .iter()
                .filter_map(|c| c.metadata.name.clone())
                .collect();
            let mut bytes_done = 0;
            let mut recorder = recorder.lock().unwrap();
            for volume in &volumes {
                let name = data_download_name(mode, &volume.claim);
                let Some(dd) = dds
                    .items
                    .iter()
                    .find(|d| d.metadata.name.as_deref() == Some(&name))
                else {
                    continue;
                };
                let status = dd.data.get("status");
                let field = |path: &[&str]| {
                    let mut value = status?;
                    for key in path {
                        value = value.get(key)?;
                    }
                    Some(value.clone())
                };
                let phase = field(&["phase"]).and_then(|v| v.as_str().map(String::from));
                let data_moved = dd.metadata.annotations.as_ref().is_some_and(|a| {
                    a.contains_key(ferry_controller::reconciler::DATA_MOVED_ANNOTATION)
                });
                let sighting = Sighting {
                    consumed: selected.get(&volume.claim).copied().unwrap_or(false)
                        || restore_claim_names.iter().any(|c| c == &name),
                    node: field(&["node"]).and_then(|v| v.as_str().map(String::from)),
                    total_bytes: field(&["progress", "totalBytes"])
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0),
                    bytes_done: field(&["progress", "bytesDone"])
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0),
                    data_moved,
                    message: field(&["message"]).and_then(|v| v.as_str().map(String::from)),
                    phase: phase.clone(),
                };
                bytes_done += if phase.as_deref() == Some("Completed") {
                    volume.bytes
                } else {
                    sighting.bytes_done.min(volume.bytes)
                };
                recorder.saw(&name, at, &sighting);
            }
            step.set_position(bytes_done);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
    step
}
