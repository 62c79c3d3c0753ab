//! `ferry controller` as its Deployment runs it: the port `ferry install` probes is served
//! without any flag, and SIGTERM (how Kubernetes stops a pod) stops it cleanly, releasing its
//! Lease so a successor need not wait for it to expire.

use crate::common;

use std::process::{Command, Stdio};

use common::*;
use ferry_controller::install::{CONTROLLER_HTTP_PORT, InstallOptions, controller_args};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

/// The status line of `GET path` on `port` of 127.0.0.1, None if nothing answers.
async fn http_status(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    text.lines().next().map(str::to_string)
}

#[test]
fn the_probed_port_is_served_by_default() {
    // The Deployment passes no --metrics-address; its probes hit CONTROLLER_HTTP_PORT.
    let args = controller_args(&InstallOptions::new(CONFIGMAP));
    assert!(!args.iter().any(|a| a.starts_with("--metrics-address")));
    let help = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["controller", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(&format!("[default: 0.0.0.0:{CONTROLLER_HTTP_PORT}]")),
        "{help}"
    );
}

on_both_clusters! {
    async fn e2e_controller_serves_probes_and_stops_on_sigterm_releasing_its_lease(backend: Backend) {
        let env = env(backend, 1, 0, json!({})).await;
        // A free port (port 8080 itself may be taken on a shared test machine).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["controller", "--namespace", NS, "--node-agent-configmap", CONFIGMAP])
            .args(["--metrics-address", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", env.cluster.kubeconfig_path())
            .env("POD_NAME", "process-controller")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("/healthz", 30, || async {
            http_status(port, "/healthz").await.filter(|s| s.contains(" 200"))
        })
        .await;
        wait_for("/readyz", 30, || async {
            http_status(port, "/readyz").await.filter(|s| s.contains(" 200"))
        })
        .await;
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), NS);
        let holder = || async {
            leases
                .get("ferry-controller")
                .await
                .ok()?
                .spec?
                .holder_identity
        };
        assert_eq!(holder().await.as_deref(), Some("process-controller"));

        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let status = wait_for("the controller to exit", 30, || {
            let exited = child.try_wait().unwrap();
            async move { exited }
        })
        .await;
        assert!(status.success(), "exit status after SIGTERM: {status}");
        assert_eq!(holder().await, None, "the Lease is released");
        env.cluster.stop().await;
    }
}
