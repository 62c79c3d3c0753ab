//! `ferry demo`: ferry's main job on an embedded default. A simulated cluster, a local
//! repository and the controller run in-process; a sample workload's volumes are backed up,
//! lost, and restored twice (default and `restorePVC.ignoreDelayBinding`), every byte verified;
//! a report and a timeline picture show why ignoreDelayBinding matters.

mod kube_ops;
mod objects;
mod observe;
mod progress;
mod report;
mod restore_run;
mod size;
mod timeline;
mod timings;
mod verify;
mod workload;

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

pub async fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ferry demo` is not built yet")
}
