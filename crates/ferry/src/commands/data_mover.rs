//! `ferry data-mover restore|backup|forget`: runs inside a restore, backup or forget pod
//! created by the controller.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ferry_mover::{
    BackupMoverOptions, DataMoverOptions, DataMoverResult, ForgetOptions, LOCK_WAIT,
    PasswordSource, REPO_PASSWORD_SECRET, VolumeMode, backup_data_upload,
    forget_data_upload_snapshot, restore_data_download, write_termination_message,
};

#[derive(clap::Subcommand, Debug)]
pub enum DataMoverCommand {
    /// Restore a DataDownload's snapshot into the volume mounted at --volume-path.
    Restore(RestoreArgs),
    /// Back up the volume mounted at --volume-path for a DataUpload.
    Backup(BackupArgs),
    /// Remove a deleted DataUpload's snapshot from the repository (Velero is deleting its
    /// backup); the snapshot must carry the DataUpload's and its backup's tags.
    Forget(ForgetArgs),
}

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Name of the DataUpload whose snapshot goes.
    #[arg(long)]
    data_upload: String,
    /// Namespace of the DataUpload (ferry's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "velero")]
    namespace: String,
    /// Secret holding the repository password under key `repository-password`.
    #[arg(long, default_value = REPO_PASSWORD_SECRET)]
    password_secret: String,
    /// Repository password (overrides the secret).
    #[arg(long, env = "FERRY_REPOSITORY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Where the summary for the controller goes.
    #[arg(long, default_value = "/dev/termination-log")]
    termination_message_path: PathBuf,
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
    #[command(flatten)]
    mover: MoverArgs,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Name of the DataUpload to carry out.
    #[arg(long)]
    data_upload: String,
    #[command(flatten)]
    mover: MoverArgs,
}

/// What a data mover needs besides its DataDownload or DataUpload.
#[derive(clap::Args, Debug)]
pub struct MoverArgs {
    /// Namespace of the DataDownload or DataUpload (ferry's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "velero")]
    namespace: String,
    /// Where the volume is: a directory (Filesystem) or a block device (Block).
    #[arg(long)]
    volume_path: PathBuf,
    /// How the volume is attached: a mounted filesystem at --volume-path, or a raw block
    /// device there.
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
    /// Seconds between progress updates in the object's status.
    #[arg(long, default_value_t = 2.0)]
    progress_interval: f64,
}

impl MoverArgs {
    fn password_source(&self) -> PasswordSource {
        PasswordSource {
            secret: self.password_secret.clone(),
            given: self.password.clone(),
        }
    }

    fn volume_mode(&self) -> VolumeMode {
        match self.volume_mode {
            VolumeModeArg::Filesystem => VolumeMode::Filesystem,
            VolumeModeArg::Block => VolumeMode::Block,
        }
    }

    fn progress_interval(&self) -> Duration {
        Duration::from_secs_f64(self.progress_interval.max(0.1))
    }
}

pub async fn run(cmd: DataMoverCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataMoverCommand::Restore(args) => restore(args).await,
        DataMoverCommand::Backup(args) => backup(args).await,
        DataMoverCommand::Forget(args) => forget(args).await,
    }
}

async fn forget(args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let options = ForgetOptions {
        namespace: args.namespace.clone(),
        data_upload: args.data_upload.clone(),
        password: PasswordSource {
            secret: args.password_secret.clone(),
            given: args.password.clone(),
        },
        lock_wait: LOCK_WAIT,
    };
    let outcome = match kube::Client::try_default().await {
        Ok(client) => forget_data_upload_snapshot(&client, &options)
            .await
            .map_err(Into::into),
        Err(err) => Err(unreachable_api(err)),
    };
    finish(outcome, &args.termination_message_path)
}

async fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let m = &args.mover;
    let options = BackupMoverOptions {
        namespace: m.namespace.clone(),
        data_upload: args.data_upload.clone(),
        volume_path: m.volume_path.clone(),
        volume_mode: m.volume_mode(),
        password: m.password_source(),
        progress_interval: m.progress_interval(),
    };
    let outcome = match kube::Client::try_default().await {
        Ok(client) => backup_data_upload(&client, &options)
            .await
            .map_err(Into::into),
        Err(err) => Err(unreachable_api(err)),
    };
    finish(outcome, &m.termination_message_path)
}

async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let m = &args.mover;
    let options = DataMoverOptions {
        namespace: m.namespace.clone(),
        data_download: args.data_download.clone(),
        volume_path: m.volume_path.clone(),
        volume_mode: m.volume_mode(),
        password: m.password_source(),
        progress_interval: m.progress_interval(),
    };
    let outcome = match kube::Client::try_default().await {
        Ok(client) => restore_data_download(&client, &options)
            .await
            .map_err(Into::into),
        Err(err) => Err(unreachable_api(err)),
    };
    finish(outcome, &m.termination_message_path)
}

fn unreachable_api(err: kube::Error) -> anyhow::Error {
    anyhow::Error::from(err).context("cannot reach the Kubernetes API")
}

/// Writes the termination message for the controller and prints the outcome.
fn finish(
    outcome: anyhow::Result<DataMoverResult>,
    termination_message_path: &std::path::Path,
) -> anyhow::Result<ExitCode> {
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
    write_termination_message(termination_message_path, &result).with_context(|| {
        format!(
            "cannot write the termination message to {}",
            termination_message_path.display()
        )
    })?;
    if let Some(err) = &result.error {
        eprintln!("error: {err}");
    } else {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(code)
}
