//! `ferry install` and `ferry uninstall`: render ferry's manifests, print them (`--dry-run`)
//! or apply them to the cluster of the current kubeconfig; remove them again.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use ferry_controller::install::{
    self, DEFAULT_DATA_MOVER_NAME, DEFAULT_IMAGE, DEFAULT_NAMESPACE, InstallOptions,
    UninstallOptions,
};
use serde_json::{Value, json};

/// How `--dry-run` prints the manifests.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// YAML documents separated by `---` (for `kubectl apply -f -`).
    Yaml,
    /// One JSON `List` object holding every manifest.
    Json,
}

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Name of the node-agent ConfigMap (in --namespace) the controller reads its data
    /// movement settings from, as Velero's `--node-agent-configmap`.
    #[arg(long, value_name = "NAME")]
    pub node_agent_configmap: String,
    /// Namespace for the controller; it handles the DataDownloads in this namespace.
    #[arg(long, short = 'n', default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Controller container image.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// The `spec.datamover` value the controller claims DataDownloads for.
    #[arg(long, default_value = DEFAULT_DATA_MOVER_NAME)]
    pub data_mover_name: String,
    /// Print the manifests instead of applying them (including every CRD, even those a
    /// cluster may already have from Velero).
    #[arg(long)]
    pub dry_run: bool,
    /// Output format for --dry-run.
    #[arg(long, short = 'o', value_enum, requires = "dry_run")]
    pub output: Option<OutputFormat>,
}

#[derive(clap::Args, Debug)]
pub struct UninstallArgs {
    /// Namespace given to `ferry install`.
    #[arg(long, short = 'n', default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Also delete the CRDs ferry installed (never ones Velero installed). This deletes every
    /// DataDownload, DataUpload and BackupStorageLocation with them.
    #[arg(long)]
    pub crds: bool,
    /// Keep the namespace even when ferry created it.
    #[arg(long)]
    pub keep_namespace: bool,
}

/// YAML documents separated by `---`.
fn to_yaml_documents(manifests: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for manifest in manifests {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(manifest).context("rendering YAML")?);
    }
    Ok(out)
}

/// A `v1/List`, which `kubectl apply -f` accepts like separate documents.
fn to_json_list(manifests: &[Value]) -> anyhow::Result<String> {
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": manifests });
    Ok(serde_json::to_string_pretty(&list)? + "\n")
}

pub async fn run_install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let options = InstallOptions {
        namespace: args.namespace,
        image: args.image,
        node_agent_configmap: args.node_agent_configmap,
        data_mover_name: args.data_mover_name,
    };
    let manifests = install::render(&options)?;
    if args.dry_run {
        let values = manifests.to_values();
        let text = match args.output.unwrap_or(OutputFormat::Yaml) {
            OutputFormat::Yaml => to_yaml_documents(&values)?,
            OutputFormat::Json => to_json_list(&values)?,
        };
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the cluster of the current kubeconfig (set KUBECONFIG or use --dry-run to print the manifests)")?;
    let report = install::apply(&client, &manifests).await?;
    let mut stdout = std::io::stdout().lock();
    for line in report {
        writeln!(stdout, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_uninstall(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let options = UninstallOptions {
        namespace: args.namespace,
        remove_crds: args.crds,
        keep_namespace: args.keep_namespace,
    };
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the cluster of the current kubeconfig (set KUBECONFIG)")?;
    let report = install::uninstall(&client, &options).await?;
    let mut stdout = std::io::stdout().lock();
    for line in report {
        writeln!(stdout, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}
