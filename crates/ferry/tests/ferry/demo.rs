//! `ferry demo` end to end, small: a 4-node simulated cluster, 4 volumes holding 8 MiB, backed
//! up through DataUploads, lost and restored in both modes. Asserts the demo's own byte
//! verification and the files it wrote: a report and a timeline SVG (well-formed, a lane per
//! node and a bar per backup or restore in each panel) embedded in an HTML page.

use std::collections::BTreeSet;
use std::process::Command;

const NODES: usize = 4;
const VOLUMES: usize = 4;

#[test]
fn demo_restores_both_modes_verifies_and_draws_the_timeline() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "demo",
            "--nodes",
            "4",
            "--volumes",
            "4",
            "--size",
            "8MiB",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("ferry runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ferry demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    // The demo's own verification, after each restore.
    assert!(
        stdout.contains("every byte of every volume matched after both restores"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("files identical (SHA-256 hash trees)")
            .count(),
        2,
        "one verification per mode:\n{stdout}"
    );

    // The backup went through ferry's DataUpload controller, not the engine fallback.
    assert!(
        stdout.contains("backing up through DataUploads")
            && stdout.contains("4 repository snapshots"),
        "{stdout}"
    );
    assert!(!stdout.contains("emulated"), "{stdout}");

    let volumes: BTreeSet<String> = (0..VOLUMES).map(|i| format!("data-ledger-{i}")).collect();
    let nodes: Vec<String> = (1..=NODES).map(|i| format!("node-{i}")).collect();

    // The report names every volume and both makespans.
    let report = std::fs::read_to_string(out.path().join("report.txt")).expect("report.txt");
    for volume in &volumes {
        assert!(
            report.contains(volume.as_str()),
            "{volume} in the report:\n{report}"
        );
    }
    assert!(report.contains("makespan"), "{report}");
    assert!(report.contains("ignoreDelayBinding finished"), "{report}");
    // The backup's table comes first, without a rebind column.
    let backup_header = report.lines().next().unwrap_or_default();
    assert!(backup_header.contains("backup"), "{report}");
    let backup_columns = report.lines().nth(1).unwrap_or_default();
    assert!(
        backup_columns.contains("move") && !backup_columns.contains("rebind"),
        "{report}"
    );

    // The picture: well-formed, a lane per node and a bar per restore in each mode.
    let svg = std::fs::read_to_string(out.path().join("timeline.svg")).expect("timeline.svg");
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    for mode in ["backup", "default", "ignoreDelayBinding"] {
        let lanes: Vec<roxmltree::Node> = doc
            .descendants()
            .filter(|n| {
                n.attribute("class") == Some("lane") && n.attribute("data-mode") == Some(mode)
            })
            .collect();
        let lane_nodes: Vec<&str> = lanes
            .iter()
            .filter_map(|l| l.attribute("data-node"))
            .collect();
        assert_eq!(lane_nodes, nodes, "lanes of {mode}");
        let mut bars = BTreeSet::new();
        for lane in &lanes {
            let node = lane.attribute("data-node").unwrap();
            for bar in lane
                .descendants()
                .filter(|n| n.attribute("class") == Some("restore"))
            {
                assert_eq!(
                    bar.attribute("data-node"),
                    Some(node),
                    "a bar sits in its node's lane"
                );
                assert!(
                    bars.insert(bar.attribute("data-volume").unwrap().to_string()),
                    "one bar per restore in {mode}"
                );
            }
        }
        assert_eq!(bars, volumes, "a bar per restore in {mode}");
    }

    let html = std::fs::read_to_string(out.path().join("timeline.html")).expect("timeline.html");
    assert!(html.contains("<svg"), "the HTML page embeds the SVG");
    assert!(
        stdout.contains("timeline.svg") && stdout.contains("timeline.html"),
        "{stdout}"
    );
}
