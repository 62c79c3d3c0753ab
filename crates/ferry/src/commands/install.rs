//! `ferry install` (not built yet).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct InstallArgs {}

#[derive(clap::Args, Debug)]
pub struct UninstallArgs {}

pub async fn run_install(_args: InstallArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ferry install` is not built yet")
}

pub async fn run_uninstall(_args: UninstallArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ferry uninstall` is not built yet")
}
