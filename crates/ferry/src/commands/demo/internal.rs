//! `ferry demo`'s hidden subcommands: what the demo's workload pods run, and the sample
//! picture for looking at the timeline's design without a cluster.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum DemoInternal {
    /// (internal) The demo workload's container: reads its volume, then idles.
    #[command(hide = true)]
    LedgerPod {
        /// The volume's mount path.
        #[arg(long)]
        volume: PathBuf,
    },
    /// Draws the timeline of a made-up run of both modes (no cluster), to look at the
    /// picture: writes the SVG and an HTML page next to it.
    #[command(hide = true)]
    TimelineSample {
        /// Nodes drawn in the sample timeline.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: u16,
        /// Volumes drawn in the sample timeline.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        volumes: u16,
        /// The SVG file to write.
        #[arg(long, default_value = "timeline-sample.svg")]
        out: PathBuf,
    },
}

pub async fn run(command: DemoInternal) -> anyhow::Result<ExitCode> {
    match command {
        DemoInternal::LedgerPod { volume } => super::pod::ledger_pod(&volume).await,
        DemoInternal::TimelineSample {
            nodes,
            volumes,
            out,
        } => {
            super::sample::write_sample(usize::from(nodes), usize::from(volumes), &out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
