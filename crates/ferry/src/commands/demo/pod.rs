//! What the demo workload's pods run (this same binary, in kubesim's kubelets): look at the
//! volume the pod mounts, log what is there, then idle like a database until stopped.

use std::path::Path;
use std::process::ExitCode;

/// The workload's container: counts what its volume holds, then idles until stopped.
pub async fn ledger_pod(volume: &Path) -> anyhow::Result<ExitCode> {
    let (files, bytes) = count(volume)?;
    println!(
        "ledger: volume {} holds {files} files, {bytes} bytes",
        volume.display()
    );
    // Idle until the kubelet stops the pod.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn count(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|err| {
            anyhow::anyhow!("the ledger volume {} cannot be read: {err}", dir.display())
        })?;
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files += 1;
                bytes += entry.metadata()?.len();
            }
        }
    }
    Ok((files, bytes))
}
