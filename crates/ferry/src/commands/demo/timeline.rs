//! The timeline picture: an SVG with one panel per restore mode (one above the other, on one
//! time scale), one lane per node and a bar per restore coloured by phase, plus an HTML page
//! that embeds it. Pure: timings in, text out.

use std::fmt::Write as _;

use super::timings::{ModeRun, RestoreTiming, human_bytes, human_seconds};

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
struct Phase {
    name: &'static str,
    fill: &'static str,
    explanation: &'static str,
}

const WAITING: Phase = Phase {
    name: "waiting",
    fill: "url(#waiting-stripes)",
    explanation: "for its workload pod, or the controller",
};
const EXPOSING: Phase = Phase {
    name: "exposing",
    fill: "#f0a03c",
    explanation: "restore volume + pod",
};
const MOVING: Phase = Phase {
    name: "moving data",
    fill: "#2b6cb0",
    explanation: "repository → volume",
};

// Layout, in SVG user units (px).
const WIDTH: f64 = 1280.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 48.0;
const BAR_HEIGHT: f64 = 22.0;
const TRACK_GAP: f64 = 6.0;
const LANE_PADDING: f64 = 8.0;
const PANEL_HEADER: f64 = 44.0;
const AXIS_HEIGHT: f64 = 40.0;
const PANEL_GAP: f64 = 26.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

/// Renders the SVG document.
pub fn render_svg(input: &TimelineInput) -> String {
    let span = time_span(&input.modes);
    let step = tick_step(span);
    let plot_width = WIDTH - LEFT - RIGHT;
    let x_of = |t: f64| LEFT + (t.max(0.0) / span) * plot_width;

    let mut body = String::new();
    let mut y = 0.0;

    // Title, subtitle and legend.
    y += 40.0;
    let _ = writeln!(
        body,
        r##"<text x="24" y="{y}" font-size="24" font-weight="bold" fill="#1a202c">{}</text>"##,
        esc(&input.title)
    );
    y += 24.0;
    let _ = writeln!(
        body,
        r##"<text x="24" y="{y}" font-size="14" fill="#4a5568">{}</text>"##,
        esc(&input.subtitle)
    );
    y += 18.0;
    body.push_str(&legend(24.0, y));
    y += 40.0;

    for mode in &input.modes {
        y = panel(&mut body, mode, y, span, step, &x_of);
        y += PANEL_GAP;
    }

    // The comparison line: how much sooner the last mode finished than the first.
    if let (Some(first), Some(last)) = (input.modes.first(), input.modes.last())
        && input.modes.len() > 1
        && last.makespan() > 0.0
    {
        let ratio = first.makespan() / last.makespan();
        let _ = writeln!(
            body,
            r##"<text class="comparison" x="24" y="{y}" font-size="16" fill="#1a202c"><tspan font-weight="bold">{} finished {:.1}× sooner than {}</tspan> ({} → {})</text>"##,
            esc(&last.name),
            ratio,
            esc(&first.name),
            human_seconds(first.makespan()),
            human_seconds(last.makespan())
        );
        y += 24.0;
    }
    y += 8.0;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}" font-family="{FONT}">"#
    );
    svg.push_str(&defs());
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
  g.restore:hover rect {{ stroke: #1a202c; stroke-width: 1.5; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{subtitle}</p>
<p>Each lane is a node; each bar is the restore of one volume. <b>default</b> keeps
WaitForFirstConsumer's promise: a restore waits until the workload pod that uses the volume is
scheduled, and a StatefulSet creates its pods one at a time. <b>ignoreDelayBinding</b>
(<code>restorePVC.ignoreDelayBinding: true</code> in the node-agent ConfigMap) starts every
restore at once and spreads them over the nodes. Hover a bar for its figures.</p>
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

/// The seconds the time axis covers: the longest makespan, rounded up to a whole tick.
fn time_span(modes: &[ModeRun]) -> f64 {
    let longest = modes
        .iter()
        .flat_map(|m| m.restores.iter())
        .map(|r| r.move_end.max(r.expose_end).max(r.wait_end))
        .fold(0.0_f64, f64::max)
        .max(0.5);
    let step = tick_step(longest);
    (longest / step).ceil().max(1.0) * step
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
        track_ends[track] = r.move_end;
        tracks[i] = track;
    }
    let count = track_ends.len().max(1);
    (tracks, count)
}

/// Draws one mode's panel starting at `top`; returns the y below it.
fn panel(
    out: &mut String,
    mode: &ModeRun,
    top: f64,
    span: f64,
    step: f64,
    x_of: &dyn Fn(f64) -> f64,
) -> f64 {
    let makespan = mode.makespan();
    let _ = writeln!(out, r#"<g class="mode" data-mode="{}">"#, esc(&mode.name));
    let _ = writeln!(
        out,
        r##"<text x="24" y="{}" font-size="18" font-weight="bold" fill="#1a202c">{}<tspan dx="12" font-weight="normal" font-size="14" fill="#4a5568">{}</tspan></text>"##,
        top + 22.0,
        esc(&mode.name),
        esc(&mode.description)
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" font-size="16" text-anchor="end" fill="#1a202c">makespan <tspan font-weight="bold">{}</tspan></text>"##,
        WIDTH - RIGHT,
        top + 22.0,
        human_seconds(makespan)
    );

    let lanes_top = top + PANEL_HEADER;
    let mut y = lanes_top;
    let mut lane_bodies = String::new();
    for (index, node) in mode.nodes.iter().enumerate() {
        let restores: Vec<&RestoreTiming> =
            mode.restores.iter().filter(|r| &r.node == node).collect();
        let (tracks, count) = assign_tracks(&restores);
        let height =
            LANE_PADDING * 2.0 + count as f64 * BAR_HEIGHT + (count as f64 - 1.0) * TRACK_GAP;
        let shade = if index % 2 == 0 { "#f4f6f9" } else { "#ffffff" };
        let _ = writeln!(
            lane_bodies,
            r#"<g class="lane" data-mode="{}" data-node="{}">"#,
            esc(&mode.name),
            esc(node)
        );
        let _ = writeln!(
            lane_bodies,
            r#"<rect x="{LEFT}" y="{y}" width="{}" height="{height}" fill="{shade}"/>"#,
            WIDTH - LEFT - RIGHT
        );
        let _ = writeln!(
            lane_bodies,
            r##"<text x="{}" y="{}" font-size="14" text-anchor="end" dominant-baseline="middle" fill="#2d3748">{}</text>"##,
            LEFT - 12.0,
            y + height / 2.0,
            esc(node)
        );
        for (restore, track) in restores.iter().zip(tracks) {
            let bar_y = y + LANE_PADDING + track as f64 * (BAR_HEIGHT + TRACK_GAP);
            lane_bodies.push_str(&bar(restore, bar_y, x_of));
        }
        lane_bodies.push_str("</g>\n");
        y += height;
    }
    let lanes_bottom = y;

    // Grid lines under the bars, then the bars, then the axis.
    let mut tick = 0.0;
    while tick <= span + step / 2.0 {
        let x = x_of(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{lanes_top}" x2="{x:.1}" y2="{lanes_bottom}" stroke="#d8dee8" stroke-width="1"/>"##
        );
        tick += step;
    }
    // Lanes drawn over a grid they hide, so draw grid again on top, faintly, for reading times.
    out.push_str(&lane_bodies);
    let mut tick = 0.0;
    let decimals = if step < 1.0 { 1 } else { 0 };
    let _ = writeln!(out, r#"<g class="axis">"#);
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{lanes_bottom}" x2="{}" y2="{lanes_bottom}" stroke="#4a5568" stroke-width="1.2"/>"##,
        WIDTH - RIGHT
    );
    while tick <= span + step / 2.0 {
        let x = x_of(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{lanes_top}" x2="{x:.1}" y2="{lanes_bottom}" stroke="#94a3b8" stroke-width="0.6" stroke-opacity="0.35"/>"##
        );
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{lanes_bottom}" x2="{x:.1}" y2="{}" stroke="#4a5568" stroke-width="1.2"/>"##,
            lanes_bottom + 6.0
        );
        let _ = writeln!(
            out,
            r##"<text class="tick" x="{x:.1}" y="{}" font-size="13" text-anchor="middle" fill="#4a5568">{:.*} s</text>"##,
            lanes_bottom + 22.0,
            decimals,
            tick
        );
        tick += step;
    }
    let _ = writeln!(out, "</g>");

    // The makespan marker.
    if makespan > 0.0 {
        let x = x_of(makespan);
        let _ = writeln!(
            out,
            r##"<line class="makespan" x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{lanes_bottom}" stroke="#c53030" stroke-width="2" stroke-dasharray="6 4"/>"##,
            lanes_top - 6.0
        );
    }
    let _ = writeln!(out, "</g>");
    lanes_bottom + AXIS_HEIGHT
}

/// One restore's bar: a segment per phase, the volume name, and a tooltip.
fn bar(r: &RestoreTiming, y: f64, x_of: &dyn Fn(f64) -> f64) -> String {
    let mut out = String::new();
    let mb_per_s = r.throughput() / (1024.0 * 1024.0);
    let _ = writeln!(
        out,
        r#"<g class="restore" data-volume="{}" data-node="{}">"#,
        esc(&r.volume),
        esc(&r.node)
    );
    let _ = writeln!(
        out,
        "<title>{} on {}: waited {:.1} s, exposed {:.1} s, moved {} in {:.1} s ({:.0} MiB/s)</title>",
        esc(&r.volume),
        esc(&r.node),
        r.waiting(),
        r.exposing(),
        human_bytes(r.bytes),
        r.moving(),
        mb_per_s
    );
    let expose_to = r.move_start.max(r.expose_end);
    let segments = [
        (&WAITING, r.wait_start, r.wait_end),
        (&EXPOSING, r.wait_end, expose_to),
        (&MOVING, r.move_start, r.move_end),
    ];
    for (phase, from, to) in segments {
        let (x0, x1) = (x_of(from), x_of(to));
        // A phase too short to see still gets a sliver, so every phase that happened shows.
        let width = x1 - x0;
        if to <= from {
            continue;
        }
        let _ = writeln!(
            out,
            r#"<rect class="phase" data-phase="{}" x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{BAR_HEIGHT}" fill="{}"/>"#,
            phase.name,
            width.max(1.5),
            phase.fill
        );
    }
    // Outline the whole bar so adjacent bars read as separate restores.
    let (start, end) = (x_of(r.wait_start), x_of(r.move_end));
    let _ = writeln!(
        out,
        r##"<rect x="{start:.1}" y="{y:.1}" width="{:.1}" height="{BAR_HEIGHT}" fill="none" stroke="#1a202c" stroke-opacity="0.45" stroke-width="0.8" rx="2"/>"##,
        (end - start).max(1.5)
    );
    // The label sits inside the data-movement segment (white on blue) when it fits, else just
    // after the bar (dark on the lane's light background).
    let label = format!("{} · {}", r.volume, human_bytes(r.bytes));
    let label_width = label.chars().count() as f64 * 6.7;
    let (move_x0, move_x1) = (x_of(r.move_start), x_of(r.move_end));
    let (label_x, colour) = if move_x1 - move_x0 >= label_width + 12.0 {
        (move_x0 + 6.0, "#ffffff")
    } else if end + 6.0 + label_width <= WIDTH - 4.0 {
        (end + 6.0, "#1a202c")
    } else {
        // No room after the bar (it ends at the right edge): inside it, on a white backing.
        let x = start + 6.0;
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#ffffff" fill-opacity="0.9" rx="3"/>"##,
            x - 3.0,
            y + 3.0,
            label_width + 6.0,
            BAR_HEIGHT - 6.0
        );
        (x, "#1a202c")
    };
    let _ = writeln!(
        out,
        r##"<text x="{label_x:.1}" y="{:.1}" font-size="12.5" dominant-baseline="middle" fill="{colour}">{}</text>"##,
        y + BAR_HEIGHT / 2.0 + 0.5,
        esc(&label)
    );
    out.push_str("</g>\n");
    out
}

fn legend(x: f64, y: f64) -> String {
    let mut out = String::from("<g class=\"legend\">\n");
    let mut x = x;
    for phase in [&WAITING, &EXPOSING, &MOVING] {
        let _ = writeln!(
            out,
            r##"<rect x="{x}" y="{y}" width="26" height="16" fill="{}" stroke="#1a202c" stroke-opacity="0.45" stroke-width="0.8" rx="2"/>"##,
            phase.fill
        );
        let text_width = phase.name.chars().count() as f64 * 8.4
            + (phase.explanation.chars().count() as f64 + 3.0) * 7.4;
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" font-size="14" dominant-baseline="middle" fill="#2d3748"><tspan font-weight="bold">{}</tspan> ({})</text>"##,
            x + 34.0,
            y + 8.5,
            esc(phase.name),
            esc(phase.explanation)
        );
        x += 34.0 + text_width + 26.0;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="#c53030" stroke-width="2" stroke-dasharray="6 4"/>"##,
        y + 8.0,
        x + 26.0,
        y + 8.0
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" font-size="14" dominant-baseline="middle" fill="#2d3748"><tspan font-weight="bold">makespan</tspan></text>"##,
        x + 34.0,
        y + 8.5
    );
    out.push_str("</g>\n");
    out
}

fn defs() -> String {
    r##"<defs>
<pattern id="waiting-stripes" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)">
<rect width="8" height="8" fill="#e2e8f0"/>
<line x1="0" y1="0" x2="0" y2="8" stroke="#a0aec0" stroke-width="3"/>
</pattern>
</defs>
"##
    .to_string()
}

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
pub(crate) mod tests {
    use super::*;

    /// A plausible run of both modes: 8 volumes on 4 nodes.
    pub(crate) fn sample_input() -> TimelineInput {
        let nodes: Vec<String> = (1..=4).map(|i| format!("node-{i}")).collect();
        let mut default = Vec::new();
        let mut t = 0.0;
        for i in 0..8 {
            let wait_end = t + 0.2;
            default.push(RestoreTiming {
                volume: format!("data-web-{i}"),
                node: nodes[i % 4].clone(),
                wait_start: 0.0,
                wait_end,
                expose_end: wait_end + 0.3,
                move_start: wait_end + 0.35,
                move_end: wait_end + 1.6,
                bytes: 32 << 20,
            });
            t = wait_end + 1.8;
        }
        let ignore = (0..8)
            .map(|i| RestoreTiming {
                volume: format!("data-web-{i}"),
                node: nodes[i % 4].clone(),
                wait_start: 0.0,
                wait_end: 0.0,
                expose_end: 0.3,
                move_start: 0.35,
                move_end: 3.2 + i as f64 * 0.1,
                bytes: 32 << 20,
            })
            .collect();
        TimelineInput {
            title: "ferry demo: restoring 8 volumes on 4 nodes".into(),
            subtitle: "256 MiB backed up, lost and restored twice; every byte verified".into(),
            modes: vec![
                ModeRun {
                    name: "default".into(),
                    description: "restores wait for each workload pod".into(),
                    nodes: nodes.clone(),
                    restores: default,
                },
                ModeRun {
                    name: "ignoreDelayBinding".into(),
                    description: "restores start at once, spread over nodes".into(),
                    nodes,
                    restores: ignore,
                },
            ],
        }
    }

    #[test]
    fn svg_parses_with_a_lane_per_node_and_a_bar_per_restore() {
        let input = sample_input();
        let svg = render_svg(&input);
        let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        for mode in &input.modes {
            let lanes: Vec<_> = doc
                .descendants()
                .filter(|n| {
                    n.attribute("class") == Some("lane")
                        && n.attribute("data-mode") == Some(mode.name.as_str())
                })
                .collect();
            let lane_nodes: Vec<&str> = lanes
                .iter()
                .filter_map(|l| l.attribute("data-node"))
                .collect();
            assert_eq!(lane_nodes, ["node-1", "node-2", "node-3", "node-4"]);
            for lane in lanes {
                let node = lane.attribute("data-node").unwrap();
                let bars: Vec<&str> = lane
                    .descendants()
                    .filter(|n| n.attribute("class") == Some("restore"))
                    .map(|n| n.attribute("data-volume").unwrap())
                    .collect();
                let expected: Vec<&str> = mode
                    .restores
                    .iter()
                    .filter(|r| r.node == node)
                    .map(|r| r.volume.as_str())
                    .collect();
                assert_eq!(
                    bars.len(),
                    expected.len(),
                    "bars in {node} of {}",
                    mode.name
                );
                for volume in expected {
                    assert!(bars.contains(&volume), "{volume} has a bar in {node}");
                }
            }
        }
    }

    #[test]
    fn svg_shows_phases_legend_ticks_and_makespans() {
        let input = sample_input();
        let svg = render_svg(&input);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let phases: std::collections::BTreeSet<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-phase"))
            .collect();
        assert_eq!(
            phases.into_iter().collect::<Vec<_>>(),
            ["exposing", "moving data", "waiting"]
        );
        let text: String = doc
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .join("|");
        assert!(
            text.contains("waiting") && text.contains("moving data"),
            "legend"
        );
        assert!(text.contains("0 s"), "ticks in seconds: {text}");
        for mode in &input.modes {
            assert!(text.contains(&human_seconds(mode.makespan())), "{text}");
        }
        assert!(text.contains("ferry demo: restoring 8 volumes"));
        assert_eq!(
            doc.descendants()
                .filter(|n| n.attribute("class") == Some("makespan"))
                .count(),
            2
        );
    }

    #[test]
    fn overlapping_restores_on_a_node_get_separate_tracks() {
        let input = sample_input();
        let mode = &input.modes[1];
        let on_node: Vec<&RestoreTiming> = mode
            .restores
            .iter()
            .filter(|r| r.node == "node-1")
            .collect();
        let (tracks, count) = assign_tracks(&on_node);
        assert_eq!(count, 2);
        assert_ne!(tracks[0], tracks[1]);
    }

    #[test]
    fn sequential_restores_on_a_node_share_a_track() {
        let input = sample_input();
        // In the default mode every restore starts waiting at 0, so they overlap on a node.
        let mut restores = input.modes[1].restores.clone();
        restores[4].wait_start = 10.0;
        restores[4].move_end = 11.0;
        let on_node: Vec<&RestoreTiming> = restores.iter().filter(|r| r.node == "node-1").collect();
        let (_, count) = assign_tracks(&on_node);
        assert_eq!(count, 1);
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(10.0), 1.0);
        assert_eq!(tick_step(17.0), 2.0);
        assert_eq!(tick_step(45.0), 5.0);
        assert_eq!(tick_step(3.0), 0.5);
    }

    #[test]
    fn text_is_escaped() {
        let mut input = sample_input();
        input.title = "a <b> & \"c\"".into();
        let svg = render_svg(&input);
        roxmltree::Document::parse(&svg).unwrap();
        assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
    }

    #[test]
    fn html_embeds_the_svg() {
        let input = sample_input();
        let svg = render_svg(&input);
        let html = render_html(&input, &svg);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains(&svg));
    }
}

#[cfg(test)]
mod picture {
    /// Writes the sample picture where FERRY_TIMELINE_SAMPLE says, to look at it by eye.
    #[test]
    #[ignore = "writes a file for a person to look at"]
    fn write_sample_picture() {
        let path = std::env::var("FERRY_TIMELINE_SAMPLE").expect("FERRY_TIMELINE_SAMPLE");
        let input = super::tests::sample_input();
        std::fs::write(path, super::render_svg(&input)).unwrap();
        println!(
            "{}",
            crate::commands::demo::report::render_report(&input.modes)
        );
    }
}
