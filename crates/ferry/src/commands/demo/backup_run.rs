//! The backup half, as Velero's CSI plugin drives it for `--snapshot-move-data --data-mover
//! ferry` (ferry's controller already started): a VolumeSnapshot of every workload volume and a
//! DataUpload for ferry of each, all created at once, while the workload keeps running. A
//! watcher records when each backup is exposed (backup volume from the snapshot, backup pod)
//! and moves its data, on which node; the snapshot ids come from the DataUploads' status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_controller::crds::{DataUpload, DataUploadPhase};
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::json;

use super::kube_ops;
use super::objects::{FERRY_NAMESPACE, LOCATION, STORAGE_CLASS, WORKLOAD_NAMESPACE};
use super::observe::{PhaseRecorder, Sighting};
use super::progress::Step;
use super::timings::{ModeRun, RestoreTiming, RunKind};
use super::watched::{Changes, IDLE_LOOK, Watched};
use super::workload::VolumePlan;
use crate::commands::backup::snapshot_resource;

/// The VolumeSnapshotClass of kubesim's CSI driver, as a Velero install labels it.
pub const SNAPSHOT_CLASS: &str = "kubesim";
/// The label Velero's CSI plugin looks for to choose a VolumeSnapshotClass.
const VELERO_CLASS_LABEL: &str = "velero.io/csi-volumesnapshot-class";
/// Velero's label tying a DataUpload to its backup.
const BACKUP_LABEL: &str = "velero.io/backup-name";
/// The demo's backup name (the repository snapshots carry it as a tag).
pub const BACKUP_NAME: &str = "ledger-backup";

/// A finished backup: its timings and each volume's repository snapshot id, in plan order.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub run: ModeRun,
    pub snapshot_ids: Vec<String>,
}

/// One way of backing the volumes up: which location, and whether the DataUploads come all at
/// once (as Velero creates them) or one after another (each alone in the cluster).
#[derive(Debug, Clone)]
pub struct Pass {
    /// The run's name in the report and the picture.
    pub name: String,
    pub description: String,
    /// The BackupStorageLocation the DataUploads name.
    pub location: String,
    /// Ends the DataUploads' (and VolumeSnapshots') names, unique per pass.
    pub suffix: String,
    pub one_at_a_time: bool,
}

impl Pass {
    /// As Velero's backup does it: every DataUpload at once, to the default location.
    pub fn velero() -> Pass {
        Pass {
            name: "backup".into(),
            description: "DataUploads from CSI snapshots, all at once".into(),
            location: LOCATION.into(),
            suffix: "backup".into(),
            one_at_a_time: false,
        }
    }

    /// The DataUpload's (and the VolumeSnapshot's) name for a volume.
    pub fn upload_name(&self, claim: &str) -> String {
        format!("{claim}-{}", self.suffix)
    }
}

/// kubesim's VolumeSnapshotClass, created once.
pub async fn ensure_snapshot_class(client: &Client) -> anyhow::Result<()> {
    let classes: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &snapshot_resource("VolumeSnapshotClass", "volumesnapshotclasses"),
    );
    let class: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {"name": SNAPSHOT_CLASS, "labels": {VELERO_CLASS_LABEL: "true"}},
        "driver": kubesim::nodes::bootstrap::PROVISIONER,
        "deletionPolicy": "Delete",
    }))?;
    kube_ops::apply(&classes, &class)
        .await
        .context("creating kubesim's VolumeSnapshotClass")?;
    Ok(())
}

/// Backs every planned volume up through DataUploads as `pass` says and waits until all
/// completed.
pub async fn run_backups(
    client: &Client,
    plans: &[VolumePlan],
    nodes: &[String],
    pass: &Pass,
    timeout: Duration,
) -> anyhow::Result<BackupOutcome> {
    let snapshots: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        WORKLOAD_NAMESPACE,
        &snapshot_resource("VolumeSnapshot", "volumesnapshots"),
    );
    let uploads: Api<DataUpload> = Api::namespaced(client.clone(), FERRY_NAMESPACE);
    let total: u64 = plans.iter().map(VolumePlan::bytes).sum();
    let step = Step::start_bytes(
        format!(
            "backing up through DataUploads (CSI snapshots, ferry's data mover, {})",
            if pass.one_at_a_time {
                "one at a time"
            } else {
                "all at once"
            }
        ),
        total,
    );
    let started = Instant::now();
    let deadline = started + timeout;
    let mut recorder = PhaseRecorder::default();
    let mut changes = Changes::default();
    let watched = changes.watch(uploads.clone());
    let batches: Vec<&[VolumePlan]> = if pass.one_at_a_time {
        plans.chunks(1).collect()
    } else {
        vec![plans]
    };
    let mut ids = BTreeMap::new();
    let mut bytes_before = 0;
    for batch in batches {
        let result = async {
            for plan in batch {
                let name = pass.upload_name(&plan.pvc);
                recorder.created(&name, &plan.pvc, started.elapsed().as_secs_f64());
                create_snapshot_and_upload(&snapshots, &uploads, pass, &name, &plan.pvc).await?;
            }
            follow(
                &watched,
                &mut changes,
                batch,
                pass,
                &mut recorder,
                started,
                deadline,
                &step,
                bytes_before,
            )
            .await
        }
        .await;
        match result {
            Ok(batch_ids) => ids.extend(batch_ids),
            Err(err) => {
                step.failed();
                return Err(err);
            }
        }
        bytes_before += batch.iter().map(VolumePlan::bytes).sum::<u64>();
    }
    let snapshot_ids = plans
        .iter()
        .map(|plan| {
            let name = pass.upload_name(&plan.pvc);
            ids.get(&name).cloned().with_context(|| {
                format!("DataUpload {FERRY_NAMESPACE}/{name} completed without a snapshot id")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    step.done(&format!("{} repository snapshots", snapshot_ids.len()));

    let mut backups: Vec<RestoreTiming> = recorder.timings();
    let order: BTreeMap<&str, usize> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| (p.pvc.as_str(), i))
        .collect();
    backups.sort_by_key(|r| order.get(r.volume.as_str()).copied().unwrap_or(usize::MAX));
    Ok(BackupOutcome {
        run: ModeRun {
            name: pass.name.clone(),
            description: pass.description.clone(),
            kind: RunKind::Backup,
            nodes: nodes.to_vec(),
            restores: backups,
        },
        snapshot_ids,
    })
}

/// Follows the batch's DataUploads (a watch) until every one completed (an error once one
/// failed), feeding the recorder and the progress bar; returns their snapshot ids by name.
#[allow(clippy::too_many_arguments)]
async fn follow(
    watched: &Watched<DataUpload>,
    changes: &mut Changes,
    batch: &[VolumePlan],
    pass: &Pass,
    recorder: &mut PhaseRecorder,
    started: Instant,
    deadline: Instant,
    step: &Step,
    bytes_before: u64,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut seen = BTreeSet::new();
    loop {
        let at = started.elapsed().as_secs_f64();
        let mut bytes_done = bytes_before;
        let mut ids = BTreeMap::new();
        for plan in batch {
            let name = pass.upload_name(&plan.pvc);
            let Some(du) = watched.get(FERRY_NAMESPACE, &name) else {
                if seen.contains(&name) {
                    bail!("DataUpload {FERRY_NAMESPACE}/{name} disappeared");
                }
                // Created, not yet shown by the watch.
                continue;
            };
            seen.insert(name.clone());
            let sighting = sighting(&du);
            bytes_done += if du.phase() == DataUploadPhase::Completed {
                plan.bytes()
            } else {
                sighting.bytes_done.min(plan.bytes())
            };
            recorder.saw(&name, at, &sighting);
            if let Some(id) = du
                .status
                .as_ref()
                .and_then(|s| s.snapshot_id.clone())
                .filter(|id| !id.is_empty())
            {
                ids.insert(name, id);
            }
        }
        step.set_position(bytes_done);
        if let Some((name, record)) = recorder.records().find(|(_, r)| r.failed.is_some()) {
            bail!(
                "DataUpload {FERRY_NAMESPACE}/{name} (volume {}) ended {}",
                record.volume,
                record.failed.as_deref().unwrap_or_default()
            );
        }
        if recorder.all_done() {
            return Ok(ids);
        }
        if Instant::now() >= deadline {
            bail!("gave up waiting for the DataUploads to complete");
        }
        changes.next(IDLE_LOOK).await;
    }
}

/// The VolumeSnapshot and the DataUpload Velero's CSI plugin would create for a claim.
async fn create_snapshot_and_upload(
    snapshots: &Api<DynamicObject>,
    uploads: &Api<DataUpload>,
    pass: &Pass,
    name: &str,
    claim: &str,
) -> anyhow::Result<()> {
    let snapshot: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": WORKLOAD_NAMESPACE,
                     "labels": {BACKUP_LABEL: BACKUP_NAME}},
        "spec": {"source": {"persistentVolumeClaimName": claim},
                 "volumeSnapshotClassName": SNAPSHOT_CLASS},
    }))?;
    snapshots
        .create(&Default::default(), &snapshot)
        .await
        .with_context(|| format!("creating VolumeSnapshot {WORKLOAD_NAMESPACE}/{name}"))?;
    let upload: DataUpload = serde_json::from_value(json!({
        "apiVersion": "velero.io/v2alpha1",
        "kind": "DataUpload",
        "metadata": {"name": name, "namespace": FERRY_NAMESPACE,
                     "labels": {BACKUP_LABEL: BACKUP_NAME}},
        "spec": {
            "snapshotType": "CSI",
            "sourcePVC": claim,
            "sourceNamespace": WORKLOAD_NAMESPACE,
            "backupStorageLocation": pass.location,
            "operationTimeout": "10m0s",
            "datamover": "ferry",
            "csiSnapshot": {"volumeSnapshot": name, "storageClass": STORAGE_CLASS,
                            "snapshotClass": SNAPSHOT_CLASS,
                            "driver": kubesim::nodes::bootstrap::PROVISIONER},
        },
    }))?;
    uploads
        .create(&Default::default(), &upload)
        .await
        .with_context(|| format!("creating DataUpload {FERRY_NAMESPACE}/{name}"))?;
    Ok(())
}

/// What one look at a DataUpload tells the recorder. A backup has no consumer to wait for:
/// its wait ends when ferry accepts it (a free slot on a node, the snapshot taken).
fn sighting(du: &DataUpload) -> Sighting {
    let phase = du.phase();
    let status = du.status.clone().unwrap_or_default();
    let progress = status.progress.unwrap_or_default();
    Sighting {
        phase: Some(phase.as_str().to_string()),
        node: status.node.filter(|n| !n.is_empty()),
        total_bytes: progress.total_bytes.unwrap_or(0).max(0) as u64,
        bytes_done: progress.bytes_done.unwrap_or(0).max(0) as u64,
        consumed: !matches!(phase, DataUploadPhase::New),
        data_moved: false,
        message: status.message,
    }
}

/// Removes the backup's VolumeSnapshots once the data is in the repository, as Velero does at
/// the end of a backup (ferry already released the snapshot contents it took over).
pub async fn delete_snapshots(
    client: &Client,
    plans: &[VolumePlan],
    pass: &Pass,
) -> anyhow::Result<()> {
    let snapshots: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        WORKLOAD_NAMESPACE,
        &snapshot_resource("VolumeSnapshot", "volumesnapshots"),
    );
    for plan in plans {
        let name = pass.upload_name(&plan.pvc);
        match snapshots.delete(&name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("deleting VolumeSnapshot {WORKLOAD_NAMESPACE}/{name}")
                });
            }
        }
    }
    Ok(())
}
