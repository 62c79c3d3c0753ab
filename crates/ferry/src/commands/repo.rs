//! `ferry repo` (not built yet).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum RepoCommand {}

pub async fn run(cmd: RepoCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
