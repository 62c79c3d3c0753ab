//! `ferry backup create|get|describe`: backups without Velero. `create` snapshots a bound CSI
//! PVC (a VolumeSnapshot in the PVC's namespace) and creates the DataUpload Velero would create
//! for it, for ferry's controller to carry out.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use ferry_controller::crds::{
    CsiSnapshotSpec, DataUpload, DataUploadSpec, SNAPSHOT_TYPE_CSI, parse_go_duration,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

use super::cluster_args::{
    ClusterArgs, DESCRIBE_WIDTH, OutputArgs, OutputFormat, decode, events_for, get_raw, list_raw,
    list_value, print_events, print_raw,
};
use super::data_movement::{self, Movement, WaitArgs};
use super::repo_progress::human_bytes;

/// The label ferry puts on the DataUpload and VolumeSnapshot of `ferry backup create`; its
/// value is the DataUpload's name.
pub const BACKUP_LABEL: &str = "ferry.io/backup";
/// Velero's label with the source PVC's uid.
pub const PVC_UID_LABEL: &str = "velero.io/pvc-uid";
/// The annotation marking a VolumeSnapshotClass as its driver's default.
pub const DEFAULT_SNAPSHOT_CLASS_ANNOTATION: &str =
    "snapshot.storage.kubernetes.io/is-default-class";

#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Snapshot a bound CSI PVC and create a DataUpload backing the snapshot up.
    Create(CreateArgs),
    /// List this data mover's DataUploads: source, phase, node, progress, snapshot.
    Get(GetArgs),
    /// Show one DataUpload in detail, with its recent Events.
    Describe(DescribeArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The volume to back up, NAMESPACE/PVC (bound, on a CSI driver).
    #[arg(long)]
    pvc: String,
    /// BackupStorageLocation holding the repository (default: the location with
    /// `spec.default: true` in ferry's namespace, else the one named `default`).
    #[arg(long)]
    location: Option<String>,
    /// VolumeSnapshotClass (default: the driver's class annotated as default, else its only
    /// class).
    #[arg(long)]
    snapshot_class: Option<String>,
    /// Name of the DataUpload and VolumeSnapshot (default: `<pvc>-<random>`).
    #[arg(long)]
    name: Option<String>,
    /// The data mover that carries the backup out (`spec.datamover`).
    #[arg(long, default_value = "ferry")]
    data_mover_name: String,
    /// `spec.operationTimeout`, in Go duration syntax.
    #[arg(long, default_value = "10m0s")]
    operation_timeout: String,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// List the DataUploads of this data mover (`spec.datamover`).
    #[arg(long, default_value = "ferry")]
    data_mover_name: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The DataUpload's name (as `ferry backup get` lists it).
    name: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(cmd: BackupCommand) -> anyhow::Result<ExitCode> {
    let cluster = match &cmd {
        BackupCommand::Create(args) => &args.cluster,
        BackupCommand::Get(args) => &args.cluster,
        BackupCommand::Describe(args) => &args.cluster,
    };
    let client = cluster.client().await?;
    match cmd {
        BackupCommand::Create(args) => create(client, args).await,
        BackupCommand::Get(args) => get(client, args).await,
        BackupCommand::Describe(args) => describe(client, args).await,
    }
}

fn data_uploads() -> ApiResource {
    ApiResource::erase::<DataUpload>(&())
}

pub(crate) fn snapshot_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind),
        plural,
    )
}

fn backup_storage_locations() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
        "backupstoragelocations",
    )
}

/// What `create` found out about the source volume.
struct Source {
    namespace: String,
    pvc: String,
    pvc_uid: String,
    storage_class: String,
    driver: String,
}

async fn source(client: &kube::Client, spec: &str) -> anyhow::Result<Source> {
    let Some((ns, name)) = spec.split_once('/') else {
        bail!("--pvc {spec:?}: use NAMESPACE/PVC");
    };
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading PersistentVolumeClaim {ns}/{name}"))?
        .with_context(|| format!("PersistentVolumeClaim {ns}/{name} not found"))?;
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let spec = pvc.spec.clone().unwrap_or_default();
    let volume = spec.volume_name.clone().unwrap_or_default();
    if phase != "Bound" || volume.is_empty() {
        bail!(
            "PersistentVolumeClaim {ns}/{name} is {phase}, not Bound: only a bound claim has a volume to snapshot"
        );
    }
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume)
        .await
        .with_context(|| format!("reading PersistentVolume {volume}"))?
        .with_context(|| {
            format!("PersistentVolume {volume} of PersistentVolumeClaim {ns}/{name} not found")
        })?;
    let pv_spec = pv.spec.unwrap_or_default();
    let Some(csi) = pv_spec.csi else {
        bail!(
            "PersistentVolumeClaim {ns}/{name} is bound to PersistentVolume {volume}, which is not a CSI volume (no spec.csi): ferry backs up CSI snapshots only"
        );
    };
    let storage_class = spec
        .storage_class_name
        .filter(|c| !c.is_empty())
        .or(pv_spec.storage_class_name)
        .unwrap_or_default();
    Ok(Source {
        namespace: ns.into(),
        pvc: name.into(),
        pvc_uid: pvc.metadata.uid.unwrap_or_default(),
        storage_class,
        driver: csi.driver,
    })
}

/// The VolumeSnapshotClass to use for `driver`: `requested` (which must be for `driver`), else
/// the driver's class annotated as default, else its only class.
pub fn pick_snapshot_class(
    classes: &[DynamicObject],
    driver: &str,
    requested: Option<&str>,
) -> anyhow::Result<String> {
    let name = |c: &DynamicObject| c.metadata.name.clone().unwrap_or_default();
    let driver_of = |c: &DynamicObject| c.data["driver"].as_str().unwrap_or_default().to_string();
    if let Some(requested) = requested {
        let Some(class) = classes.iter().find(|c| name(c) == requested) else {
            bail!("VolumeSnapshotClass {requested:?} not found");
        };
        if driver_of(class) != driver {
            bail!(
                "VolumeSnapshotClass {requested:?} is for CSI driver {:?}, but the volume's driver is {driver:?}",
                driver_of(class)
            );
        }
        return Ok(requested.into());
    }
    let of_driver: Vec<&DynamicObject> =
        classes.iter().filter(|c| driver_of(c) == driver).collect();
    let defaults: Vec<&DynamicObject> = of_driver
        .iter()
        .copied()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_SNAPSHOT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
        })
        .collect();
    let names =
        |list: &[&DynamicObject]| list.iter().map(|c| name(c)).collect::<Vec<_>>().join(", ");
    match (defaults.as_slice(), of_driver.as_slice()) {
        ([only], _) => Ok(name(only)),
        ([], [only]) => Ok(name(only)),
        ([], []) => bail!(
            "no VolumeSnapshotClass for CSI driver {driver:?}: create one (driver: {driver}) or name one with --snapshot-class"
        ),
        ([], several) => bail!(
            "several VolumeSnapshotClasses for CSI driver {driver:?} ({}) and none is annotated {DEFAULT_SNAPSHOT_CLASS_ANNOTATION}: choose one with --snapshot-class",
            names(several)
        ),
        (several, _) => bail!(
            "several default VolumeSnapshotClasses for CSI driver {driver:?} ({}): choose one with --snapshot-class",
            names(several)
        ),
    }
}

/// The BackupStorageLocation: `requested` (which must exist), else the one with
/// `spec.default: true`, else the one named `default`.
pub fn pick_location(
    locations: &[DynamicObject],
    namespace: &str,
    requested: Option<&str>,
) -> anyhow::Result<String> {
    let name = |l: &DynamicObject| l.metadata.name.clone().unwrap_or_default();
    if let Some(requested) = requested {
        if !locations.iter().any(|l| name(l) == requested) {
            bail!("BackupStorageLocation {namespace}/{requested} not found");
        }
        return Ok(requested.into());
    }
    let defaults: Vec<String> = locations
        .iter()
        .filter(|l| l.data["spec"]["default"] == json!(true))
        .map(name)
        .collect();
    match defaults.as_slice() {
        [only] => Ok(only.clone()),
        [] if locations.iter().any(|l| name(l) == "default") => Ok("default".into()),
        [] => bail!(
            "no default BackupStorageLocation in namespace {namespace} (none has spec.default: true and none is named default): name one with --location"
        ),
        several => bail!(
            "several default BackupStorageLocations in namespace {namespace} ({}): name one with --location",
            several.join(", ")
        ),
    }
}

/// `<pvc>-<5 random characters>`, short enough to be a label value.
fn generated_name(pvc: &str) -> String {
    let mut seed = u64::from(std::process::id())
        ^ (k8s_openapi::jiff::Timestamp::now().subsec_nanosecond() as u64).rotate_left(20)
        ^ k8s_openapi::jiff::Timestamp::now().as_second() as u64;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| {
            // splitmix64
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ALPHABET[((z ^ (z >> 31)) % ALPHABET.len() as u64) as usize] as char
        })
        .collect();
    let prefix: String = pvc.chars().take(57).collect();
    format!("{}-{suffix}", prefix.trim_end_matches(['-', '.']))
}

async fn create(client: kube::Client, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let ns = &args.cluster.namespace;
    parse_go_duration(&args.operation_timeout)
        .with_context(|| format!("--operation-timeout {:?}", args.operation_timeout))?;
    if let Some(name) = &args.name
        && name.len() > 63
    {
        bail!("--name {name:?}: at most 63 characters (it is also a label value)");
    }
    let source = source(&client, &args.pvc).await?;
    let classes = Api::<DynamicObject>::all_with(
        client.clone(),
        &snapshot_resource("VolumeSnapshotClass", "volumesnapshotclasses"),
    )
    .list(&Default::default())
    .await
    .context("listing VolumeSnapshotClasses (are the CSI snapshot CRDs installed?)")?
    .items;
    let snapshot_class =
        pick_snapshot_class(&classes, &source.driver, args.snapshot_class.as_deref())?;
    let locations = list_raw(&client, ns, &backup_storage_locations()).await?;
    let location = pick_location(&locations, ns, args.location.as_deref())?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| generated_name(&source.pvc));

    let snapshots: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &source.namespace,
        &snapshot_resource("VolumeSnapshot", "volumesnapshots"),
    );
    let snapshot: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": name,
            "namespace": source.namespace,
            "labels": {BACKUP_LABEL: name},
        },
        "spec": {
            "source": {"persistentVolumeClaimName": source.pvc},
            "volumeSnapshotClassName": snapshot_class,
        },
    }))?;
    snapshots
        .create(&PostParams::default(), &snapshot)
        .await
        .with_context(|| format!("creating VolumeSnapshot {}/{name}", source.namespace))?;

    let mut du = DataUpload::new(
        &name,
        DataUploadSpec {
            snapshot_type: SNAPSHOT_TYPE_CSI.into(),
            csi_snapshot: Some(CsiSnapshotSpec {
                volume_snapshot: name.clone(),
                storage_class: source.storage_class.clone(),
                snapshot_class: Some(snapshot_class.clone()),
                driver: Some(source.driver.clone()),
            }),
            source_pvc: source.pvc.clone(),
            datamover: Some(args.data_mover_name.clone()),
            backup_storage_location: location,
            source_namespace: source.namespace.clone(),
            operation_timeout: args.operation_timeout.clone(),
            ..Default::default()
        },
    );
    let mut labels = BTreeMap::from([(BACKUP_LABEL.to_string(), name.clone())]);
    if !source.pvc_uid.is_empty() {
        labels.insert(PVC_UID_LABEL.into(), source.pvc_uid.clone());
    }
    du.metadata.labels = Some(labels);
    let uploads: Api<DataUpload> = Api::namespaced(client.clone(), ns);
    if let Err(err) = uploads.create(&PostParams::default(), &du).await {
        // Leave nothing behind: the snapshot would otherwise be nobody's.
        let _ = snapshots.delete(&name, &DeleteParams::default()).await;
        return Err(err).with_context(|| format!("creating DataUpload {ns}/{name}"));
    }
    println!(
        "DataUpload {ns}/{name} created for {}/{} (VolumeSnapshot {}/{name})",
        source.namespace, source.pvc, source.namespace
    );
    if !args.wait.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let read = || async {
        uploads
            .get_opt(&name)
            .await
            .with_context(|| format!("reading DataUpload {ns}/{name}"))
    };
    let code = data_movement::wait(
        data_movement::changes(uploads.clone(), &name),
        &args.wait.options(ns),
    )
    .await
    .with_context(|| format!("waiting for DataUpload {ns}/{name}"))?;
    if code == ExitCode::SUCCESS
        && let Some(du) = read().await?
    {
        let id = du.status.and_then(|s| s.snapshot_id).unwrap_or_default();
        println!("Snapshot ID: {id}");
    }
    Ok(code)
}

fn line(du: &DataUpload, wide: bool) -> String {
    let m = Movement::from(du);
    let snapshot: String = du
        .status
        .as_ref()
        .and_then(|s| s.snapshot_id.clone())
        .unwrap_or_default()
        .chars()
        .take(8)
        .collect();
    let line = format!(
        "{:<32} {:<28} {:<11} {:<14} {:<28} {:<9} {:<9} {:<6}",
        m.name,
        format!("{}/{}", du.spec.source_namespace, du.spec.source_pvc),
        m.phase,
        m.node.as_deref().unwrap_or("-"),
        m.progress_cell(),
        if snapshot.is_empty() {
            "-".into()
        } else {
            snapshot
        },
        m.duration()
            .map(data_movement::duration)
            .unwrap_or_else(|| "-".into()),
        m.age_cell(),
    );
    if !wide {
        return line.trim_end().to_string();
    }
    let snapshot = du
        .spec
        .csi_snapshot
        .as_ref()
        .map(|c| c.volume_snapshot.clone())
        .unwrap_or_default();
    format!(
        "{line} {:<16} {}/{snapshot}",
        du.spec.backup_storage_location, du.spec.source_namespace
    )
}

async fn get(client: kube::Client, args: GetArgs) -> anyhow::Result<ExitCode> {
    let mut items = Vec::new();
    for object in list_raw(&client, &args.cluster.namespace, &data_uploads()).await? {
        let du: DataUpload = decode(&object)?;
        if du.spec.is_for_data_mover(&args.data_mover_name) {
            items.push((object, du));
        }
    }
    if !args.output.output.is_table() {
        let raw: Vec<DynamicObject> = items.into_iter().map(|(o, _)| o).collect();
        print_raw(args.output.output, &list_value(&raw)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let wide = args.output.output == OutputFormat::Wide;
    let mut header = format!(
        "{:<32} {:<28} {:<11} {:<14} {:<28} {:<9} {:<9} {:<6}",
        "NAME", "SOURCE", "PHASE", "NODE", "PROGRESS", "SNAPSHOT", "DURATION", "AGE"
    );
    if wide {
        header.push_str(&format!(" {:<16} VOLUMESNAPSHOT", "LOCATION"));
    }
    println!("{}", header.trim_end());
    for (_, du) in &items {
        println!("{}", line(du, wide));
    }
    Ok(ExitCode::SUCCESS)
}

async fn describe(client: kube::Client, args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let ns = &args.cluster.namespace;
    let object = get_raw(&client, ns, &data_uploads(), &args.name)
        .await?
        .with_context(|| format!("DataUpload {ns}/{} not found", args.name))?;
    if !args.output.output.is_table() {
        print_raw(args.output.output, &serde_json::to_value(&object)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let du: DataUpload = decode(&object)?;
    let m = Movement::from(&du);
    let spec = &du.spec;
    let s = du.status.clone().unwrap_or_default();
    let csi = spec.csi_snapshot.clone().unwrap_or_default();
    let w = DESCRIBE_WIDTH;
    let or_none = |v: Option<String>| v.filter(|v| !v.is_empty()).unwrap_or("<none>".into());
    println!("{:<w$}{ns}/{}", "Name:", args.name);
    println!("{:<w$}{}", "Data mover:", or_none(spec.datamover.clone()));
    println!(
        "{:<w$}{}/{}",
        "Source:", spec.source_namespace, spec.source_pvc
    );
    println!("{:<w$}{}", "Snapshot type:", spec.snapshot_type);
    println!(
        "{:<w$}{}/{}",
        "VolumeSnapshot:", spec.source_namespace, csi.volume_snapshot
    );
    println!("{:<w$}{}", "Storage class:", csi.storage_class);
    println!("{:<w$}{}", "Snapshot class:", or_none(csi.snapshot_class));
    println!("{:<w$}{}", "CSI driver:", or_none(csi.driver));
    println!("{:<w$}{}", "Location:", spec.backup_storage_location);
    println!("{:<w$}{}", "Operation timeout:", spec.operation_timeout);
    if spec.cancel == Some(true) {
        println!("{:<w$}requested", "Cancel:");
    }
    println!();
    println!("{:<w$}{}", "Phase:", m.phase);
    println!("{:<w$}{}", "Node:", m.node.as_deref().unwrap_or("<none>"));
    println!("{:<w$}{}", "Accepted by:", or_none(s.accepted_by_node));
    for line in m.describe_times(w) {
        println!("{line}");
    }
    if let Some(bytes) = s.incremental_bytes {
        println!("{:<w$}{}", "Incremental:", human_bytes(bytes.max(0) as u64));
    }
    println!("{:<w$}{}", "Snapshot ID:", or_none(s.snapshot_id));
    println!("{:<w$}{}", "Path:", or_none(s.path));
    println!("{:<w$}{}", "Message:", or_none(s.message));
    println!();
    print_events(&events_for(&client, ns, DataUpload::KIND, &args.name).await?);
    Ok(ExitCode::SUCCESS)
}
