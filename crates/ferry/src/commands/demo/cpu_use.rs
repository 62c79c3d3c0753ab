//! Where a run's CPU time went: the whole machine's (every process and the kernel, from
//! `/proc/stat`), the data movers' (this process's children that ended during the run: the
//! restore pods' processes), ferry's controller process and the real control plane's
//! processes. When the simulated nodes share a few CPUs with the control plane, whatever the
//! control plane burns is taken from the data movers, so a run's makespan exceeds what the
//! data movers alone take by about that CPU time over the CPUs; these figures show how much.

use std::time::Instant;

/// The CPU seconds a run used, by whom, over `wall` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuUse {
    pub wall: f64,
    /// Every process and the kernel.
    pub machine: f64,
    /// This process's children that ended in the window: the data movers.
    pub data_movers: f64,
    /// ferry's controller, when it runs as a process of its own.
    pub controller: Option<f64>,
    /// The real control plane (etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler, the snapshot controller); None on kubesim.
    pub control_plane: Option<f64>,
}

impl CpuUse {
    /// What no other figure counts: this process (the simulated nodes), the kernel's
    /// writeback of the restored files, anything else running.
    pub fn rest(&self) -> f64 {
        (self.machine
            - self.data_movers
            - self.controller.unwrap_or(0.0)
            - self.control_plane.unwrap_or(0.0))
        .max(0.0)
    }

    /// The machine's CPU time over what `cpus` CPUs could give in the window.
    pub fn busy(&self, cpus: usize) -> f64 {
        if self.wall <= 0.0 || cpus == 0 {
            return 0.0;
        }
        self.machine / (self.wall * cpus as f64)
    }
}

/// Takes [`CpuSample`]s of the machine, this process's children, and the processes named.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuMeter {
    /// The process group of the real control plane's processes.
    pub control_plane: Option<i32>,
    /// ferry's controller process.
    pub controller: Option<u32>,
}

/// Cumulative CPU seconds at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    machine: f64,
    children: f64,
    controller: Option<f64>,
    control_plane: Option<f64>,
}

impl CpuMeter {
    /// None where `/proc` cannot be read.
    pub fn sample(&self) -> Option<CpuSample> {
        let ticks = clock_ticks()?;
        let machine = machine_busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?)? / ticks;
        Some(CpuSample {
            at: Instant::now(),
            machine,
            children: children_seconds(),
            controller: self
                .controller
                .and_then(|pid| process_ticks(pid).map(|(_, t)| t / ticks)),
            control_plane: self.control_plane.map(|group| group_ticks(group) / ticks),
        })
    }
}

impl CpuSample {
    /// What was used from this sample until `end`.
    pub fn until(&self, end: &CpuSample) -> CpuUse {
        let between = |a: Option<f64>, b: Option<f64>| Some((b? - a?).max(0.0));
        CpuUse {
            wall: end.at.duration_since(self.at).as_secs_f64(),
            machine: (end.machine - self.machine).max(0.0),
            data_movers: (end.children - self.children).max(0.0),
            controller: between(self.controller, end.controller),
            control_plane: between(self.control_plane, end.control_plane),
        }
    }
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// The busy clock ticks of all CPUs from `/proc/stat`'s first line (user, nice, system, irq,
/// softirq, steal; not idle nor iowait; guest time is within user already).
fn machine_busy_ticks(proc_stat: &str) -> Option<f64> {
    let line = proc_stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
    let at = |i: usize| values.get(i).copied().unwrap_or(0.0);
    (values.len() >= 4).then(|| at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// CPU seconds of this process's children that have ended and been waited for.
fn children_seconds() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage of our own.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// A process's group and CPU clock ticks (user + system) from `/proc/<pid>/stat`.
fn process_ticks(pid: u32) -> Option<(i32, f64)> {
    parse_process_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid pgrp … utime stime …`: the command may hold spaces and parentheses,
/// so the fields are counted from the last `)`.
fn parse_process_stat(stat: &str) -> Option<(i32, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let group = fields.get(2)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((group, utime + stime))
}

/// The live processes of a process group.
pub fn group_members(group: i32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_ticks(*pid).is_some_and(|(g, _)| g == group))
        .collect()
}

/// The CPU clock ticks of every live process of a process group.
fn group_ticks(group: i32) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process_ticks)
        .filter(|(g, _)| *g == group)
        .map(|(_, t)| t)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_busy_outside_idle_and_iowait() {
        let stat = "cpu  100 5 30 900 40 7 8 2 11 0\ncpu0 50 2 15 450 20 3 4 1 5 0\n";
        assert_eq!(
            machine_busy_ticks(stat),
            Some(100.0 + 5.0 + 30.0 + 7.0 + 8.0 + 2.0)
        );
        assert_eq!(machine_busy_ticks("intr 1 2 3\n"), None);
    }

    #[test]
    fn a_process_stat_is_read_after_the_last_parenthesis() {
        let stat = "4242 (kube (x) y) S 1 4200 4200 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 9 0";
        assert_eq!(parse_process_stat(stat), Some((4200, 280.0)));
        assert_eq!(parse_process_stat("4242 (short) S 1"), None);
    }

    #[test]
    fn a_child_that_ended_and_this_process_count() {
        let meter = CpuMeter {
            control_plane: None,
            controller: Some(std::process::id()),
        };
        let before = meter.sample().expect("/proc is readable");
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        let mut x = 0u64;
        let spin = Instant::now();
        while spin.elapsed().as_millis() < 200 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = before.until(&meter.sample().expect("/proc is readable"));
        assert!(used.data_movers > 0.05, "the child's CPU: {used:?}");
        assert!(
            used.controller.unwrap() > 0.05,
            "this process's CPU: {used:?}"
        );
        assert_eq!(used.control_plane, None);
        assert!(used.machine >= used.data_movers, "{used:?}");
        assert!(used.wall >= 0.2, "{used:?}");
    }

    #[test]
    fn a_process_group_counts_its_live_processes() {
        use std::os::unix::process::CommandExt;
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
            .expect("sh runs");
        let group = busy.id() as i32;
        let ticks = clock_ticks().unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while process_ticks(busy.id()).map_or(0.0, |(_, t)| t / ticks) < 0.1 {
            assert!(
                Instant::now() < deadline,
                "the busy child never used 0.1 s of CPU"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let counted = group_ticks(group) / ticks;
        let _ = busy.kill();
        let _ = busy.wait();
        assert!(counted >= 0.1, "{counted}");
        assert_eq!(group_ticks(group), 0.0, "an ended group counts nothing");
    }
}
