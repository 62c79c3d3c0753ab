//! Who used the machine's CPUs while the restores ran, beside the measured ideal: on a
//! machine whose CPUs the simulated nodes share with the control plane, the CPU time a mode
//! uses beyond the data movers' own is taken from them, and that (over the CPUs) is how much
//! of its makespan above the ideal the machine, not the orchestration's waiting, explains.
//! With `--control-plane-cpus` the control plane has CPUs of its own, and only what the nodes'
//! CPUs did beyond the ideal counts against them.

use std::fmt::Write as _;

use crate::commands::demo::cpu_use::CpuUse;
use crate::commands::demo::restore_run::Mode;
use crate::commands::demo::timings::{ModeRun, human_seconds};

use super::super::cpu_split::{CpuSplit, count_words};
use super::ideal::Ideal;
use super::table_row;

/// The CPU table (the modes, then the ideal) and, when ignoreDelayBinding took longer than
/// the ideal, what its CPU time beyond the ideal's amounts to. Empty when nothing was measured.
/// `cpus`: the CPUs the simulated nodes had (all of the machine's without a `split`).
pub(super) fn render_cpu(
    runs: &[ModeRun],
    cpu: &[Option<CpuUse>],
    ideal: &Ideal,
    cpus: usize,
    split: Option<&CpuSplit>,
) -> String {
    let columns: Vec<Option<CpuUse>> = cpu.iter().copied().chain([ideal.cpu]).collect();
    if columns.iter().all(Option::is_none) {
        return String::new();
    }
    let machine = split.map_or(cpus, CpuSplit::machine);
    let mut out = format!(
        "\nCPU time while the restores ran (this machine's {}{}; from the first DataDownload's \
         creation until every one had ended):\n",
        count_words(machine),
        split
            .map(|s| format!(": {}", s.words()))
            .unwrap_or_default()
    );
    let cell = |f: &dyn Fn(&CpuUse) -> Option<String>| {
        columns
            .iter()
            .map(|c| c.as_ref().and_then(f).unwrap_or_else(|| "-".into()))
            .collect::<Vec<String>>()
    };
    let names = runs
        .iter()
        .map(|r| r.name.clone())
        .chain([ideal.run.name.clone()]);
    table_row(&mut out, "", names);
    table_row(
        &mut out,
        "  the whole machine",
        cell(&|c| {
            Some(format!(
                "{} ({:.0}% busy)",
                human_seconds(c.machine),
                c.busy(machine) * 100.0
            ))
        }),
    );
    table_row(
        &mut out,
        "  data movers",
        cell(&|c| Some(human_seconds(c.data_movers))),
    );
    if columns.iter().flatten().any(|c| c.controller.is_some()) {
        table_row(
            &mut out,
            "  ferry's controller",
            cell(&|c| c.controller.map(human_seconds)),
        );
    }
    let control_plane = columns.iter().flatten().any(|c| c.control_plane.is_some());
    if control_plane {
        table_row(
            &mut out,
            "  control plane",
            cell(&|c| c.control_plane.map(human_seconds)),
        );
    }
    table_row(
        &mut out,
        "  the rest",
        cell(&|c| Some(human_seconds(c.rest()))),
    );
    if control_plane {
        out.push_str(
            "the control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler \
             and the snapshot controller; ",
        );
    }
    out.push_str(
        "the rest: this process (the simulated nodes), the kernel's writeback of the restored \
         files, anything else running on the machine.\n",
    );
    let idb = runs
        .iter()
        .zip(cpu)
        .find(|(r, _)| r.name == Mode::IgnoreDelayBinding.name());
    if let (Some((run, Some(used))), Some(alone)) = (idb, ideal.cpu)
        && run.makespan() > ideal.makespan()
    {
        let text = match split {
            None => beyond_the_ideal(run, used, &alone, ideal, cpus),
            Some(_) => beyond_the_ideal_on_the_nodes(run, used, &alone, ideal, cpus),
        };
        let _ = writeln!(out, "{text}");
    }
    out
}

/// What a mode's CPU time beyond the ideal's comes to on this machine's CPUs, against the time
/// its makespan exceeds the ideal's.
fn beyond_the_ideal(
    run: &ModeRun,
    used: &CpuUse,
    alone: &CpuUse,
    ideal: &Ideal,
    cpus: usize,
) -> String {
    let more = used.machine - alone.machine;
    let parts = differences(used, alone, true);
    format!(
        "{}: {:.0}% busy; it used {:.2} CPU-seconds {} than the data movers alone ({}), {} on \
         {cpus} CPUs, against the {} by which its makespan exceeds the measured ideal.{}",
        run.name,
        used.busy(cpus) * 100.0,
        more.abs(),
        if more < 0.0 { "less" } else { "more" },
        parts,
        human_seconds(more.max(0.0) / cpus.max(1) as f64),
        human_seconds((run.makespan() - ideal.makespan()).max(0.0)),
        if used.control_plane.is_some() {
            " A cluster's control plane runs on machines of its own, not on its nodes' CPUs \
             (--control-plane-cpus measures that)."
        } else {
            ""
        }
    )
}

/// The same, when the control plane had CPUs of its own: what the nodes' CPUs did beyond the
/// ideal (everything but the control plane; the kernel's writeback may run on either side).
fn beyond_the_ideal_on_the_nodes(
    run: &ModeRun,
    used: &CpuUse,
    alone: &CpuUse,
    ideal: &Ideal,
    cpus: usize,
) -> String {
    let on_nodes = |c: &CpuUse| c.machine - c.control_plane.unwrap_or(0.0);
    let more = on_nodes(used) - on_nodes(alone);
    let parts = differences(used, alone, false);
    format!(
        "{}: outside the control plane (on its own CPUs) it used {:.2} CPU-seconds {} than the \
         data movers alone ({}), {} on the nodes' {}, against the {} by which its makespan \
         exceeds the measured ideal.",
        run.name,
        more.abs(),
        if more < 0.0 { "less" } else { "more" },
        parts,
        human_seconds(more.max(0.0) / cpus.max(1) as f64),
        count_words(cpus),
        human_seconds((run.makespan() - ideal.makespan()).max(0.0)),
    )
}

/// Who used how much more CPU time than the data movers alone: "control plane +1.20, ferry's
/// controller +0.20, data movers +0.10, the rest −0.80" (the control plane if asked and known).
fn differences(used: &CpuUse, alone: &CpuUse, control_plane: bool) -> String {
    let signed = |v: f64| format!("{}{:.2}", if v < 0.0 { "−" } else { "+" }, v.abs());
    let mut parts = Vec::new();
    if let (true, Some(plane)) = (control_plane, used.control_plane) {
        parts.push(format!(
            "control plane {}",
            signed(plane - alone.control_plane.unwrap_or(0.0))
        ));
    }
    if let Some(controller) = used.controller {
        parts.push(format!("ferry's controller {}", signed(controller)));
    }
    parts.push(format!(
        "data movers {}",
        signed(used.data_movers - alone.data_movers)
    ));
    parts.push(format!("the rest {}", signed(used.rest() - alone.rest())));
    parts.join(", ")
}
