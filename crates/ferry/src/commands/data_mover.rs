//! `ferry data_mover` (not built yet).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum DataMoverCommand {}

pub async fn run(cmd: DataMoverCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
