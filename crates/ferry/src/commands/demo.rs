//! `ferry demo`: ferry's main job on an embedded default. A simulated cluster (kubesim), a
//! local repository and ferry's controller run in this process; a sample StatefulSet's volumes
//! get real data, are backed up, lost, and restored twice (default and
//! `restorePVC.ignoreDelayBinding`) with every byte verified; a report and a timeline picture
//! show why ignoreDelayBinding matters.

pub(crate) mod backup;
pub(crate) mod backup_run;
pub(crate) mod controller;
pub(crate) mod cpu_use;
mod direct;
mod internal;
pub(crate) mod kube_ops;
pub(crate) mod layout;
pub(crate) mod objects;
mod observe;
mod pod;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod restore_run;
mod sample;
pub(crate) mod scenario;
pub(crate) mod size;
mod stages;
pub(crate) mod timeline;
pub(crate) mod timings;
pub(crate) mod verify;
mod watched;
pub(crate) mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

pub use internal::DemoInternal;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    internal: Option<DemoInternal>,
    /// Nodes of the simulated cluster.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    /// Volumes of the sample workload (one per StatefulSet pod).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    volumes: u16,
    /// Data in all volumes together, e.g. 256MiB or 1GiB.
    #[arg(long, default_value = "256MiB", value_parser = size::parse_size)]
    size: u64,
    /// Where the report, the timeline picture, the repository and the cluster's files go.
    #[arg(long, default_value = "ferry-demo")]
    out: PathBuf,
    /// Leave the simulated cluster running at the end and print a KUBECONFIG line to look
    /// around with kubectl; Ctrl-C stops it.
    #[arg(long)]
    keep: bool,
    /// Seed of the workload's data (the same seed writes the same bytes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(internal) = args.internal {
        return internal::run(internal).await;
    }
    stages::run(stages::DemoOptions {
        nodes: usize::from(args.nodes),
        volumes: usize::from(args.volumes),
        total_bytes: args.size,
        out: args.out,
        keep: args.keep,
        seed: args.seed,
    })
    .await
}
