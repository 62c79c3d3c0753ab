//! The timeline picture: an SVG with one panel per restore mode (one above the other, on one
//! time scale), one lane per node and a bar per restore coloured by phase, plus an HTML page
//! that embeds it. Pure: timings in, text out.
//!
//! Text widths are estimated (no font is at hand when the SVG is written); the estimate errs
//! wide so that labels placed by it do not run into each other in a real renderer.

use std::fmt::Write as _;

use super::timings::{ModeRun, RestoreTiming, RunKind, human_seconds};
use ferry_text::human_bytes;

/// What the picture shows.
#[derive(Debug, Clone)]
pub struct TimelineInput {
    /// The big line at the top.
    pub title: String,
    /// A line under the title (sizes, nodes, verification).
    pub subtitle: String,
    /// The modes, drawn top to bottom.
    pub modes: Vec<ModeRun>,
}

/// A phase of a restore and how it is drawn.
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    fill: &'static str,
    explanation: &'static str,
}

const WAITING: Phase = Phase {
    name: "waiting",
    fill: "url(#waiting-stripes)",
    explanation: "for the workload's pod, the snapshot or a free slot",
};
const EXPOSING: Phase = Phase {
    name: "exposing",
    fill: "#f0a03c",
    explanation: "data mover's volume + pod",
};
const MOVING: Phase = Phase {
    name: "moving data",
    fill: "#2b6cb0",
    explanation: "data mover: repository ⇄ volume",
};
const REBINDING: Phase = Phase {
    name: "rebinding",
    fill: "#38a169",
    explanation: "restored volume → target claim",
};
/// The phases in the order a restore goes through them.
pub(crate) const PHASES: [&Phase; 4] = [&WAITING, &EXPOSING, &MOVING, &REBINDING];

// Layout, in SVG user units (px).
const WIDTH: f64 = 1280.0;
const MARGIN: f64 = 24.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 40.0;
const BAR_HEIGHT: f64 = 22.0;
const TRACK_GAP: f64 = 6.0;
const LANE_PADDING: f64 = 8.0;
const PANEL_HEADER: f64 = 42.0;
const AXIS_HEIGHT: f64 = 36.0;
const PANEL_GAP: f64 = 22.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const LABEL_SIZE: f64 = 12.5;
const DARK: &str = "#1a202c";
const GREY: &str = "#4a5568";
const MAKESPAN_COLOUR: &str = "#c53030";
/// Dark text over lines and stripes stays readable with a white outline under its glyphs.
const HALO: &str =
    r##"paint-order="stroke" stroke="#ffffff" stroke-width="4" stroke-linejoin="round""##;

/// Estimated width of `text` at `size` px: DejaVu Sans averages about 0.6 em a character,
/// bold about 0.66 em (wide letters and digits are above the average, so round up).
pub(crate) fn estimated_text_width(text: &str, size: f64, bold: bool) -> f64 {
    let per_char = if bold { 0.66 } else { 0.6 };
    text.chars().count() as f64 * size * per_char
}

/// Where seconds fall on the page: one scale for every panel.
struct TimeScale {
    /// Seconds the axis covers (a whole number of ticks).
    span: f64,
    /// Seconds between ticks.
    step: f64,
}

impl TimeScale {
    fn for_modes(modes: &[ModeRun]) -> TimeScale {
        let longest = modes
            .iter()
            .flat_map(|m| m.restores.iter())
            .map(|r| r.completed.max(r.move_end).max(r.wait_end))
            .fold(0.0_f64, f64::max)
            .max(0.5);
        let step = tick_step(longest);
        TimeScale {
            span: (longest / step).ceil().max(1.0) * step,
            step,
        }
    }

    fn x(&self, seconds: f64) -> f64 {
        LEFT + (seconds.max(0.0) / self.span) * (WIDTH - LEFT - RIGHT)
    }

    /// The tick times, 0 to the span.
    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let count = (self.span / self.step).round() as usize;
        (0..=count).map(|i| i as f64 * self.step)
    }

    fn tick_label(&self, seconds: f64) -> String {
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10().floor()) as usize
        };
        format!("{seconds:.decimals$} s")
    }
}

/// Renders the SVG document.
pub fn render_svg(input: &TimelineInput) -> String {
    let scale = TimeScale::for_modes(&input.modes);
    let mut body = String::new();

    // Title, subtitle and legend.
    let mut y = 38.0;
    let _ = writeln!(
        body,
        r##"<text class="title" x="{MARGIN}" y="{y}" font-size="26" font-weight="bold" fill="{DARK}">{}</text>"##,
        esc(&input.title)
    );
    y += 26.0;
    let _ = writeln!(
        body,
        r##"<text class="subtitle" x="{MARGIN}" y="{y}" font-size="15" fill="{GREY}">{}</text>"##,
        esc(&input.subtitle)
    );
    y += 20.0;
    y = legend(&mut body, y) + 18.0;

    let last = input.modes.len().saturating_sub(1);
    for (index, mode) in input.modes.iter().enumerate() {
        y = panel(&mut body, mode, y, &scale, index == last);
        y += PANEL_GAP;
    }

    // The comparison: how much sooner the last restore mode finished than the first.
    let restores: Vec<&ModeRun> = input
        .modes
        .iter()
        .filter(|m| m.kind == RunKind::Restore)
        .collect();
    if let (Some(first), Some(last)) = (restores.first(), restores.last())
        && restores.len() > 1
        && last.makespan() > 0.0
    {
        y += 4.0;
        let _ = writeln!(
            body,
            r##"<text class="comparison" x="{MARGIN}" y="{y}" font-size="17" fill="{DARK}"><tspan font-weight="bold">{} finished {:.1}× sooner than {}</tspan> ({} → {})</text>"##,
            esc(&last.name),
            first.makespan() / last.makespan(),
            esc(&first.name),
            human_seconds(first.makespan()),
            human_seconds(last.makespan())
        );
        y += 12.0;
    }
    y += 12.0;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}" font-family="{FONT}">"#
    );
    svg.push_str(DEFS);
    let _ = writeln!(
        svg,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{y}" fill="#ffffff"/>"##
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

/// Renders a standalone HTML page embedding the SVG.
pub fn render_html(input: &TimelineInput, svg: &str) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
  body {{ font-family: {FONT}; margin: 2rem; color: #1a202c; background: #f7fafc; }}
  figure {{ margin: 0; background: #fff; box-shadow: 0 1px 4px rgba(0,0,0,.15); display: inline-block; }}
  svg {{ max-width: 100%; height: auto; }}
  p {{ max-width: 60rem; line-height: 1.5; }}
  g.restore:hover rect.phase {{ stroke: #1a202c; stroke-width: 1.5; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{subtitle}</p>
<p>Each lane is a node. In the <b>backup</b> panel each bar is one volume's DataUpload:
waiting (until ferry accepts it), exposing (a backup volume from the CSI snapshot, and its pod)
and moving data (ferry's data mover, volume → repository). In the restore panels each bar is
the restore of one volume: waiting, exposing (restore
volume and pod), moving data (ferry's data mover) and rebinding (the restored volume to its
target claim). <b>default</b> keeps WaitForFirstConsumer's promise: a restore waits until the
workload pod that uses the volume is scheduled, and a StatefulSet creates its pods one at a
time. <b>ignoreDelayBinding</b> (<code>restorePVC.ignoreDelayBinding: true</code> in the
node-agent ConfigMap) starts every restore at once and spreads them over the nodes. Hover a bar
for its figures.</p>
<figure>
{svg}</figure>
</body>
</html>
"#,
        title = esc(&input.title),
        subtitle = esc(&input.subtitle),
    );
    html
}

/// A "nice" tick step (1, 2 or 5 × 10^k seconds) giving at most about ten ticks.
fn tick_step(span: f64) -> f64 {
    let rough = span / 10.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        if factor * magnitude >= rough {
            return factor * magnitude;
        }
    }
    10.0 * magnitude
}

/// Assigns each restore of a lane to a track so that bars in one track never overlap.
/// Returns the track of each restore (in the given order) and the number of tracks.
fn assign_tracks(restores: &[&RestoreTiming]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..restores.len()).collect();
    order.sort_by(|&a, &b| {
        restores[a]
            .wait_start
            .total_cmp(&restores[b].wait_start)
            .then(restores[a].move_start.total_cmp(&restores[b].move_start))
    });
    let mut track_ends: Vec<f64> = Vec::new();
    let mut tracks = vec![0; restores.len()];
    for i in order {
        let r = restores[i];
        let track = match track_ends.iter().position(|&end| end <= r.wait_start) {
            Some(t) => t,
            None => {
                track_ends.push(f64::NEG_INFINITY);
                track_ends.len() - 1
            }
        };
        track_ends[track] = r.completed;
        tracks[i] = track;
    }
    let count = track_ends.len().max(1);
    (tracks, count)
}

/// One node's lane in a panel: where it is and its restores with their tracks.
struct Lane<'a> {
    node: &'a str,
    top: f64,
    height: f64,
    restores: Vec<(&'a RestoreTiming, usize)>,
}

fn lanes<'a>(mode: &'a ModeRun, top: f64) -> Vec<Lane<'a>> {
    let mut y = top;
    mode.nodes
        .iter()
        .map(|node| {
            let restores: Vec<&RestoreTiming> =
                mode.restores.iter().filter(|r| &r.node == node).collect();
            let (tracks, count) = assign_tracks(&restores);
            let height =
                LANE_PADDING * 2.0 + count as f64 * BAR_HEIGHT + (count as f64 - 1.0) * TRACK_GAP;
            let lane = Lane {
                node,
                top: y,
                height,
                restores: restores.into_iter().zip(tracks).collect(),
            };
            y += height;
            lane
        })
        .collect()
}

/// Draws one mode's panel starting at `top`; returns the y below it. Drawn bottom up: lane
/// shading, grid, makespan line, then bars and labels, so nothing hides a label.
fn panel(out: &mut String, mode: &ModeRun, top: f64, scale: &TimeScale, caption: bool) -> f64 {
    let makespan = mode.makespan();
    let _ = writeln!(out, r#"<g class="mode" data-mode="{}">"#, esc(&mode.name));
    let _ = writeln!(
        out,
        r##"<text class="mode-title" x="{MARGIN}" y="{}" font-size="19" font-weight="bold" fill="{DARK}">{}<tspan dx="12" font-weight="normal" font-size="14" fill="{GREY}">{}</tspan></text>"##,
        top + 22.0,
        esc(&mode.name),
        esc(&mode.description)
    );
    let _ = writeln!(
        out,
        r##"<text class="mode-makespan" x="{}" y="{}" font-size="17" text-anchor="end" fill="{DARK}">makespan <tspan font-weight="bold" fill="{MAKESPAN_COLOUR}">{}</tspan></text>"##,
        WIDTH - RIGHT,
        top + 22.0,
        human_seconds(makespan)
    );

    let lanes_top = top + PANEL_HEADER;
    let lanes = lanes(mode, lanes_top);
    let lanes_bottom = lanes.last().map_or(lanes_top, |l| l.top + l.height);

    for (index, lane) in lanes.iter().enumerate() {
        let shade = if index % 2 == 0 { "#f1f4f8" } else { "#fbfcfd" };
        let _ = writeln!(
            out,
            r#"<rect class="lane-background" x="{LEFT}" y="{}" width="{}" height="{}" fill="{shade}"/>"#,
            lane.top,
            WIDTH - LEFT - RIGHT,
            lane.height
        );
    }
    for tick in scale.ticks() {
        let x = scale.x(tick);
        let _ = writeln!(
            out,
            r##"<line class="grid" x1="{x:.1}" y1="{lanes_top}" x2="{x:.1}" y2="{lanes_bottom}" stroke="#cbd5e0" stroke-width="1"/>"##
        );
    }
    if makespan > 0.0 {
        let x = scale.x(makespan);
        let _ = writeln!(
            out,
            r##"<line class="makespan" x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{lanes_bottom}" stroke="{MAKESPAN_COLOUR}" stroke-width="2" stroke-dasharray="6 4"/>"##,
            lanes_top - 4.0
        );
    }

    for lane in &lanes {
        let _ = writeln!(
            out,
            r#"<g class="lane" data-mode="{}" data-node="{}">"#,
            esc(&mode.name),
            esc(lane.node)
        );
        let _ = writeln!(
            out,
            r##"<text class="node" x="{}" y="{}" font-size="15" font-weight="bold" text-anchor="end" dominant-baseline="middle" fill="#2d3748">{}</text>"##,
            LEFT - 12.0,
            lane.top + lane.height / 2.0,
            esc(lane.node)
        );
        for (restore, track) in &lane.restores {
            let bar_y = lane.top + LANE_PADDING + *track as f64 * (BAR_HEIGHT + TRACK_GAP);
            out.push_str(&bar(restore, mode.kind, bar_y, scale));
        }
        out.push_str("</g>\n");
    }

    // The time axis: a line, a tick and a label per step.
    let _ = writeln!(out, r#"<g class="axis">"#);
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{lanes_bottom}" x2="{}" y2="{lanes_bottom}" stroke="{GREY}" stroke-width="1.2"/>"##,
        WIDTH - RIGHT
    );
    for tick in scale.ticks() {
        let x = scale.x(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{lanes_bottom}" x2="{x:.1}" y2="{}" stroke="{GREY}" stroke-width="1.2"/>"##,
            lanes_bottom + 6.0
        );
        let _ = writeln!(
            out,
            r##"<text class="tick" x="{x:.1}" y="{}" font-size="13" text-anchor="middle" fill="{GREY}">{}</text>"##,
            lanes_bottom + 22.0,
            scale.tick_label(tick)
        );
    }
    let mut bottom = lanes_bottom + AXIS_HEIGHT;
    if caption {
        let _ = writeln!(
            out,
            r##"<text class="axis-caption" x="{}" y="{}" font-size="13" text-anchor="middle" fill="{GREY}">time since the {} were created (every panel on the same scale)</text>"##,
            (LEFT + WIDTH - RIGHT) / 2.0,
            bottom + 4.0,
            match mode.kind {
                RunKind::Restore => "restores",
                RunKind::Backup => "backups",
            }
        );
        bottom += 16.0;
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, "</g>");
    bottom
}

/// One restore's bar: a segment per phase, the volume's name and size, and a tooltip.
fn bar(r: &RestoreTiming, kind: RunKind, y: f64, scale: &TimeScale) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<g class="restore" data-volume="{}" data-node="{}">"#,
        esc(&r.volume),
        esc(&r.node)
    );
    let _ = write!(
        out,
        "<title>{} on {}: waited {:.2} s, exposed {:.2} s, moved {} in {:.2} s ({:.0} MiB/s)",
        esc(&r.volume),
        esc(&r.node),
        r.waiting(),
        r.exposing(),
        human_bytes(r.bytes),
        r.moving(),
        r.throughput() / (1024.0 * 1024.0),
    );
    if kind == RunKind::Restore {
        let _ = write!(out, ", rebound in {:.2} s", r.rebinding());
    }
    out.push_str("</title>\n");
    let segments = [
        (&WAITING, r.wait_start, r.wait_end),
        (&EXPOSING, r.wait_end, r.move_start.max(r.expose_end)),
        (&MOVING, r.move_start, r.move_end),
        (&REBINDING, r.move_end, r.completed),
    ];
    for (phase, from, to) in segments {
        if to <= from {
            continue;
        }
        // A phase too short to see still gets a sliver, so every phase that happened shows.
        let (x0, x1) = (scale.x(from), scale.x(to));
        let _ = writeln!(
            out,
            r#"<rect class="phase" data-phase="{}" x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{BAR_HEIGHT}" fill="{}"/>"#,
            phase.name,
            (x1 - x0).max(1.5),
            phase.fill
        );
    }
    // Outline the whole bar so adjacent bars read as separate restores.
    let (start, end) = (scale.x(r.wait_start), scale.x(r.completed));
    let _ = writeln!(
        out,
        r##"<rect x="{start:.1}" y="{y:.1}" width="{:.1}" height="{BAR_HEIGHT}" fill="none" stroke="{DARK}" stroke-opacity="0.45" stroke-width="0.8" rx="2"/>"##,
        (end - start).max(1.5)
    );
    out.push_str(&bar_label(r, y, scale));
    out.push_str("</g>\n");
    out
}

/// The volume's name and size: inside the data-movement segment (white on blue) when it fits,
/// else after the bar, else at the end of the waiting stripes, else before the bar.
fn bar_label(r: &RestoreTiming, y: f64, scale: &TimeScale) -> String {
    let label = format!("{} · {}", r.volume, human_bytes(r.bytes));
    let width = estimated_text_width(&label, LABEL_SIZE, false);
    let text_y = y + BAR_HEIGHT / 2.0 + 0.5;
    let (start, end) = (scale.x(r.wait_start), scale.x(r.completed));
    let (move_x0, move_x1) = (scale.x(r.move_start), scale.x(r.move_end));
    let wait_x1 = scale.x(r.wait_end);
    let text = |x: f64, anchor: &str, colour: &str, halo: bool| {
        format!(
            r#"<text class="label" x="{x:.1}" y="{text_y:.1}" font-size="{LABEL_SIZE}" text-anchor="{anchor}" dominant-baseline="middle" fill="{colour}"{}>{}</text>
"#,
            if halo {
                format!(" {HALO}")
            } else {
                String::new()
            },
            esc(&label)
        )
    };
    if move_x1 - move_x0 >= width + 12.0 {
        return text(move_x0 + 6.0, "start", "#ffffff", false);
    }
    if end + 6.0 + width <= WIDTH - 8.0 {
        return text(end + 6.0, "start", DARK, true);
    }
    if wait_x1 - start >= width + 12.0 {
        // Against the end of the wait, next to the bar's coloured phases.
        return text(wait_x1 - 6.0, "end", DARK, true);
    }
    if start - 6.0 - width >= LEFT + 2.0 {
        return text(start - 6.0, "end", DARK, true);
    }
    // Nowhere clear (a very long name on a full-width bar): over the bar, outlined.
    text(start + 6.0, "start", DARK, true)
}

/// The legend: a swatch per phase and the makespan line, in one row when the picture is
/// wide enough, else in aligned columns of two (the phases in order down the columns).
/// Returns the y below it.
fn legend(out: &mut String, top: f64) -> f64 {
    const SWATCH: f64 = 26.0;
    const ROW: f64 = 26.0;
    const GAP: f64 = 30.0;
    const SIZE: f64 = 14.0;
    let item_width = |name: &str, explanation: Option<&str>| {
        SWATCH
            + 8.0
            + estimated_text_width(name, SIZE, true)
            + explanation.map_or(0.0, |e| {
                estimated_text_width(&format!(" ({e})"), SIZE, false)
            })
    };
    let mut widths: Vec<f64> = PHASES
        .iter()
        .map(|p| item_width(p.name, Some(p.explanation)))
        .collect();
    widths.push(item_width("makespan", None));
    let one_row: f64 = widths.iter().sum::<f64>() + GAP * (widths.len() - 1) as f64;
    let rows = if MARGIN + one_row <= WIDTH - RIGHT {
        1
    } else {
        2
    };
    // Column-major: item i goes to column i / rows, row i % rows.
    let columns: Vec<f64> = widths
        .chunks(rows)
        .map(|column| column.iter().copied().fold(0.0, f64::max))
        .collect();
    let place = |i: usize| {
        let column = i / rows;
        let x = MARGIN + columns[..column].iter().map(|w| w + GAP).sum::<f64>();
        (x, top + (i % rows) as f64 * ROW)
    };

    out.push_str("<g class=\"legend\">\n");
    for (i, phase) in PHASES.iter().enumerate() {
        let (x, y) = place(i);
        let _ = writeln!(
            out,
            r##"<rect class="swatch" data-phase="{}" x="{x}" y="{y}" width="{SWATCH}" height="16" fill="{}" stroke="{DARK}" stroke-opacity="0.45" stroke-width="0.8" rx="2"/>"##,
            phase.name, phase.fill
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" font-size="{SIZE}" dominant-baseline="middle" fill="#2d3748"><tspan font-weight="bold">{}</tspan> ({})</text>"##,
            x + SWATCH + 8.0,
            y + 8.5,
            esc(phase.name),
            esc(phase.explanation)
        );
    }
    let (x, y) = place(PHASES.len());
    let _ = writeln!(
        out,
        r##"<line class="swatch" x1="{x}" y1="{}" x2="{}" y2="{}" stroke="{MAKESPAN_COLOUR}" stroke-width="2" stroke-dasharray="6 4"/>"##,
        y + 8.0,
        x + SWATCH,
        y + 8.0
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" font-size="{SIZE}" font-weight="bold" dominant-baseline="middle" fill="#2d3748">makespan</text>"##,
        x + SWATCH + 8.0,
        y + 8.5
    );
    out.push_str("</g>\n");
    top + (rows - 1) as f64 * ROW + 16.0
}

const DEFS: &str = r##"<defs>
<pattern id="waiting-stripes" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)">
<rect width="8" height="8" fill="#e2e8f0"/>
<line x1="0" y1="0" x2="0" y2="8" stroke="#a0aec0" stroke-width="3"/>
</pattern>
</defs>
"##;

/// Escapes text for XML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
pub(crate) mod tests;
