//! The control plane's processes: one process group, logs in files, and a watchdog that
//! ends the group when its owner (the test run, or `testenv up`) is gone, so nothing
//! outlives what started it, even a test process killed by a timeout.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

/// A started process group (its leader's pid is the group id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group(pub i32);

pub struct Spawn<'a> {
    pub name: &'a str,
    pub program: &'a Path,
    pub args: Vec<String>,
    pub log_dir: &'a Path,
}

pub fn log_path(log_dir: &Path, name: &str) -> PathBuf {
    log_dir.join(format!("{name}.log"))
}

/// Starts a process with stdout and stderr appended to `<log_dir>/<name>.log`; the first
/// one (`group` None) leads a new process group, the others join it.
pub fn spawn(spawn: Spawn<'_>, group: Option<Group>) -> anyhow::Result<Group> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(spawn.log_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(spawn.log_dir, spawn.name))
        .with_context(|| format!("cannot open the log of {}", spawn.name))?;
    let child = Command::new(spawn.program)
        .args(&spawn.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(group.map_or(0, |g| g.0))
        .spawn()
        .with_context(|| format!("cannot start {}", spawn.program.display()))?;
    Ok(group.unwrap_or(Group(child.id() as i32)))
}

/// The watchdog: a shell loop outside the group that waits until `owner` has exited or
/// `<dir>/stop` exists, then stops the group (TERM, then KILL after 5 s) and, with
/// `remove_dir`, deletes `dir`. POSIX sh: dash's `kill` takes no `--` (with it, the group
/// was never signalled and the control plane outlived its run).
pub fn start_watchdog(
    group: Group,
    owner: u32,
    dir: &Path,
    remove_dir: bool,
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    const SCRIPT: &str = r#"
owner=$1 group=$2 dir=$3 remove=$4
while kill -0 "$owner" 2>/dev/null && [ ! -e "$dir/stop" ]; do sleep 0.5; done
kill -TERM "-$group" 2>/dev/null
i=0
while kill -0 "-$group" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.25; i=$((i+1)); done
kill -KILL "-$group" 2>/dev/null
if [ "$remove" = yes ]; then rm -rf "$dir"; fi
"#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("testenv-watchdog")
        .arg(owner.to_string())
        .arg(group.0.to_string())
        .arg(dir)
        .arg(if remove_dir { "yes" } else { "no" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start the control plane's watchdog")?;
    Ok(())
}

/// Stops a group now: TERM, then KILL whatever is left after `grace`.
pub fn stop_group(group: Group, grace: std::time::Duration) {
    // SAFETY: kill(2) on a negative pid signals a process group; no memory is involved.
    unsafe { libc::kill(-group.0, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + grace;
    while group_alive(group) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-group.0, libc::SIGKILL) };
}

pub fn group_alive(group: Group) -> bool {
    // SAFETY: signal 0 only checks that the group exists.
    unsafe { libc::kill(-group.0, 0) == 0 }
}

pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// `n` distinct free ports on 127.0.0.1 (held together while chosen, released on return).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free ports on 127.0.0.1")?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The last `lines` lines of a log, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn the_watchdog_stops_the_group_once_its_owner_has_exited() {
        let dir = tempfile::tempdir().unwrap();
        let mut member = Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap();
        let group = Group(member.id() as i32);
        let mut owner = Command::new("true").spawn().unwrap();
        let owner_pid = owner.id();
        owner.wait().unwrap();
        start_watchdog(group, owner_pid, dir.path(), false).unwrap();
        // Generous: the watchdog polls every 0.5 s; only a group never signalled stays.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while member.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = member.kill();
                panic!("the watchdog did not stop the group of a finished owner");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
