//! `ferry install` and `ferry uninstall`: render ferry's manifests, print them (`--dry-run`)
//! or apply them to the cluster of the current kubeconfig; remove them again.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use ferry_controller::install::{
    self, ApplyOutcome, DEFAULT_DATA_MOVER_NAME, DEFAULT_IMAGE, DEFAULT_NAMESPACE, InstallOptions,
    UninstallOptions,
};

use super::cluster_args::KubeArgs;
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
    #[command(flatten)]
    pub kube: KubeArgs,
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
    /// Delete the namespace ferry created even when it holds objects ferry did not create
    /// (secrets, BackupStorageLocations, DataUploads, ...), and them with it. Without this
    /// such a namespace is kept.
    #[arg(long, conflicts_with = "keep_namespace")]
    pub with_namespace_contents: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'f')]
    pub force: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
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
    let client = args
        .kube
        .client()
        .await
        .context("use --dry-run to print the manifests instead")?;
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
        delete_foreign: args.with_namespace_contents,
    };
    let client = args.kube.client().await?;
    let ns = options.namespace.as_str();
    let foreign = install::foreign_objects(&client, ns).await?;
    let plan = uninstall_plan(&options, &foreign);
    if !args.force {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("ferry uninstall deletes {plan}; confirm on a terminal, or pass --force");
        }
        eprint!("This deletes {plan}.\nContinue? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("Nothing deleted.");
            return Ok(ExitCode::FAILURE);
        }
    }
    let report = install::uninstall(&client, &options).await?;
    let mut stdout = std::io::stdout().lock();
    for line in &report {
        writeln!(stdout, "{line}")?;
        if line.outcome == ApplyOutcome::KeptInUse {
            for object in &foreign {
                writeln!(stdout, "  {object}")?;
            }
            writeln!(
                stdout,
                "  (delete them, or pass --with-namespace-contents, to remove the namespace)"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What an uninstall will delete, in words, for the confirmation.
fn uninstall_plan(options: &UninstallOptions, foreign: &[String]) -> String {
    let ns = &options.namespace;
    let mut plan = format!("ferry's controller, its RBAC and service accounts in namespace {ns:?}");
    if options.remove_crds {
        plan.push_str(
            ", the CRDs ferry installed (with every DataUpload, DataDownload and \
             BackupStorageLocation in the cluster)",
        );
    }
    if options.keep_namespace {
        return plan;
    }
    if foreign.is_empty() {
        plan.push_str(&format!(", and the namespace {ns:?} if ferry created it"));
    } else if options.delete_foreign {
        plan.push_str(&format!(
            ", and the namespace {ns:?} with what it holds: {}",
            foreign.join(", ")
        ));
    } else {
        plan.push_str(&format!(
            "; the namespace is kept, since it holds objects ferry did not create ({})",
            foreign.join(", ")
        ));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_names_what_goes_and_what_stays() {
        let mut options = UninstallOptions::new("velero");
        let foreign = vec!["secret/velero-repo-credentials".to_string()];
        let plan = uninstall_plan(&options, &foreign);
        assert!(
            plan.ends_with(
                "the namespace is kept, since it holds objects ferry did not create \
                 (secret/velero-repo-credentials)"
            ),
            "{plan}"
        );
        options.delete_foreign = true;
        options.remove_crds = true;
        let plan = uninstall_plan(&options, &foreign);
        assert!(plan.contains("the CRDs ferry installed"), "{plan}");
        assert!(
            plan.ends_with("with what it holds: secret/velero-repo-credentials"),
            "{plan}"
        );
        assert!(uninstall_plan(&options, &[]).ends_with("if ferry created it"));
    }
}
