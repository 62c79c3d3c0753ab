//! `ferry repo …`: work with a restic-format repository (init, backup, restore, snapshots,
//! ls, check, cat config).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use ferry_repo::Repository;
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::restore::{RestoreOptions, RestoreTarget};

use super::repo_access::{self, Purpose, RepoArgs, backend, open};
use super::repo_progress::{self, Totals};

#[derive(clap::Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a new repository (format version 2) at --repo.
    Init(InitArgs),
    /// Back up paths (or a stream from stdin / a block device) into a new snapshot.
    Backup(BackupArgs),
    /// Restore a snapshot to a directory or onto a device.
    Restore(RestoreArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Check the repository's structure (and with --read-data every blob).
    Check(CheckArgs),
    /// Print a repository file (only `config` for now).
    Cat(CatArgs),
    /// Remove snapshots by a keep policy or by id (and with --prune their data).
    Forget(super::repo_forget::ForgetArgs),
    /// Remove data no snapshot uses: repack partly used packs, delete unused ones.
    Prune(super::repo_prune::PruneArgs),
    /// Remove stale locks (with --remove-all every lock).
    Unlock(super::repo_unlock::UnlockArgs),
    /// Sizes of snapshots: restored (restore-size) or stored (raw-data).
    Stats(super::repo_stats::StatsArgs),
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Files or directories to back up.
    pub paths: Vec<PathBuf>,
    /// Add a tag to the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot (default: this host).
    #[arg(long)]
    pub host: Option<String>,
    /// Parent snapshot whose unchanged files are not read again (default: the latest
    /// snapshot of the same host and paths).
    #[arg(long)]
    pub parent: Option<String>,
    /// Read the data from standard input and store it as one file.
    #[arg(long)]
    pub stdin: bool,
    /// The file name the stdin data gets in the snapshot.
    #[arg(long, default_value = "stdin")]
    pub stdin_filename: String,
    /// Back up a block device or file as one raw stream (like --stdin, read from PATH).
    #[arg(long, value_name = "PATH", conflicts_with = "stdin")]
    pub device: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// SNAPSHOT[:SUBPATH]; SNAPSHOT is an id, a unique id prefix or `latest`.
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(long, conflicts_with = "target_device")]
    pub target: Option<PathBuf>,
    /// Device or file to write a single-file (block volume) snapshot onto, in place.
    #[arg(long)]
    pub target_device: Option<PathBuf>,
    /// Pack ranges fetched at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Threads decrypting, decompressing and writing (default: the CPU count, twice that
    /// when the workers also wait for the disk: the restore flushes, or its data would take
    /// more than half of the target's free space).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Restore only entries matching this glob (restic's rules; repeatable), plus the
    /// directories leading to them.
    #[arg(long = "include", value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Do not restore entries matching this glob, nor anything below them (repeatable).
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read every restored file back and compare it with the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Flush the restored files to stable storage before exiting (syncfs of the target's
    /// file system), so that success means they survive a crash. The data mover always does.
    #[arg(long)]
    pub flush: bool,
    /// Write large files past the page cache (O_DIRECT): spares the kernel's copy and keeps
    /// the cache for other work, but each write waits for the disk. `auto` does it when the
    /// restore ends with a flush (--flush, the data mover) or writes a device.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = DirectWritesArg::Auto)]
    pub direct_writes: DirectWritesArg,
    /// Take no lock: for read-only repositories (a read-only mount, a full file system).
    #[arg(long)]
    pub no_lock: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DirectWritesArg {
    Auto,
    Always,
    Never,
}

impl From<DirectWritesArg> for ferry_repo::DirectWrites {
    fn from(a: DirectWritesArg) -> Self {
        match a {
            DirectWritesArg::Auto => ferry_repo::DirectWrites::Auto,
            DirectWritesArg::Always => ferry_repo::DirectWrites::Always,
            DirectWritesArg::Never => ferry_repo::DirectWrites::Never,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Accepted as restic accepts it; ferry takes no lock for this command, so it works on
    /// read-only repositories either way.
    #[arg(long)]
    #[allow(dead_code)]
    pub no_lock: bool,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Accepted as restic accepts it; ferry takes no lock for this command, so it works on
    /// read-only repositories either way.
    #[arg(long)]
    #[allow(dead_code)]
    pub no_lock: bool,
    /// SNAPSHOT[:SUBPATH]
    pub snapshot: String,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Also read every pack and verify every blob.
    #[arg(long)]
    pub read_data: bool,
    /// Take no lock: for read-only repositories (a read-only mount, a full file system).
    #[arg(long)]
    pub no_lock: bool,
}

#[derive(clap::Args, Debug)]
pub struct CatArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Accepted as restic accepts it; ferry takes no lock for this command, so it works on
    /// read-only repositories either way.
    #[arg(long)]
    #[allow(dead_code)]
    pub no_lock: bool,
    /// What to print: `config`.
    pub what: String,
}

fn split_snapshot(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) => (s, Some(p)),
        None => (spec, None),
    }
}

pub async fn run(cmd: RepoCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RepoCommand::Init(a) => {
            let location = repo_access::location(a.repo.repo.as_deref())?;
            let backend = backend(&location)?;
            let pw =
                repo_access::password(a.repo.password_file.as_deref(), &location, Purpose::Create)?;
            let repo = Repository::init(backend, &pw).await?;
            if a.repo.json {
                println!(
                    "{}",
                    serde_json::json!({"message_type":"initialized","id":repo.config().id,"repository":repo.location()})
                );
            } else {
                println!(
                    "created repository {} at {}",
                    ferry_text::prefix(&repo.config().id, 10),
                    repo.location()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Forget(a) => super::repo_forget::run(a).await,
        RepoCommand::Prune(a) => super::repo_prune::run(a).await,
        RepoCommand::Unlock(a) => super::repo_unlock::run(a).await,
        RepoCommand::Stats(a) => super::repo_stats::run(a).await,
        RepoCommand::Backup(a) => backup(a).await,
        RepoCommand::Restore(a) => restore(a).await,
        RepoCommand::Snapshots(a) => {
            let repo = open(&a.repo).await?;
            // restic lists what it can read and warns about the rest.
            let (snaps, unreadable) = repo.snapshots_skipping_unreadable().await?;
            for (id, e) in &unreadable {
                eprintln!("warning: snapshot {id} is skipped: {e}");
            }
            if a.repo.json {
                let v: Vec<serde_json::Value> =
                    snaps.iter().map(ferry_repo::Snapshot::json).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!(
                    "{:<10} {:<32} {:<16} {:<20} paths",
                    "ID", "time", "host", "tags"
                );
                for s in &snaps {
                    println!(
                        "{:<10} {:<32} {:<16} {:<20} {}",
                        s.id.short(),
                        s.time,
                        s.hostname,
                        s.tags.join(","),
                        s.paths.join(" ")
                    );
                }
                println!("{} snapshots", snaps.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Ls(a) => {
            let repo = open(&a.repo).await?;
            let (snap, sub) = split_snapshot(&a.snapshot);
            let snap = repo.find_snapshot(snap).await?;
            let entries = repo.list_files(&snap, sub).await?;
            for (path, node) in entries {
                if a.repo.json {
                    println!(
                        "{}",
                        serde_json::json!({"path": path, "type": node.kind, "size": node.size, "mode": node.mode, "mtime": node.mtime})
                    );
                } else {
                    println!("{path}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Check(a) => check(a).await,
        RepoCommand::Cat(a) => {
            let repo = open(&a.repo).await?;
            match a.what.as_str() {
                "config" => {
                    println!("{}", serde_json::to_string_pretty(repo.config())?);
                    Ok(ExitCode::SUCCESS)
                }
                other => bail!("cannot cat {other:?}: only `config` is supported"),
            }
        }
    }
}

async fn restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.repo).await?;
    let (snap, sub) = split_snapshot(&a.snapshot);
    let snapshot = repo.find_snapshot(snap).await?;
    let target = match (a.target, a.target_device) {
        (Some(path), None) => RestoreTarget::Directory {
            path,
            subpath: sub.map(str::to_string),
        },
        (None, Some(path)) => RestoreTarget::Device { path },
        _ => bail!("restore needs --target DIR or --target-device PATH"),
    };
    let upfront = if !a.repo.json && std::io::stderr().is_terminal() {
        Some(repo_progress::restore_totals(&repo, &snapshot, sub).await?)
    } else {
        None
    };
    let progress =
        repo_progress::reporter_with(a.repo.json, "restore", "files", Totals::Known, upfront);
    let mut opts = RestoreOptions {
        fetch_concurrency: a.concurrency,
        filter: ferry_repo::RestoreFilter::new(&a.include, &a.exclude)?,
        verify: a.verify,
        flush: a.flush,
        direct_writes: a.direct_writes.into(),
        no_lock: a.no_lock,
        ..Default::default()
    };
    if let Some(w) = a.workers {
        opts.workers = w.max(1);
    }
    let summary = repo
        .restore(&snapshot, target, opts, progress.report.clone())
        .await;
    progress.finish();
    // An incomplete restore still restored what it could: report it, then fail.
    let (summary, incomplete) = match summary {
        Ok(s) => (s, None),
        Err(ferry_repo::RepoError::Incomplete(s)) => {
            let message = ferry_repo::RepoError::Incomplete(s.clone()).to_string();
            (*s, Some(message))
        }
        Err(e) => return Err(e.into()),
    };
    if a.repo.json {
        let mut v = serde_json::to_value(&summary)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = snapshot.id.to_hex().into();
        println!("{v}");
    } else {
        println!(
            "restored snapshot {}: {} files, {} dirs, {:.1} MiB in {:.2}s",
            snapshot.id.short(),
            summary.files,
            summary.dirs,
            summary.total_bytes as f64 / 1048576.0,
            summary.seconds
        );
        if a.verify {
            println!("verified {} files", summary.verified_files);
        }
        if let Some(s) = summary.flush_seconds {
            println!("flushed to stable storage in {s:.2}s");
        }
    }
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    for d in &summary.damaged {
        eprintln!("not restored: {d}");
    }
    for d in &summary.verify_failures {
        eprintln!("verify failed: {d}");
    }
    match incomplete {
        None => Ok(ExitCode::SUCCESS),
        Some(message) => bail!(message),
    }
}

async fn backup(a: BackupArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.repo).await?;
    let source = if a.stdin {
        BackupSource::Stream {
            reader: Box::new(std::io::stdin()),
            filename: a.stdin_filename.clone(),
        }
    } else if let Some(dev) = &a.device {
        let f = std::fs::File::open(dev)
            .with_context(|| format!("cannot open --device {}", dev.display()))?;
        let filename = if a.stdin_filename != "stdin" {
            a.stdin_filename.clone()
        } else {
            dev.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "volume".into())
        };
        BackupSource::Stream {
            reader: Box::new(ferry_repo::backup::DirectReader::new(f)),
            filename,
        }
    } else {
        if a.paths.is_empty() {
            bail!("backup needs PATH arguments, --stdin or --device PATH");
        }
        BackupSource::Paths(a.paths.clone())
    };
    let parent = match &a.parent {
        Some(p) => Some(repo.find_snapshot(p).await?),
        None => None,
    };
    let opts = BackupOptions {
        host: a.host.clone(),
        tags: a.tags.clone(),
        parent,
        ..Default::default()
    };
    let progress = repo_progress::reporter(a.repo.json, "backup", "files", Totals::Unknown);
    let summary = repo.backup(source, opts, progress.report.clone()).await;
    progress.finish();
    let summary = summary?;
    if a.repo.json {
        let mut v = serde_json::to_value(&summary)?;
        v["message_type"] = "summary".into();
        println!("{v}");
    } else {
        println!(
            "Files: {} new, {} changed, {} unmodified; {:.1} MiB processed, {:.1} MiB added in {:.2}s",
            summary.files_new,
            summary.files_changed,
            summary.files_unmodified,
            summary.total_bytes_processed as f64 / 1048576.0,
            summary.data_added as f64 / 1048576.0,
            summary.seconds
        );
        println!("snapshot {} saved", summary.snapshot_id.short());
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.repo).await?;
    let progress = repo_progress::reporter(a.repo.json, "check", "packs", Totals::Known);
    let report = repo
        .check_with_progress(
            ferry_repo::check::CheckOptions {
                read_data: a.read_data,
                no_lock: a.no_lock,
            },
            progress.report.clone(),
        )
        .await;
    progress.finish();
    let report = report?;
    if a.repo.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "summary".into();
        println!("{v}");
    } else {
        println!(
            "checked {} snapshots, {} trees, {} packs ({} read), {} blobs",
            report.snapshots, report.trees, report.packs, report.packs_read, report.blobs
        );
        for w in &report.warnings {
            println!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
    }
    if report.errors.is_empty() {
        if !a.repo.json {
            println!("no errors were found");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        bail!(
            "check found {} error(s) in {}",
            report.errors.len(),
            repo.location()
        )
    }
}
