//! `ferry config` (not built yet).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {}

pub async fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
