//! The `kubesim serve` binary and `Cluster`: ready when the kubeconfig appears, usable with
//! kubectl, stopped by Ctrl-C (SIGINT) or `stop()`.

use crate::api_support;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

#[tokio::test]
async fn serve_writes_a_kubeconfig_that_kubectl_uses_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kc/config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["serve", "--nodes", "2", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if kubeconfig.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kubeconfig.exists(), "kubesim serve wrote no kubeconfig");

    let out = tokio::process::Command::new(api_support::kubectl())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "nodes", "-o", "name"])
        .env("HOME", dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut nodes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node/node-1", "node/node-2"]);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("kubesim exits after SIGINT")
        .unwrap();
    assert!(status.success(), "kubesim exited with {status}");
}

#[tokio::test]
async fn cluster_starts_with_nodes_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = kubesim::Cluster::start(kubesim::ClusterConfig {
        nodes: 3,
        zones: 0,
        data_dir: dir.path().to_path_buf(),
        port: None,
        image_binaries: Default::default(),
    })
    .await
    .unwrap();
    assert!(cluster.kubeconfig_path().starts_with(dir.path()));
    assert!(cluster.kubeconfig_path().exists());
    assert!(cluster.url().starts_with("http://127.0.0.1:"));
    let nodes: Api<Node> = Api::all(cluster.client());
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let url = cluster.url();
    cluster.stop().await;
    // The port is closed once stopped.
    let addr = url.trim_start_matches("http://");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
