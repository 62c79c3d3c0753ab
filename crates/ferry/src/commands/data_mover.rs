//! `ferry data-mover restore`: runs inside a restore pod created by the controller.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ferry_controller::data_mover::{
    DataMoverOptions, DataMoverResult, REPO_PASSWORD_SECRET, VolumeMode, restore_data_download,
    write_termination_message,
};

#[derive(clap::Subcommand, Debug)]
pub enum DataMoverCommand {
    /// Restore a DataDownload's snapshot into the volume mounted at --volume-path.
    Restore(RestoreArgs),
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum VolumeModeArg {
    #[value(name = "Filesystem")]
    Filesystem,
    #[value(name = "Block")]
    Block,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// Name of the DataDownload to carry out.
    #[arg(long)]
    data_download: String,
    /// Namespace of the DataDownload (ferry's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "velero")]
    namespace: String,
    /// Where the volume is: a directory (Filesystem) or a block device (Block).
    #[arg(long)]
    volume_path: PathBuf,
    #[arg(long, value_enum, default_value = "Filesystem")]
    volume_mode: VolumeModeArg,
    /// Secret holding the repository password under key `repository-password`.
    #[arg(long, default_value = REPO_PASSWORD_SECRET)]
    password_secret: String,
    /// Repository password (overrides the secret).
    #[arg(long, env = "FERRY_REPOSITORY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Where the summary for the controller goes.
    #[arg(long, default_value = "/dev/termination-log")]
    termination_message_path: PathBuf,
    /// Seconds between progress updates in the DataDownload's status.
    #[arg(long, default_value_t = 2.0)]
    progress_interval: f64,
}

pub async fn run(cmd: DataMoverCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataMoverCommand::Restore(args) => restore(args).await,
    }
}

async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let options = DataMoverOptions {
        namespace: args.namespace.clone(),
        data_download: args.data_download.clone(),
        volume_path: args.volume_path.clone(),
        volume_mode: match args.volume_mode {
            VolumeModeArg::Filesystem => VolumeMode::Filesystem,
            VolumeModeArg::Block => VolumeMode::Block,
        },
        password_secret: args.password_secret.clone(),
        password: args.password.clone(),
        progress_interval: Duration::from_secs_f64(args.progress_interval.max(0.1)),
    };
    let outcome = match kube::Client::try_default().await {
        Ok(client) => restore_data_download(&client, &options)
            .await
            .map_err(anyhow::Error::from),
        Err(err) => Err(anyhow::Error::from(err).context("cannot reach the Kubernetes API")),
    };
    let (result, code) = match outcome {
        Ok(result) => (result, ExitCode::SUCCESS),
        Err(err) => (
            DataMoverResult {
                ok: false,
                error: Some(format!("{err:#}")),
                ..Default::default()
            },
            ExitCode::FAILURE,
        ),
    };
    write_termination_message(&args.termination_message_path, &result).with_context(|| {
        format!(
            "cannot write the termination message to {}",
            args.termination_message_path.display()
        )
    })?;
    if let Some(err) = &result.error {
        eprintln!("error: {err}");
    } else {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(code)
}
