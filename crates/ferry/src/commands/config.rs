//! `ferry config …`: check a node-agent configuration before handing it to the cluster.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_config::{Strictness, load_manifest_or_json};

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a node-agent configuration: a ConfigMap manifest (YAML or JSON) or the bare JSON
    /// document. Prints the effective configuration (defaults filled in) and exits 0, or prints
    /// every problem, one per line with its JSON path, and exits 1.
    Validate(ValidateArgs),
}

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The file to check; `-` reads standard input.
    pub file: PathBuf,
    /// Check as the running controller reads it: unknown fields (e.g. from a newer Velero)
    /// are warnings instead of errors.
    #[arg(long)]
    pub lenient: bool,
}

pub async fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Validate(args) => validate(args),
    }
}

fn read_input(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the configuration from standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the configuration file {}", file.display()))
    }
}

fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let text = read_input(&args.file)?;
    let strictness = if args.lenient {
        Strictness::Lenient
    } else {
        Strictness::Strict
    };
    match load_manifest_or_json(&text, strictness) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            let effective = serde_json::to_string_pretty(&loaded.config.effective())
                .context("cannot print the effective configuration")?;
            println!("{effective}");
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for problem in &errors.problems {
                eprintln!("error: {problem}");
            }
            eprintln!(
                "{}: {} problem{}; nothing was changed",
                args.file.display(),
                errors.problems.len(),
                if errors.problems.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
