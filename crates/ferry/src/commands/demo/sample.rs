//! A made-up but plausible run of both restore modes, for the picture's tests and for
//! `ferry demo timeline-sample`, which draws the picture without a cluster so that a person
//! can look at its design at any number of nodes and volumes.

use std::path::Path;

use anyhow::Context;

use super::restore_run::Mode;
use super::timeline::{self, TimelineInput};
use super::timings::{ModeRun, RestoreTiming, RunKind};
use ferry_text::human_bytes;

/// How fast the made-up run goes: data mover rates (MiB/s) of one restore alone and of one
/// of several sharing a node; seconds to schedule a pod, expose a restore, rebind it, start a
/// workload pod; data movements at once per node (the demo's `loadConcurrency`).
struct Pace {
    alone: f64,
    shared: f64,
    schedule: f64,
    expose: f64,
    rebind: f64,
    pod_start: f64,
    per_node: usize,
}

const PACE: Pace = Pace {
    alone: 60.0,
    shared: 30.0,
    schedule: 0.25,
    expose: 0.3,
    rebind: 0.12,
    pod_start: 0.3,
    per_node: 2,
};

/// Both modes for `volumes` volumes of 24 to 40 MiB on `nodes` nodes (at least one of each).
pub fn sample_input(nodes: usize, volumes: usize) -> TimelineInput {
    let nodes: Vec<String> = (1..=nodes.max(1)).map(|i| format!("node-{i}")).collect();
    let volumes = volumes.max(1);
    let mib = |i: usize| 24 + (i * 7) % 17;
    let restore = |i: usize, node: &str, wait_end: f64, rate: f64| {
        let move_start = wait_end + PACE.expose;
        let move_end = move_start + mib(i) as f64 / rate;
        RestoreTiming {
            volume: format!("data-ledger-{i}"),
            node: node.to_string(),
            wait_start: 0.0,
            wait_end,
            expose_end: move_start,
            move_start,
            move_end,
            completed: move_end + PACE.rebind,
            bytes: (mib(i) as u64) << 20,
        }
    };

    // Default: each restore once its workload pod is scheduled, which is once the previous
    // pod runs; the scheduler spreads the pods round-robin.
    let mut default = Vec::new();
    let mut pod_created = 0.0;
    for i in 0..volumes {
        let r = restore(
            i,
            &nodes[i % nodes.len()],
            pod_created + PACE.schedule,
            PACE.alone,
        );
        pod_created = r.completed + PACE.pod_start;
        default.push(r);
    }

    // ignoreDelayBinding: round-robin over the nodes, `per_node` at once, the rest queued.
    let mut free_at = vec![vec![0.05_f64; PACE.per_node]; nodes.len()];
    let mut parallel = Vec::new();
    for i in 0..volumes {
        let node = i % nodes.len();
        let slot = (0..PACE.per_node)
            .min_by(|&a, &b| free_at[node][a].total_cmp(&free_at[node][b]))
            .unwrap_or(0);
        let r = restore(i, &nodes[node], free_at[node][slot], PACE.shared);
        free_at[node][slot] = r.completed;
        parallel.push(r);
    }

    let total: u64 = default.iter().map(|r| r.bytes).sum();
    let run = |mode: Mode, restores| ModeRun {
        name: mode.name().into(),
        description: mode.description().into(),
        kind: RunKind::Restore,
        nodes: nodes.clone(),
        restores,
    };
    TimelineInput {
        title: format!(
            "ferry: restoring {volumes} volumes ({}) on {} nodes",
            human_bytes(total),
            nodes.len()
        ),
        subtitle: "A made-up run (ferry demo timeline-sample) to look at the picture's design"
            .into(),
        modes: vec![
            run(Mode::Default, default),
            run(Mode::IgnoreDelayBinding, parallel),
        ],
    }
}

/// Writes the made-up run's picture to `out` (an SVG; an HTML page next to it).
pub fn write_sample(nodes: usize, volumes: usize, out: &Path) -> anyhow::Result<()> {
    let input = sample_input(nodes, volumes);
    let svg = timeline::render_svg(&input);
    std::fs::write(out, &svg).with_context(|| format!("writing {}", out.display()))?;
    let html = out.with_extension("html");
    std::fs::write(&html, timeline::render_html(&input, &svg))
        .with_context(|| format!("writing {}", html.display()))?;
    println!("{}\n{}", out.display(), html.display());
    Ok(())
}
