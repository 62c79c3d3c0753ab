//! `ferry restore create|get|describe`: restores without Velero. `create` makes the target PVC
//! (with Velero's `velero.io/dynamic-pv-restore` selector, so nothing provisions it) and the
//! DataDownload for ferry's controller.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_controller::crds::{DataDownload, DataDownloadSpec, TargetVolumeSpec};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::json;

use super::cluster_args::{
    ClusterArgs, OutputArgs, OutputFormat, decode, events_for, get_raw, list_raw, list_value,
    print_events, print_raw,
};

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
    /// Snapshot ID in the repository.
    #[arg(long)]
    snapshot: String,
    /// Target, NAMESPACE/PVC (the PVC must not exist).
    #[arg(long)]
    to: String,
    /// BackupStorageLocation holding the repository.
    #[arg(long)]
    location: String,
    /// Namespace the snapshot was taken in (default: the target namespace).
    #[arg(long)]
    source_namespace: Option<String>,
    #[arg(long)]
    storage_class: Option<String>,
    #[arg(long, default_value = "1Gi")]
    size: String,
    /// Block volume instead of a filesystem.
    #[arg(long)]
    block: bool,
    #[arg(long, default_value = "ferry")]
    data_mover_name: String,
    /// Wait until the restore ends; fail unless it Completed.
    #[arg(long)]
    wait: bool,
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
    let Some((target_ns, pvc_name)) = args.to.split_once('/') else {
        bail!("--to {:?}: use NAMESPACE/PVC", args.to);
    };
    let suffix = format!(
        "{:x}",
        std::process::id() ^ chrono::Utc::now().timestamp_subsec_nanos()
    );
    let name = format!("{pvc_name}-{}", &suffix[..suffix.len().min(5)]);
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": if args.block { "Block" } else { "Filesystem" },
        "resources": {"requests": {"storage": args.size}},
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
        .with_context(|| {
            format!("creating target PVC {target_ns}/{pvc_name} (it must not exist yet)")
        })?;
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
            snapshot_id: args.snapshot.clone(),
            source_namespace: args
                .source_namespace
                .clone()
                .unwrap_or_else(|| target_ns.into()),
            operation_timeout: "4h0m0s".into(),
            ..Default::default()
        },
    );
    let downloads: Api<DataDownload> = Api::namespaced(client.clone(), &args.cluster.namespace);
    downloads
        .create(&PostParams::default(), &dd)
        .await
        .with_context(|| format!("creating DataDownload {}/{name}", args.cluster.namespace))?;
    println!(
        "DataDownload {}/{name} created for {target_ns}/{pvc_name}",
        args.cluster.namespace
    );
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let dd = downloads.get(&name).await?;
        let phase = dd.phase();
        if phase.is_terminal() {
            println!("{}", line(&dd));
            let ok = phase == ferry_controller::crds::DataDownloadPhase::Completed;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn line(dd: &DataDownload) -> String {
    let status = dd.status.clone().unwrap_or_default();
    let progress = status.progress.unwrap_or_default();
    format!(
        "{:<32} {:<11} {:<12} {:>12}/{:<12} {}",
        dd.metadata.name.clone().unwrap_or_default(),
        dd.phase().as_str(),
        status.node.unwrap_or_else(|| "-".into()),
        progress.bytes_done.unwrap_or(0),
        progress.total_bytes.unwrap_or(0),
        status.message.unwrap_or_default()
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
    if args.output.output != OutputFormat::Table {
        let raw: Vec<DynamicObject> = items.into_iter().map(|(o, _)| o).collect();
        print_raw(args.output.output, &list_value(&raw)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<11} {:<12} {:>12}/{:<12} MESSAGE",
        "NAME", "PHASE", "NODE", "BYTES DONE", "TOTAL"
    );
    for (_, dd) in &items {
        println!("{}", line(dd));
    }
    Ok(ExitCode::SUCCESS)
}

async fn describe(client: kube::Client, args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let ns = &args.cluster.namespace;
    let object = get_raw(&client, ns, &resource(), &args.name)
        .await?
        .with_context(|| format!("DataDownload {ns}/{} not found", args.name))?;
    if args.output.output != OutputFormat::Table {
        print_raw(args.output.output, &serde_json::to_value(&object)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let dd: DataDownload = decode(&object)?;
    let s = dd.status.clone().unwrap_or_default();
    let t = &dd.spec.target_volume;
    println!("Name:           {ns}/{}", args.name);
    println!(
        "Data mover:     {}",
        dd.spec.datamover.clone().unwrap_or_default()
    );
    println!("Snapshot:       {}", dd.spec.snapshot_id);
    println!("Location:       {}", dd.spec.backup_storage_location);
    println!("Target:         {}/{}", t.namespace, t.pvc);
    println!("Phase:          {}", dd.phase().as_str());
    println!("Node:           {}", s.node.unwrap_or_default());
    println!("Accepted by:    {}", s.accepted_by_node.unwrap_or_default());
    let p = s.progress.unwrap_or_default();
    println!(
        "Progress:       {} / {} bytes",
        p.bytes_done.unwrap_or(0),
        p.total_bytes.unwrap_or(0)
    );
    println!("Message:        {}", s.message.unwrap_or_default());
    print_events(&events_for(&client, ns, DataDownload::KIND, &args.name).await?);
    Ok(ExitCode::SUCCESS)
}
