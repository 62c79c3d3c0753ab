//! `ferry`: the command line. It parses, wires the library crates together and prints;
//! the logic lives in the library crates.

mod allocator;
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

    /// Log lines as text (coloured only on a terminal, and never with NO_COLOR set) or as one
    /// JSON object per line, for log collectors.
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

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
    /// Create and inspect backups without Velero.
    #[command(subcommand)]
    Backup(commands::backup::BackupCommand),
    /// Create and inspect restores without Velero.
    #[command(subcommand)]
    Restore(commands::restore::RestoreCommand),
    #[cfg(feature = "sim")]
    /// Show ferry at work on a simulated cluster: back up, lose and restore volumes.
    Demo(commands::demo::DemoArgs),
    #[cfg(feature = "sim")]
    /// Benchmarks that print figures against a peer measured in the same run.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// Colour codes only where a person reads them: stderr is a terminal and NO_COLOR is unset
/// (https://no-color.org); a file, a pipe or a pod's log gets plain text.
fn log_colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The filter as given, with kube-rs's own line for each failed HTTP request left out unless
/// the filter names `kube_client`: that line (an ERROR for a 5xx answer or a refused
/// connection) says neither the request nor what ferry was doing, which ferry's own report of
/// the failure says; and while a control plane starts, its readiness probe fails a dozen times
/// by design.
fn effective_log_filter(filter: &str) -> String {
    if filter.contains("kube_client") {
        filter.to_string()
    } else {
        format!("{filter},kube_client::client::builder=off")
    }
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = effective_log_filter(filter);
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(log_colours()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn main() -> ExitCode {
    allocator::keep_large_buffers_out_of_arenas();
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_format);
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
            Command::Backup(cmd) => commands::backup::run(cmd).await,
            Command::Restore(cmd) => commands::restore::run(cmd).await,
            #[cfg(feature = "sim")]
            Command::Demo(args) => commands::demo::run(args).await,
            #[cfg(feature = "sim")]
            Command::Bench(cmd) => commands::bench::run(cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// One line for people: each context, then the cause. An API server refusal is its message
/// and reason (kube's own text adds a debug dump of the Status), with a hint where the code
/// says what to do.
fn error_text(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() {
            let hint = match status.code {
                401 => "; the kubeconfig's credentials were refused",
                403 => "; the kubeconfig's user is not allowed to do this (check its RBAC)",
                404 if status
                    .message
                    .contains("the server could not find the requested resource") =>
                {
                    "; are the CRDs installed (`ferry install`)?"
                }
                _ => "",
            };
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", status.reason)
            };
            parts.push(format!("{}{reason}{hint}", status.message));
            break;
        }
        let mut text = cause.to_string();
        // A wrapper that prints kube's text of its source (with the Status dump) keeps only
        // its own words: the source follows, readable, as the next part.
        if let Some(at) = text.find("ApiError: ") {
            text.truncate(at);
            text = text.trim_end_matches([' ', ':']).to_string();
        }
        if text.is_empty() {
            continue;
        }
        // A wrapper that repeats its source adds nothing.
        if parts
            .last()
            .is_none_or(|last: &String| !last.contains(&text))
        {
            parts.push(text);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_clients_request_failures_are_off_unless_asked_for() {
        assert_eq!(
            effective_log_filter("warn"),
            "warn,kube_client::client::builder=off"
        );
        assert_eq!(
            effective_log_filter("info,kube_client=debug"),
            "info,kube_client=debug"
        );
        assert!(
            tracing_subscriber::EnvFilter::try_new(effective_log_filter("ferry=debug")).is_ok()
        );
    }

    /// Every flag and argument of every command says what it is for in `--help`.
    #[test]
    fn every_flag_has_help_text() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "ferry", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:#?}");
    }

    #[test]
    fn api_refusals_read_as_one_plain_line() {
        let status = kube::core::Status {
            code: 409,
            message: "persistentvolumeclaims \"pvc-0\" already exists".into(),
            reason: "AlreadyExists".into(),
            ..Default::default()
        };
        let err = anyhow::Error::new(kube::Error::Api(Box::new(status)))
            .context("creating target PVC app/pvc-0");
        let text = error_text(&err);
        assert_eq!(
            text,
            "creating target PVC app/pvc-0: persistentvolumeclaims \"pvc-0\" already exists (AlreadyExists)"
        );
        assert!(!text.contains("Status {"), "{text}");
    }

    #[test]
    fn a_forbidden_request_says_what_to_check() {
        let status = kube::core::Status {
            code: 403,
            message: "datadownloads.velero.io is forbidden".into(),
            reason: "Forbidden".into(),
            ..Default::default()
        };
        let err = anyhow::Error::new(kube::Error::Api(Box::new(status)));
        assert!(error_text(&err).ends_with("(check its RBAC)"));
    }

    #[derive(Debug)]
    struct Wrapper(kube::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot list things: {}", self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_wrapper_printing_kubes_text_is_cut_before_the_dump() {
        let status = kube::core::Status {
            code: 404,
            message: "404 page not found".into(),
            reason: "NotFound".into(),
            ..Default::default()
        };
        let err = anyhow::Error::new(Wrapper(kube::Error::Api(Box::new(status))));
        assert_eq!(
            error_text(&err),
            "cannot list things: 404 page not found (NotFound)"
        );
    }
}
