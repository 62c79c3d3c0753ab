//! `ferry config validate`: exit codes and output for good and bad configurations.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

fn validate_file(contents: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-agent-config.yaml");
    std::fs::write(&path, contents).unwrap();
    ferry()
        .args(["config", "validate"])
        .arg(&path)
        .args(extra)
        .output()
        .unwrap()
}

const GOOD_MANIFEST: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: node-agent-config
  namespace: velero
data:
  node-agent-config.json: |
    {
      "loadConcurrency": {"globalConfig": 2, "perNodeConfig": [
        {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node1"}}, "number": 3}]},
      "restorePVC": {"ignoreDelayBinding": true},
      "podResources": {"cpuRequest": "500m", "memoryLimit": "1Gi"}
    }
"#;

#[test]
fn good_manifest_prints_the_effective_configuration_and_exits_0() {
    let out = validate_file(GOOD_MANIFEST, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "no warnings expected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(effective["restorePVC"]["ignoreDelayBinding"], true);
    assert_eq!(effective["loadConcurrency"]["globalConfig"], 2);
    assert_eq!(
        effective["loadConcurrency"]["perNodeConfig"][0]["number"],
        3
    );
    // Defaults are written out.
    assert!(effective["loadConcurrency"]["prepareQueueLength"].is_null());
    assert_eq!(effective["privilegedFsBackup"], false);
    assert_eq!(effective["podResources"]["cpuRequest"], "500m");
    assert!(effective["podResources"]["cpuLimit"].is_null());
}

#[test]
fn bad_config_prints_every_problem_with_its_path_and_exits_1() {
    let out = validate_file(
        r#"{"restorePVC": {"ignoreDelayBindng": true},
            "loadConcurrency": {"perNodeConfig": [
              {"nodeSelector": {}, "number": 2},
              {"nodeSelector": {"matchLabels": {"a": "b"}}, "number": 0}]},
            "podResources": {"memoryRequest": "2Gi", "memoryLimit": "1Gi"}}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for an invalid config"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        errors,
        [
            "error: loadConcurrency.perNodeConfig[1].number: must be at least 1 (data mover pods per matching node), found 0",
            "error: podResources.memoryRequest: memoryRequest 2Gi is more than memoryLimit 1Gi; a request must not exceed its limit",
            "error: restorePVC.ignoreDelayBindng: unknown field; did you mean ignoreDelayBinding?",
        ],
        "{stderr}"
    );
    assert!(stderr.contains("3 problems"), "{stderr}");
}

#[test]
fn configmap_with_two_keys_is_refused() {
    let out = validate_file(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two-keys\ndata:\n  a.json: '{}'\n  b.json: '{}'\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: data: ConfigMap two-keys has 2 keys"),
        "{stderr}"
    );
}

#[test]
fn lenient_flag_turns_unknown_fields_into_warnings() {
    let out = validate_file(
        r#"{"restorePVC": {"ignoreDelayBinding": true, "newerOption": 1}}"#,
        &["--lenient"],
    );
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("warning: restorePVC.newerOption: unknown field"),
        "{stderr}"
    );
}

#[test]
fn dash_reads_standard_input() {
    let mut child = ferry()
        .args(["config", "validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"loadConcurrency": {"prepareQueueLength": 5}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(effective["loadConcurrency"]["prepareQueueLength"], 5);
    assert_eq!(effective["loadConcurrency"]["globalConfig"], 1);
}

#[test]
fn missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry()
        .args(["config", "validate"])
        .arg(dir.path().join("absent.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file"));
}
