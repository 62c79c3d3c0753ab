//! `ferry controller` (not built yet).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {}

pub async fn run(_args: ControllerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ferry controller` is not built yet")
}
