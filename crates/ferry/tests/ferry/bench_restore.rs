//! `ferry bench restore` end to end, small, on kubesim: 2 nodes, 4 volumes holding 8 MiB,
//! backed up through DataUploads, then the measured ideal (the data movers alone, twice) and
//! the restore modes through the controller process (ignoreDelayBinding twice, as the ideal,
//! the faster counting). Asserts what the figures rest on: every
//! restore's bytes verified, each mode's makespan against the ideal, the controller's requests
//! and the CPU table (with no control plane named, since kubesim has none), and the files the
//! run leaves. The figures themselves are not judged: it is a benchmark, not a timed test.

use std::process::Command;

/// The first line of `text` starting with `label`.
fn line<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("a line starting {label:?} in\n{text}"))
}

/// The seconds in a table cell like `1.12 s` or `0.66s`.
fn seconds(cell: &str) -> f64 {
    cell.trim_end_matches('s')
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{cell:?}: {e}"))
}

/// `ferry bench restore --cluster kubesim` with more arguments.
fn bench_restore_on_kubesim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["bench", "restore", "--cluster", "kubesim"])
        .args(args)
        .output()
        .expect("ferry runs")
}

#[test]
fn bench_restore_on_kubesim_measures_both_modes_against_the_ideal() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let dir = out.path().to_str().expect("a UTF-8 path");
    let output = bench_restore_on_kubesim(&[
        "--nodes",
        "2",
        "--volumes",
        "4",
        "--size",
        "8MiB",
        "--out",
        dir,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ferry bench restore failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    // Every restore checked: the ideal's two runs, the default mode's and ignoreDelayBinding's
    // two.
    assert_eq!(
        stdout
            .matches("files identical (SHA-256 hash trees)")
            .count(),
        5,
        "{stdout}"
    );
    assert!(
        stdout.contains("backing up through DataUploads")
            && stdout.contains("4 repository snapshots"),
        "{stdout}"
    );

    // The summary: three makespans, each mode's overhead its makespan over the ideal's.
    // (The per-volume table has a makespan line of its own, with column rules.)
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("makespan ") && !l.contains('│'))
        .unwrap_or_else(|| panic!("the summary's makespan line in\n{stdout}"));
    let makespans: Vec<f64> = summary
        .split_whitespace()
        .skip(1)
        .filter(|w| *w != "s")
        .map(seconds)
        .collect();
    assert_eq!(
        makespans.len(),
        3,
        "default, ignoreDelayBinding, ideal: {makespans:?}"
    );
    assert!(makespans.iter().all(|&m| m > 0.0), "{makespans:?}");
    let overhead: Vec<f64> = line(&stdout, "orchestration overhead ")
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('×'))
        .map(|w| w.parse().expect("a ratio"))
        .collect();
    assert_eq!(overhead.len(), 2, "{stdout}");
    for (mode, ratio) in overhead.iter().enumerate() {
        // The makespans printed are rounded to 10 ms; the ratio was not computed from those.
        let want = makespans[mode] / makespans[2];
        assert!(
            (ratio - want).abs() < 0.03 * want + 0.01,
            "mode {mode}: overhead {ratio} against {want} from the makespans"
        );
    }
    // ignoreDelayBinding's makespan is the faster of its two runs.
    let goal = line(
        &stdout,
        "goal: orchestration overhead ≤ 1.10× with ignoreDelayBinding (the faster of two runs, ",
    );
    assert!(
        goal.ends_with(&format!("met ({:.2}×)", overhead[1])),
        "{goal}"
    );
    let words: Vec<&str> = goal.split_whitespace().collect();
    let both: Vec<f64> = words
        .windows(2)
        .filter(|w| w[1] == "s")
        .map(|w| w[0].parse().expect("seconds"))
        .collect();
    assert_eq!(both.len(), 2, "{goal}");
    let fastest = both.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        (fastest - makespans[1]).abs() < 0.011,
        "ignoreDelayBinding's makespan {} is the faster of {both:?}",
        makespans[1]
    );

    // The controller's cost, per mode.
    assert_eq!(
        stdout.matches(" API requests (").count(),
        2,
        "one requests line per mode:\n{stdout}"
    );

    // The CPU table: the machine, the data movers and ferry's controller in each mode; kubesim
    // has no control plane, so none is named.
    assert!(
        stdout.contains("CPU time while the restores ran"),
        "{stdout}"
    );
    for row in ["  the whole machine", "  data movers", "  the rest"] {
        assert_eq!(
            line(&stdout, row).matches(" s").count(),
            3,
            "a figure per column in {row:?}:\n{stdout}"
        );
    }
    assert_eq!(
        line(&stdout, "  ferry's controller").matches(" s").count(),
        2
    );
    assert!(!stdout.contains("control plane"), "{stdout}");

    // What the run leaves: the report (the same figures) and the timeline.
    let report = std::fs::read_to_string(out.path().join("report.txt")).expect("report.txt");
    assert!(report.contains("orchestration overhead"), "{report}");
    for file in ["timeline.svg", "timeline.html"] {
        let len = std::fs::metadata(out.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .len();
        assert!(len > 0, "{file} is empty");
    }
}

#[test]
fn bench_restore_refuses_control_plane_cpus_without_the_real_control_plane() {
    let output = bench_restore_on_kubesim(&["--control-plane-cpus", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("--control-plane-cpus needs the real control plane (--cluster real or both)"),
        "{stderr}"
    );
}
