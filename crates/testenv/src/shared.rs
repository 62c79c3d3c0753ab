//! Control planes shared by the tests of one run: starting kube-apiserver and its
//! controllers takes seconds, so a test run keeps a few of them ("slots") and lends each to
//! one test at a time, reset to how it was right after start.
//!
//! A run is the nextest process (every test is a process of its own, all children of it) or,
//! under `cargo test`, the test binary's process. Slots live in
//! `$TMPDIR/ferry-testenv/run-<pid>/slot-<k>`; a test holds `slot-<k>.lock` (flock) while it
//! uses that control plane. The control plane's watchdog stops it when the run's process
//! ends, so nothing outlives the run. `FERRY_TESTENV_SLOTS` (default 1) sets how many
//! control planes a run may keep; nextest's `real-cluster` test group lets that many real
//! tests run at once.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::binaries::Binaries;
use crate::control_plane::{self, ControlPlaneInfo, ControlPlaneOptions};
use crate::processes;
use crate::reset::{self, ObjectKey};

/// One control plane lent to the caller until this is dropped.
pub struct SharedControlPlane {
    pub info: ControlPlaneInfo,
    pub client: kube::Client,
    /// How long taking it took: waiting for the slot, starting (first use) and resetting.
    pub acquired_in: Duration,
    _slot: File,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SlotState {
    plane: ControlPlaneInfo,
    baseline: BTreeSet<ObjectKey>,
}

/// The process whose end ends the run.
fn run_owner() -> u32 {
    if std::env::var_os("NEXTEST_RUN_ID").is_some() {
        // SAFETY: getppid cannot fail.
        (unsafe { libc::getppid() }) as u32
    } else {
        std::process::id()
    }
}

fn runs_root() -> PathBuf {
    std::env::temp_dir().join("ferry-testenv")
}

fn slots() -> usize {
    std::env::var("FERRY_TESTENV_SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Takes a control plane of this run: a free slot's (started on first use), reset to its
/// state right after start. Waits while every slot is in use.
pub async fn acquire() -> anyhow::Result<SharedControlPlane> {
    let started = std::time::Instant::now();
    let binaries = Binaries::locate()?;
    let owner = run_owner();
    let run_dir = runs_root().join(format!("run-{owner}"));
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    sweep_finished_runs();
    let (slot, lock) = {
        let run_dir = run_dir.clone();
        tokio::task::spawn_blocking(move || lock_a_slot(&run_dir, slots())).await??
    };
    let slot_dir = run_dir.join(format!("slot-{slot}"));
    let state_path = slot_dir.join("state.json");
    let previous: Option<SlotState> = std::fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let state = match previous {
        Some(state) if healthy(&state.plane).await => state,
        previous => {
            if let Some(old) = previous {
                tracing::warn!(dir = %old.plane.dir.display(), "a shared control plane stopped answering; starting another");
                old.plane.stop();
            }
            let plane = control_plane::start(
                &binaries,
                ControlPlaneOptions {
                    dir: slot_dir.join(format!("plane-{}", std::process::id())),
                    owner,
                    remove_dir_on_stop: true,
                },
            )
            .await?;
            let client = plane.client().await?;
            let baseline = reset::snapshot(&client).await?;
            let state = SlotState { plane, baseline };
            std::fs::write(&state_path, serde_json::to_vec(&state)?)?;
            state
        }
    };
    let client = state.plane.client().await?;
    reset::to_baseline(&client, &state.baseline)
        .await
        .context("cannot reset the shared control plane for this test")?;
    Ok(SharedControlPlane {
        info: state.plane,
        client,
        acquired_in: started.elapsed(),
        _slot: lock,
    })
}

/// Locks the first free slot, or waits for slot `pid % n` when all are taken.
fn lock_a_slot(run_dir: &Path, n: usize) -> anyhow::Result<(usize, File)> {
    let open = |k: usize| -> anyhow::Result<File> {
        let path = run_dir.join(format!("slot-{k}.lock"));
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))
    };
    for k in 0..n {
        let file = open(k)?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } == 0
        {
            return Ok((k, file));
        }
    }
    let k = std::process::id() as usize % n;
    let file = open(k)?;
    // SAFETY: as above; blocks until the slot's holder releases it (or exits).
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot lock a control plane slot");
    }
    Ok((k, file))
}

async fn healthy(plane: &ControlPlaneInfo) -> bool {
    if !processes::group_alive(plane.group) {
        return false;
    }
    let Ok(client) = plane.client().await else {
        return false;
    };
    let probe = async {
        client
            .request_text(http::Request::get("/readyz").body(Vec::new()).ok()?)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Some(text)) if text.trim() == "ok"
    )
}

/// Removes the folders of runs whose process is gone (their watchdog normally does).
fn sweep_finished_runs() {
    let Ok(entries) = std::fs::read_dir(runs_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("run-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !processes::process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
