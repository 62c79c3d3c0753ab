//! `ferry install --dry-run` as a user runs it: the binary prints every manifest in YAML
//! (multi-document) or as a JSON List, each parsing as its Kubernetes type; bad flags fail
//! with a message naming the flag.

use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::Value;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run ferry")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "ferry failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Parses each manifest as the type its `kind` names and returns the kinds in order.
fn check_manifests(manifests: &[Value]) -> Vec<String> {
    fn parse<T: serde::de::DeserializeOwned>(value: &Value) {
        if let Err(err) = serde_json::from_value::<T>(value.clone()) {
            panic!("{} does not parse: {err}", value["kind"]);
        }
    }
    for value in manifests {
        match value["kind"].as_str().unwrap() {
            "Namespace" => parse::<Namespace>(value),
            "CustomResourceDefinition" => parse::<CustomResourceDefinition>(value),
            "ServiceAccount" => parse::<ServiceAccount>(value),
            "ClusterRole" => parse::<ClusterRole>(value),
            "ClusterRoleBinding" => parse::<ClusterRoleBinding>(value),
            "Role" => parse::<Role>(value),
            "RoleBinding" => parse::<RoleBinding>(value),
            "Deployment" => parse::<Deployment>(value),
            other => panic!("unexpected kind {other}"),
        }
    }
    manifests
        .iter()
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect()
}

const EXPECTED_KINDS: [&str; 10] = [
    "Namespace",
    "CustomResourceDefinition",
    "CustomResourceDefinition",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Deployment",
];

fn controller_args(manifests: &[Value]) -> Vec<String> {
    let deployment = manifests
        .iter()
        .find(|v| v["kind"] == "Deployment")
        .unwrap();
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .unwrap()
}

#[test]
fn dry_run_prints_yaml_documents() {
    let output = ferry(&[
        "install",
        "--node-agent-configmap=node-agent-config",
        "--namespace",
        "velero",
        "--dry-run",
    ]);
    let text = stdout_of(&output);
    assert!(text.starts_with("---\n"), "documents are separated by ---");
    let manifests: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML document"))
        .collect();
    assert_eq!(check_manifests(&manifests), EXPECTED_KINDS);
    let args = controller_args(&manifests);
    assert!(
        args.contains(&"--node-agent-configmap=node-agent-config".to_string()),
        "{args:?}"
    );
    assert_eq!(args[..3], ["controller", "--namespace", "velero"]);
}

#[test]
fn dry_run_prints_a_json_list() {
    let output = ferry(&[
        "install",
        "--node-agent-configmap",
        "tuning",
        "-n",
        "ferry-system",
        "--image",
        "registry.example/ferry:9",
        "--data-mover-name",
        "ferry-b",
        "--dry-run",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&stdout_of(&output)).expect("one JSON document");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    let manifests = list["items"].as_array().unwrap();
    assert_eq!(check_manifests(manifests), EXPECTED_KINDS);
    assert_eq!(
        controller_args(manifests),
        [
            "controller",
            "--namespace",
            "ferry-system",
            "--node-agent-configmap=tuning",
            "--data-mover-name",
            "ferry-b"
        ]
    );
    let deployment = manifests
        .iter()
        .find(|v| v["kind"] == "Deployment")
        .unwrap();
    assert_eq!(deployment["metadata"]["namespace"], "ferry-system");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/ferry:9"
    );
}

#[test]
fn a_bad_name_fails_naming_the_flag_and_prints_nothing() {
    let output = ferry(&["install", "--node-agent-configmap=Node_Agent", "--dry-run"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--node-agent-configmap") && stderr.contains("Node_Agent"),
        "{stderr}"
    );
}

#[test]
fn the_configmap_flag_is_required_and_output_needs_dry_run() {
    let missing = ferry(&["install", "--dry-run"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--node-agent-configmap"));
    let output_without_dry_run = ferry(&["install", "--node-agent-configmap=c", "-o", "json"]);
    assert_eq!(output_without_dry_run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output_without_dry_run.stderr).contains("--dry-run"));
}
