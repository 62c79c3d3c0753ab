//! `ferry restore` (not built yet).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum RestoreCommand {}

pub async fn run(cmd: RestoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
