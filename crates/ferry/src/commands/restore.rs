//! `ferry restore create|get|describe`: restores without Velero. `create` checks first (see
//! `restore_checks`), then makes the target PVC (with Velero's `velero.io/dynamic-pv-restore`
//! selector, so nothing provisions it) and the DataDownload for ferry's controller.

use std::process::ExitCode;

use anyhow::{Context, bail};
use ferry_controller::crds::{DataDownload, DataDownloadSpec, TargetVolumeSpec};
use ferry_mover::REPO_PASSWORD_SECRET;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams};
use serde_json::json;

use super::cluster_args::{
    ClusterArgs, DESCRIBE_WIDTH, OutputArgs, OutputFormat, decode, events_for, get_raw, list_raw,
    list_value, print_events, print_raw,
};
use super::data_movement::{self, Movement, WaitArgs};
use super::repo_progress::human_bytes;
use super::restore_checks;

#[derive(clap::Subcommand, Debug)]
pub enum RestoreCommand {
    /// Create a target PVC and a DataDownload restoring a snapshot into it.
    Create(CreateArgs),
    /// List DataDownloads: phase, node, progress.
    Get(GetArgs),
    /// Show one DataDownload in detail.
    Describe(DescribeArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Snapshot ID (or unique prefix) in the repository.
    #[arg(long)]
    snapshot: String,
    /// Target, NAMESPACE/PVC; the restore creates this PVC, so it must not exist.
    #[arg(long)]
    to: String,
    /// BackupStorageLocation (in ferry's namespace) holding the repository.
    #[arg(long)]
    location: String,
    /// Namespace the snapshot was taken in, which names its repository (default: the target
    /// namespace).
    #[arg(long)]
    source_namespace: Option<String>,
    /// StorageClass of the target PVC (default: the cluster's default class).
    #[arg(long)]
    storage_class: Option<String>,
    /// Size of the target PVC, as a Kubernetes quantity (`64Mi`, `10Gi`). Default: from the
    /// snapshot, its data plus a tenth rounded up to whole GiB.
    #[arg(long)]
    size: Option<String>,
    /// Block volume instead of a filesystem.
    #[arg(long)]
    block: bool,
    /// The data mover that carries the restore out (`spec.datamover`).
    #[arg(long, default_value = "ferry")]
    data_mover_name: String,
    /// Secret in ferry's namespace with the repository password (key `repository-password`),
    /// read to check the snapshot.
    #[arg(long, default_value = REPO_PASSWORD_SECRET)]
    password_secret: String,
    /// Do not open the repository from here (a location this machine cannot reach, such as a
    /// local path on the nodes); the controller still checks it. Needs --size.
    #[arg(long)]
    skip_repository_check: bool,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// List the DataDownloads of this data mover (`spec.datamover`).
    #[arg(long, default_value = "ferry")]
    data_mover_name: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The DataDownload's name (as `ferry restore get` lists it).
    name: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(cmd: RestoreCommand) -> anyhow::Result<ExitCode> {
    let cluster = match &cmd {
        RestoreCommand::Create(args) => &args.cluster,
        RestoreCommand::Get(args) => &args.cluster,
        RestoreCommand::Describe(args) => &args.cluster,
    };
    let client = cluster.client().await?;
    match cmd {
        RestoreCommand::Create(args) => create(client, args).await,
        RestoreCommand::Get(args) => get(client, args).await,
        RestoreCommand::Describe(args) => describe(client, args).await,
    }
}

async fn create(client: kube::Client, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let ns = args.cluster.namespace.as_str();
    let Some((target_ns, pvc_name)) = args.to.split_once('/') else {
        bail!("--to {:?}: use NAMESPACE/PVC", args.to);
    };
    let source_namespace = args.source_namespace.as_deref().unwrap_or(target_ns);
    let checked = restore_checks::check(
        &client,
        &restore_checks::Request {
            namespace: ns,
            target_namespace: target_ns,
            pvc: pvc_name,
            location: &args.location,
            source_namespace,
            snapshot: &args.snapshot,
            password_secret: &args.password_secret,
            open_repository: !args.skip_repository_check,
        },
    )
    .await?;
    let size = restore_checks::pvc_size(args.size.as_deref(), checked.snapshot_bytes)?;
    if let (None, Some(bytes)) = (&args.size, checked.snapshot_bytes) {
        println!(
            "Snapshot {} holds {}: the target PVC gets {size}",
            args.snapshot,
            human_bytes(bytes)
        );
    }
    // The full ID, so that the DataDownload names one snapshot whatever is added later.
    let snapshot_id = checked.snapshot_id.unwrap_or_else(|| args.snapshot.clone());

    let suffix = format!(
        "{:x}",
        std::process::id() ^ k8s_openapi::jiff::Timestamp::now().subsec_nanosecond() as u32
    );
    let name = format!("{pvc_name}-{}", &suffix[..suffix.len().min(5)]);
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": if args.block { "Block" } else { "Filesystem" },
        "resources": {"requests": {"storage": size}},
        "selector": {"matchLabels": {"velero.io/dynamic-pv-restore": format!("{target_ns}.{pvc_name}.{suffix}")}},
    });
    if let Some(class) = &args.storage_class {
        spec["storageClassName"] = json!(class);
    }
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": pvc_name, "namespace": target_ns},
        "spec": spec,
    }))?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), target_ns);
    pvcs.create(&PostParams::default(), &pvc)
        .await
        .with_context(|| format!("creating target PVC {target_ns}/{pvc_name}"))?;
    let dd = DataDownload::new(
        &name,
        DataDownloadSpec {
            target_volume: TargetVolumeSpec {
                pvc: pvc_name.into(),
                pv: String::new(),
                namespace: target_ns.into(),
            },
            backup_storage_location: args.location.clone(),
            datamover: Some(args.data_mover_name.clone()),
            snapshot_id,
            source_namespace: source_namespace.to_string(),
            operation_timeout: "4h0m0s".into(),
            ..Default::default()
        },
    );
    let downloads: Api<DataDownload> = Api::namespaced(client.clone(), ns);
    if let Err(err) = downloads.create(&PostParams::default(), &dd).await {
        // Leave nothing behind, so that a retry does not meet its own PVC.
        let _ = pvcs.delete(pvc_name, &DeleteParams::default()).await;
        return Err(err).with_context(|| format!("creating DataDownload {ns}/{name}"));
    }
    println!("DataDownload {ns}/{name} created for {target_ns}/{pvc_name}");
    if !args.wait.wait {
        return Ok(ExitCode::SUCCESS);
    }
    data_movement::wait(
        data_movement::changes(downloads, &name),
        &args.wait.options(ns),
    )
    .await
    .with_context(|| format!("waiting for DataDownload {ns}/{name}"))
}

fn line(dd: &DataDownload, wide: bool) -> String {
    let m = Movement::from(dd);
    let t = &dd.spec.target_volume;
    let extra = if wide {
        let snapshot: String = dd.spec.snapshot_id.chars().take(8).collect();
        format!("{snapshot:<8} {:<16} ", dd.spec.backup_storage_location)
    } else {
        String::new()
    };
    format!(
        "{:<32} {:<28} {:<11} {:<14} {:<28} {:<9} {:<6} {extra}{}",
        m.name,
        format!("{}/{}", t.namespace, t.pvc),
        m.phase,
        m.node.as_deref().unwrap_or("-"),
        m.progress_cell(),
        m.duration()
            .map(data_movement::duration)
            .unwrap_or_else(|| "-".into()),
        m.age_cell(),
        m.message
    )
}

fn resource() -> ApiResource {
    ApiResource::erase::<DataDownload>(&())
}

async fn get(client: kube::Client, args: GetArgs) -> anyhow::Result<ExitCode> {
    let mut items = Vec::new();
    for object in list_raw(&client, &args.cluster.namespace, &resource()).await? {
        let dd: DataDownload = decode(&object)?;
        if dd.spec.is_for_data_mover(&args.data_mover_name) {
            items.push((object, dd));
        }
    }
    if !args.output.output.is_table() {
        let raw: Vec<DynamicObject> = items.into_iter().map(|(o, _)| o).collect();
        print_raw(args.output.output, &list_value(&raw)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let wide = args.output.output == OutputFormat::Wide;
    let mut header = format!(
        "{:<32} {:<28} {:<11} {:<14} {:<28} {:<9} {:<6} ",
        "NAME", "TARGET", "PHASE", "NODE", "PROGRESS", "DURATION", "AGE"
    );
    if wide {
        header.push_str(&format!("{:<8} {:<16} ", "SNAPSHOT", "LOCATION"));
    }
    println!("{header}MESSAGE");
    for (_, dd) in &items {
        println!("{}", line(dd, wide));
    }
    Ok(ExitCode::SUCCESS)
}

async fn describe(client: kube::Client, args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let ns = &args.cluster.namespace;
    let object = get_raw(&client, ns, &resource(), &args.name)
        .await?
        .with_context(|| format!("DataDownload {ns}/{} not found", args.name))?;
    if !args.output.output.is_table() {
        print_raw(args.output.output, &serde_json::to_value(&object)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let dd: DataDownload = decode(&object)?;
    let m = Movement::from(&dd);
    let t = &dd.spec.target_volume;
    let s = dd.status.clone().unwrap_or_default();
    let w = DESCRIBE_WIDTH;
    println!("{:<w$}{ns}/{}", "Name:", args.name);
    println!(
        "{:<w$}{}",
        "Data mover:",
        dd.spec.datamover.clone().unwrap_or_default()
    );
    println!("{:<w$}{}", "Snapshot:", dd.spec.snapshot_id);
    println!("{:<w$}{}", "Source namespace:", dd.spec.source_namespace);
    println!("{:<w$}{}", "Location:", dd.spec.backup_storage_location);
    println!("{:<w$}{}/{}", "Target:", t.namespace, t.pvc);
    println!("{:<w$}{}", "Operation timeout:", dd.spec.operation_timeout);
    if dd.spec.cancel == Some(true) {
        println!("{:<w$}requested", "Cancel:");
    }
    println!();
    println!("{:<w$}{}", "Phase:", m.phase);
    println!("{:<w$}{}", "Node:", m.node.as_deref().unwrap_or("<none>"));
    println!(
        "{:<w$}{}",
        "Accepted by:",
        s.accepted_by_node.as_deref().unwrap_or("<none>")
    );
    for line in m.describe_times(w) {
        println!("{line}");
    }
    println!(
        "{:<w$}{}",
        "Message:",
        if m.message.is_empty() {
            "<none>"
        } else {
            &m.message
        }
    );
    println!();
    print_events(&events_for(&client, ns, DataDownload::KIND, &args.name).await?);
    Ok(ExitCode::SUCCESS)
}
