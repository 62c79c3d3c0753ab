//! Velero itself, built from its pinned Go module, runs against the real control plane with
//! its CRDs, an S3 location on moto and the AWS plugin, and reports the location Available.

use std::collections::BTreeMap;

use testenv::velero::{LOCATION, Velero};
use testenv::{Backend, ClusterConfig, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velero_server_runs_on_the_real_cluster_with_its_location_available() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(
        Backend::Real,
        ClusterConfig {
            nodes: 1,
            zones: 0,
            data_dir: dir.path().join("sim"),
            image_binaries: BTreeMap::new(),
        },
    )
    .await
    .unwrap();
    let velero = Velero::start(&cluster, &dir.path().join("velero"))
        .await
        .unwrap();

    let version = velero.cli(&["version"]).await.unwrap();
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        text.contains("Server:") && text.contains("v1.18.3"),
        "velero version: {text}{}",
        String::from_utf8_lossy(&version.stderr)
    );
    let out = velero
        .cli(&["backup-location", "get", LOCATION])
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Available"), "{text}");
    drop(velero);
    cluster.stop().await;
}
