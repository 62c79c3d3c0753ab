//! `ferry bench` (not built yet).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
