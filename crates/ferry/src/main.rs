//! `ferry`: the command line. It parses, wires the library crates together and prints;
//! the logic lives in the library crates.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Kubernetes volume data mover (Velero data-mover compatible)"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `ferry=debug`.
    #[arg(long, global = true, env = "FERRY_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work with the node-agent configuration (the ConfigMap named by --node-agent-configmap).
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Render or apply ferry's manifests (namespace, CRDs, RBAC, controller Deployment).
    Install(commands::install::InstallArgs),
    /// Remove what `ferry install` created.
    Uninstall(commands::install::UninstallArgs),
    /// Work with a restic-format backup repository.
    #[command(subcommand)]
    Repo(commands::repo::RepoCommand),
    /// Run the DataDownload controller.
    Controller(commands::controller::ControllerArgs),
    /// Commands run inside data mover pods.
    #[command(subcommand, name = "data-mover")]
    DataMover(commands::data_mover::DataMoverCommand),
    /// Create and inspect restores without Velero.
    #[command(subcommand)]
    Restore(commands::restore::RestoreCommand),
    /// Show ferry at work on a simulated cluster: back up, lose and restore volumes.
    Demo(commands::demo::DemoArgs),
    /// Benchmarks that print figures against a peer measured in the same run.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Config(cmd) => commands::config::run(cmd).await,
            Command::Install(args) => commands::install::run_install(args).await,
            Command::Uninstall(args) => commands::install::run_uninstall(args).await,
            Command::Repo(cmd) => commands::repo::run(cmd).await,
            Command::Controller(args) => commands::controller::run(args).await,
            Command::DataMover(cmd) => commands::data_mover::run(cmd).await,
            Command::Restore(cmd) => commands::restore::run(cmd).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Bench(cmd) => commands::bench::run(cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
