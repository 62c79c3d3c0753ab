//! The picture's structure, read back from the SVG: a lane per node and a bar per restore in
//! each mode, every phase drawn and in the legend, one time scale with round ticks for both
//! modes, and no text running into other text, another restore's bar, or off the picture.

use std::collections::{BTreeMap, BTreeSet};

use roxmltree::{Document, Node};

use super::*;
use crate::commands::demo::sample;

/// A fixed run of both modes: 8 volumes of 32 MiB on 4 nodes (the report's tests use it too).
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
            move_end: wait_end + 1.5,
            completed: wait_end + 1.6,
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
            move_end: 3.1 + i as f64 * 0.1,
            completed: 3.2 + i as f64 * 0.1,
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
                kind: RunKind::Restore,
                nodes: nodes.clone(),
                restores: default,
            },
            ModeRun {
                name: "ignoreDelayBinding".into(),
                description: "restores start at once, spread over nodes".into(),
                kind: RunKind::Restore,
                nodes,
                restores: ignore,
            },
        ],
    }
}

/// The inputs every layout test runs on: the fixed one and made-up runs of several sizes.
fn inputs() -> Vec<(String, TimelineInput)> {
    let mut all = vec![("fixed".to_string(), sample_input())];
    for (nodes, volumes) in [(4, 8), (4, 16), (2, 3), (2, 20), (8, 3), (8, 20), (1, 1)] {
        all.push((
            format!("{nodes} nodes, {volumes} volumes"),
            sample::sample_input(nodes, volumes),
        ));
    }
    all
}

fn number(node: Node, name: &str) -> f64 {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has {name}", node.tag_name().name()))
        .parse()
        .unwrap_or_else(|_| panic!("{name} of <{}> is a number", node.tag_name().name()))
}

fn has_class(node: Node, class: &str) -> bool {
    node.attribute("class") == Some(class)
}

/// The nearest value of an inherited presentation attribute.
fn inherited<'a>(node: Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.ancestors().find_map(|n| n.attribute(name))
}

/// A rectangle on the page.
#[derive(Debug, Clone, Copy)]
struct Area {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Area {
    /// Overlapping by more than half a pixel (touching is fine).
    fn overlaps(&self, other: &Area) -> bool {
        self.x0 < other.x1 - 0.5
            && other.x0 < self.x1 - 0.5
            && self.y0 < other.y1 - 0.5
            && other.y0 < self.y1 - 0.5
    }
}

/// Where a `<text>` is drawn, with the estimated width of each of its runs (by their own size
/// and weight, plus any `dx`) and the height of its largest font.
fn text_area(text: Node) -> Area {
    let (x, y) = (number(text, "x"), number(text, "y"));
    let mut width = 0.0;
    let mut size = 0.0_f64;
    for part in text.descendants() {
        if part.is_element() && part.has_tag_name("tspan") {
            width += part.attribute("dx").map_or(0.0, |dx| dx.parse().unwrap());
        }
        if part.is_text() {
            let element = part.parent_element().unwrap();
            let font_size: f64 = inherited(element, "font-size")
                .expect("every text has a font size")
                .parse()
                .unwrap();
            let bold = inherited(element, "font-weight") == Some("bold");
            width += estimated_text_width(part.text().unwrap(), font_size, bold);
            size = size.max(font_size);
        }
    }
    let x0 = match text.attribute("text-anchor").unwrap_or("start") {
        "middle" => x - width / 2.0,
        "end" => x - width,
        _ => x,
    };
    let (y0, y1) = if text.attribute("dominant-baseline") == Some("middle") {
        (y - 0.6 * size, y + 0.6 * size)
    } else {
        (y - 0.8 * size, y + 0.25 * size)
    };
    Area {
        x0,
        x1: x0 + width,
        y0,
        y1,
    }
}

fn rect_area(rect: Node) -> Area {
    let (x, y) = (number(rect, "x"), number(rect, "y"));
    Area {
        x0: x,
        x1: x + number(rect, "width"),
        y0: y,
        y1: y + number(rect, "height"),
    }
}

fn all_text(doc: &Document) -> String {
    doc.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("|")
}

#[test]
fn svg_parses_with_a_lane_per_node_and_a_bar_per_restore() {
    for (what, input) in inputs() {
        let svg = render_svg(&input);
        let doc = Document::parse(&svg).expect("the SVG is well-formed XML");
        for mode in &input.modes {
            let lanes: Vec<_> = doc
                .descendants()
                .filter(|n| has_class(*n, "lane") && n.attribute("data-mode") == Some(&mode.name))
                .collect();
            let lane_nodes: Vec<&str> = lanes
                .iter()
                .filter_map(|l| l.attribute("data-node"))
                .collect();
            assert_eq!(lane_nodes, mode.nodes, "{what}: lanes of {}", mode.name);
            for lane in lanes {
                let node = lane.attribute("data-node").unwrap();
                let mut bars: Vec<&str> = lane
                    .descendants()
                    .filter(|n| has_class(*n, "restore"))
                    .map(|n| n.attribute("data-volume").unwrap())
                    .collect();
                let mut expected: Vec<&str> = mode
                    .restores
                    .iter()
                    .filter(|r| r.node == node)
                    .map(|r| r.volume.as_str())
                    .collect();
                bars.sort();
                expected.sort();
                assert_eq!(bars, expected, "{what}: bars in {node} of {}", mode.name);
            }
        }
    }
}

#[test]
fn bars_show_every_phase_and_the_legend_names_them() {
    let input = sample_input();
    let svg = render_svg(&input);
    let doc = Document::parse(&svg).unwrap();
    let in_bars: BTreeSet<&str> = doc
        .descendants()
        .filter(|n| has_class(*n, "phase"))
        .filter_map(|n| n.attribute("data-phase"))
        .collect();
    let names: BTreeSet<&str> = PHASES.iter().map(|p| p.name).collect();
    assert_eq!(in_bars, names, "every phase appears in some bar");

    let legend = doc
        .descendants()
        .find(|n| has_class(*n, "legend"))
        .expect("a legend");
    let swatches: BTreeSet<&str> = legend
        .descendants()
        .filter(|n| has_class(*n, "swatch"))
        .filter_map(|n| n.attribute("data-phase"))
        .collect();
    assert_eq!(swatches, names, "a swatch per phase");
    let legend_text: String = legend
        .descendants()
        .filter(|n| n.is_text())
        .map(|n| n.text().unwrap())
        .collect();
    for name in names.iter().chain(&["makespan"]) {
        assert!(legend_text.contains(name), "{name} in {legend_text}");
    }
    // A phase's colour in the legend is the colour of its segments in the bars.
    for phase in PHASES {
        let fills: BTreeSet<&str> = doc
            .descendants()
            .filter(|n| n.attribute("data-phase") == Some(phase.name))
            .filter_map(|n| n.attribute("fill"))
            .collect();
        assert_eq!(fills.len(), 1, "{}: one colour, got {fills:?}", phase.name);
    }
}

/// Each mode's tick labels with their x, parsed to seconds.
fn ticks_by_mode(doc: &Document) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut ticks: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for tick in doc.descendants().filter(|n| has_class(*n, "tick")) {
        let mode = tick
            .ancestors()
            .find(|n| has_class(*n, "mode"))
            .and_then(|n| n.attribute("data-mode"))
            .expect("a tick belongs to a mode's panel");
        let label = tick.text().unwrap();
        let seconds: f64 = label
            .strip_suffix(" s")
            .unwrap_or_else(|| panic!("tick {label:?} is in seconds"))
            .parse()
            .unwrap();
        ticks
            .entry(mode.to_string())
            .or_default()
            .push((seconds, number(tick, "x")));
    }
    ticks
}

#[test]
fn both_modes_share_one_time_axis_with_round_ticks() {
    for (what, input) in inputs() {
        let svg = render_svg(&input);
        let doc = Document::parse(&svg).unwrap();
        let ticks = ticks_by_mode(&doc);
        assert_eq!(ticks.len(), input.modes.len(), "{what}: an axis per mode");
        let first = ticks.values().next().unwrap().clone();
        for (mode, mode_ticks) in &ticks {
            assert_eq!(mode_ticks, &first, "{what}: {mode} has the same ticks");
        }
        assert_eq!(first[0].0, 0.0, "{what}: the axis starts at 0 s");
        assert!(
            (3..=11).contains(&first.len()),
            "{what}: {} ticks",
            first.len()
        );
        let step = first[1].0 - first[0].0;
        let mantissa = step / 10f64.powf(step.log10().floor());
        assert!(
            [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6),
            "{what}: a round step, got {step}"
        );
        // From the ends: the coordinates are written with one decimal.
        let spacing = (first.last().unwrap().1 - first[0].1) / (first.len() - 1) as f64;
        for pair in first.windows(2) {
            assert!(
                (pair[1].0 - pair[0].0 - step).abs() < 1e-6,
                "{what}: even steps"
            );
            assert!(
                (pair[1].1 - pair[0].1 - spacing).abs() < 0.2,
                "{what}: even spacing"
            );
        }
        let longest = input
            .modes
            .iter()
            .map(ModeRun::makespan)
            .fold(0.0, f64::max);
        assert!(
            first.last().unwrap().0 >= longest,
            "{what}: the axis covers the longest makespan"
        );

        // Each makespan line sits where its time falls on that shared scale.
        let x_of = |t: f64| first[0].1 + t / step * spacing;
        for mode in &input.modes {
            let line = doc
                .descendants()
                .find(|n| {
                    has_class(*n, "makespan")
                        && n.ancestors()
                            .any(|a| a.attribute("data-mode") == Some(&mode.name))
                })
                .expect("a makespan line per mode");
            assert!(
                (number(line, "x1") - x_of(mode.makespan())).abs() < 0.2,
                "{what}: {} makespan line",
                mode.name
            );
        }
    }
}

#[test]
fn text_never_overlaps_other_text_or_leaves_the_picture() {
    for (what, input) in inputs() {
        let svg = render_svg(&input);
        let doc = Document::parse(&svg).unwrap();
        let root = doc.root_element();
        let (width, height) = (number(root, "width"), number(root, "height"));
        let texts: Vec<(String, Area)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| {
                let text: String = n
                    .descendants()
                    .filter(|d| d.is_text())
                    .map(|d| d.text().unwrap())
                    .collect();
                (text, text_area(n))
            })
            .collect();
        assert!(texts.len() > 10, "{what}: the picture has text");
        for (i, (text, area)) in texts.iter().enumerate() {
            assert!(
                area.x0 >= 0.0 && area.x1 <= width && area.y0 >= 0.0 && area.y1 <= height,
                "{what}: {text:?} at {area:?} is inside the {width}×{height} picture"
            );
            for (other, other_area) in &texts[i + 1..] {
                assert!(
                    !area.overlaps(other_area),
                    "{what}: {text:?} at {area:?} overlaps {other:?} at {other_area:?}"
                );
            }
        }
    }
}

#[test]
fn a_restore_label_never_covers_another_restores_bar() {
    for (what, input) in inputs() {
        let svg = render_svg(&input);
        let doc = Document::parse(&svg).unwrap();
        let restores: Vec<Node> = doc
            .descendants()
            .filter(|n| has_class(*n, "restore"))
            .collect();
        for restore in &restores {
            let label = restore
                .descendants()
                .find(|n| has_class(*n, "label"))
                .expect("every bar has a label");
            let volume = restore.attribute("data-volume").unwrap();
            assert!(
                label.text().unwrap().starts_with(volume),
                "{what}: the label names {volume}"
            );
            let area = text_area(label);
            for other in restores.iter().filter(|o| o != &restore) {
                for segment in other.descendants().filter(|n| has_class(*n, "phase")) {
                    assert!(
                        !area.overlaps(&rect_area(segment)),
                        "{what}: the label of {volume} covers a bar of {}",
                        other.attribute("data-volume").unwrap()
                    );
                }
            }
        }
    }
}

#[test]
fn the_picture_names_the_makespans_and_the_speedup() {
    let input = sample_input();
    let svg = render_svg(&input);
    let doc = Document::parse(&svg).unwrap();
    let text = all_text(&doc);
    for mode in &input.modes {
        assert!(text.contains(&human_seconds(mode.makespan())), "{text}");
    }
    assert!(text.contains("ferry demo: restoring 8 volumes"), "{text}");
    assert!(
        text.contains("ignoreDelayBinding finished 4.1× sooner than default"),
        "{text}"
    );
    assert!(
        text.contains("time since the restores were created"),
        "{text}"
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
    let mut restores = input.modes[1].restores.clone();
    restores[4].wait_start = 10.0;
    restores[4].move_end = 10.9;
    restores[4].completed = 11.0;
    let on_node: Vec<&RestoreTiming> = restores.iter().filter(|r| r.node == "node-1").collect();
    let (_, count) = assign_tracks(&on_node);
    assert_eq!(count, 1);
}

#[test]
fn tick_steps_are_round_and_labels_show_their_decimals() {
    assert_eq!(tick_step(10.0), 1.0);
    assert_eq!(tick_step(17.0), 2.0);
    assert_eq!(tick_step(45.0), 5.0);
    assert_eq!(tick_step(3.0), 0.5);
    let scale = TimeScale {
        span: 0.4,
        step: 0.05,
    };
    assert_eq!(scale.tick_label(0.15), "0.15 s");
    let scale = TimeScale {
        span: 60.0,
        step: 10.0,
    };
    assert_eq!(scale.tick_label(20.0), "20 s");
}

#[test]
fn text_is_escaped() {
    let mut input = sample_input();
    input.title = "a <b> & \"c\"".into();
    let svg = render_svg(&input);
    Document::parse(&svg).unwrap();
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
