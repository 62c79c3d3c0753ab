//! Shared helpers for the node-side tests: a whole cluster per test in a temp dir, object
//! builders and a bounded wait.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use kubesim::{Cluster, ClusterConfig};

pub struct TestCluster {
    pub cluster: Cluster,
    pub client: kube::Client,
    /// The cluster's data directory, removed when the test ends.
    _dir: tempfile::TempDir,
}

pub async fn start(nodes: usize, zones: usize) -> TestCluster {
    start_with(nodes, zones, BTreeMap::new()).await
}

pub async fn start_with(
    nodes: usize,
    zones: usize,
    image_binaries: BTreeMap<String, std::path::PathBuf>,
) -> TestCluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = Cluster::start(ClusterConfig {
        nodes,
        zones,
        data_dir: dir.path().to_path_buf(),
        port: None,
        image_binaries,
    })
    .await
    .expect("start the cluster");
    let client = cluster.client();
    TestCluster {
        cluster,
        client,
        _dir: dir,
    }
}

/// Polls `check` until it returns Some, for at most 20 s (a bound, not a timing assert).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..400 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting: {what}");
}

pub fn claim(name: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: class.map(Into::into),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A pod with one container (`command`, or a busybox-like sleeper) mounting each claim at
/// `/data` (the first) or `/data-N`.
pub fn pod(name: &str, claims: &[&str], command: Option<Vec<&str>>) -> Pod {
    let volumes: Vec<Volume> = claims
        .iter()
        .map(|c| Volume {
            name: format!("vol-{c}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.to_string(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    let mounts: Vec<VolumeMount> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| VolumeMount {
            name: format!("vol-{c}"),
            mount_path: if i == 0 {
                "/data".into()
            } else {
                format!("/data-{i}")
            },
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_string(), "test".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("busybox:1.36".into()),
                command: command.map(|c| c.into_iter().map(String::from).collect()),
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                ..Default::default()
            }],
            volumes: (!volumes.is_empty()).then_some(volumes),
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(1),
            ..Default::default()
        }),
        status: None,
    }
}

pub async fn create<K>(api: &Api<K>, object: &K) -> K
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), object)
        .await
        .expect("create")
}
