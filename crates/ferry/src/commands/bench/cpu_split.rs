//! `--control-plane-cpus`: CPUs of its own for the real control plane, as on a cluster whose
//! control plane runs on machines apart from its nodes. On a small machine that everything
//! shares, the API server's and etcd's work for each restore is taken from the data movers'
//! CPUs, and the orchestration overhead measured then is mostly that; with the split, the
//! data movers, ferry's controller and the simulated nodes keep their CPUs to themselves, in
//! the restores and in the measured ideal alike.
//!
//! Every thread of the control plane's processes is pinned to the last CPUs this process may
//! use, every thread of this process to the others; a new thread or process starts on its
//! creator's CPUs, so the controller and data mover processes started later follow.

use anyhow::{Context, bail};

use crate::commands::demo::cpu_use::group_members;

/// How the CPUs were divided, and what this process had before.
pub(super) struct CpuSplit {
    pub(super) nodes: Vec<usize>,
    pub(super) control_plane: Vec<usize>,
    original: libc::cpu_set_t,
}

impl CpuSplit {
    /// The last `n` of the CPUs this process may use for the control plane, the rest for the
    /// nodes (at least one).
    pub(super) fn plan(n: usize) -> anyhow::Result<CpuSplit> {
        let original = affinity(0).context("reading the CPUs this process may use")?;
        let cpus = members(&original);
        if n >= cpus.len() {
            bail!(
                "--control-plane-cpus {n}: this process may use {} ({}), and the nodes need at \
                 least one of them",
                count_words(cpus.len()),
                list(&cpus)
            );
        }
        let (nodes, control_plane) = cpus.split_at(cpus.len() - n);
        Ok(CpuSplit {
            nodes: nodes.to_vec(),
            control_plane: control_plane.to_vec(),
            original,
        })
    }

    /// Pins every thread of the control plane (process group `group`) to its CPUs, then every
    /// thread of this process to the nodes' CPUs.
    pub(super) fn apply(&self, group: i32) -> anyhow::Result<()> {
        let pinned = pin_all(|| group_tasks(group), &set_of(&self.control_plane))
            .context("pinning the control plane to its CPUs")?;
        if pinned == 0 {
            bail!("found no process of the control plane (process group {group}) to pin");
        }
        pin_all(own_tasks, &set_of(&self.nodes))
            .context("pinning this process to the nodes' CPUs")?;
        Ok(())
    }

    /// Gives this process and the control plane (process group `group`, which may serve
    /// others after this run) back every CPU this process had.
    pub(super) fn undo(&self, group: i32) {
        for tid in own_tasks().into_iter().chain(group_tasks(group)) {
            let _ = set_affinity(tid, &self.original);
        }
    }

    /// "CPU 1" for the control plane, "CPU 0" for the nodes.
    pub(super) fn words(&self) -> String {
        format!(
            "the control plane on {} of its own, the simulated nodes (and so the data movers \
             and ferry's controller) on {}",
            cpu_words(&self.control_plane),
            cpu_words(&self.nodes)
        )
    }

    /// A split as if planned on a machine with these CPUs (for the report's tests).
    #[cfg(test)]
    pub(super) fn for_test(nodes: &[usize], control_plane: &[usize]) -> CpuSplit {
        CpuSplit {
            nodes: nodes.to_vec(),
            control_plane: control_plane.to_vec(),
            original: set_of(&[nodes, control_plane].concat()),
        }
    }

    pub(super) fn machine(&self) -> usize {
        self.nodes.len() + self.control_plane.len()
    }
}

/// "CPU 1", "CPUs 0, 1".
fn cpu_words(cpus: &[usize]) -> String {
    match cpus {
        [one] => format!("CPU {one}"),
        many => format!("CPUs {}", list(many)),
    }
}

/// "1 CPU", "2 CPUs".
pub(super) fn count_words(n: usize) -> String {
    format!("{n} CPU{}", if n == 1 { "" } else { "s" })
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn members(set: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: every cpu asked about is below CPU_SETSIZE, within the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) })
        .collect()
}

fn set_of(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&cpu| cpu < libc::CPU_SETSIZE as usize) {
        // SAFETY: cpu is below CPU_SETSIZE, within the set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    set
}

fn affinity(tid: i32) -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: as in set_of.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size given is the set's own.
    let r = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(set)
}

fn set_affinity(tid: i32, set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: the size given is the set's own.
    let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(set), set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The threads of some processes.
fn tasks_of(pids: impl IntoIterator<Item = u32>) -> Vec<i32> {
    pids.into_iter()
        .flat_map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        })
        .collect()
}

fn group_tasks(group: i32) -> Vec<i32> {
    tasks_of(group_members(group))
}

fn own_tasks() -> Vec<i32> {
    tasks_of([std::process::id()])
}

/// Pins the threads `tasks` lists until a pass finds none left to move (a thread started
/// during a pass by one not yet pinned may have escaped it); returns how many there were.
fn pin_all(tasks: impl Fn() -> Vec<i32>, set: &libc::cpu_set_t) -> anyhow::Result<usize> {
    for _ in 0..10 {
        let tids = tasks();
        let mut moved = 0;
        for &tid in &tids {
            // A thread that ended meanwhile (ESRCH) needs no pinning.
            match affinity(tid) {
                Ok(current) if members(&current) == members(set) => {}
                Ok(_) => match set_affinity(tid, set) {
                    Ok(()) => moved += 1,
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("sched_setaffinity of thread {tid}"));
                    }
                },
                Err(_) => {}
            }
        }
        if moved == 0 {
            return Ok(tids.len());
        }
    }
    bail!("threads kept starting on other CPUs after 10 passes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_cpus_go_to_the_control_plane_and_one_stays_with_the_nodes() {
        let cpus = members(&affinity(0).unwrap());
        if let Ok(split) = CpuSplit::plan(1) {
            assert_eq!(split.control_plane, [*cpus.last().unwrap()]);
            assert_eq!(split.nodes, cpus[..cpus.len() - 1]);
            assert_eq!(split.machine(), cpus.len());
        }
        let err = CpuSplit::plan(cpus.len())
            .err()
            .expect("no CPU left to the nodes");
        assert!(
            err.to_string().contains("the nodes need at least one"),
            "{err}"
        );
    }

    #[test]
    fn a_split_pins_a_process_group_and_this_process_then_undoes_its_own() {
        let cpus = members(&affinity(0).unwrap());
        let Ok(split) = CpuSplit::plan(1) else {
            // One CPU: nothing to split; plan says why (asserted above).
            return;
        };
        // A process of its own group (sleep), pinned like the control plane.
        let mut child = std::process::Command::new("sleep");
        child.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut child, 0);
        let mut child = child.spawn().unwrap();
        let group = child.id() as i32;
        split.apply(group).unwrap();
        let theirs = members(&affinity(child.id() as i32).unwrap());
        let ours: Vec<Vec<usize>> = own_tasks()
            .into_iter()
            .filter_map(|t| affinity(t).ok())
            .map(|s| members(&s))
            .collect();
        split.undo(group);
        let after = members(&affinity(0).unwrap());
        let theirs_after = members(&affinity(child.id() as i32).unwrap());
        child.kill().unwrap();
        let _ = child.wait();
        assert_eq!(theirs, split.control_plane);
        assert!(ours.iter().all(|s| *s == split.nodes), "{ours:?}");
        assert_eq!(after, cpus);
        assert_eq!(theirs_after, cpus);
        assert!(split.words().starts_with(&format!(
            "the control plane on CPU {} of its own",
            split.control_plane[0]
        )));
    }
}
