//! `ferry repo unlock`: removes stale locks (restic's rule), or with `--remove-all` every
//! lock.

use std::process::ExitCode;

use super::repo_access::{RepoArgs, open};

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Remove every lock, also those of running processes.
    #[arg(long)]
    pub remove_all: bool,
}

pub async fn run(a: UnlockArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.repo).await?;
    let (n, what) = if a.remove_all {
        (repo.remove_all_locks().await?, "locks")
    } else {
        (repo.unlock_stale().await?, "stale locks")
    };
    if a.repo.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "removed": n})
        );
    } else {
        println!("removed {n} {what}");
    }
    Ok(ExitCode::SUCCESS)
}
