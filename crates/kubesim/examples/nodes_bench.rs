//! Benchmark (not a test) of kubesim's node side at scale: N nodes, then M PersistentVolumeClaims
//! (the default WaitForFirstConsumer class) and M pods each using one, timed until every pod
//! is scheduled and every claim Bound (and, separately, until every pod is Running).
//!
//! cargo run -p kubesim --example nodes_bench -- [NODES] [PODS]   (default 1000 5000)
//!
//! Pods run an image with no local binary, so the kubelets simulate them (no processes).

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kubesim::{Cluster, ClusterConfig};

fn claim(i: usize) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(format!("data-{i}")),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("app-{i}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                volume_mounts: Some(vec![VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            volumes: Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: format!("data-{i}"),
                    read_only: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let count: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let cluster = Cluster::start(ClusterConfig {
        nodes,
        zones: 3,
        data_dir: dir.path().to_path_buf(),
        port: None,
        image_binaries: Default::default(),
    })
    .await?;
    println!("cluster with {nodes} nodes up in {:.2?}", started.elapsed());
    let client = cluster.client();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let t0 = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let (claims, pods) = (claims.clone(), pods.clone());
            async move {
                claims.create(&PostParams::default(), &claim(i)).await?;
                pods.create(&PostParams::default(), &pod(i)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    println!(
        "created {count} claims and {count} pods in {:.2?}",
        t0.elapsed()
    );

    let mut bound_at = None;
    loop {
        let pod_list = pods.list(&ListParams::default()).await?;
        let claim_list = claims.list(&ListParams::default()).await?;
        let scheduled = pod_list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        let running = pod_list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        let bound = claim_list
            .items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .count();
        println!(
            "{:>7.1?}  scheduled {scheduled:>5}  bound {bound:>5}  running {running:>5}",
            t0.elapsed()
        );
        if bound_at.is_none() && scheduled == count && bound == count {
            bound_at = Some(t0.elapsed());
        }
        if bound_at.is_some() && running == count {
            break;
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("gave up after 30 minutes");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let all = bound_at.expect("set before the loop ends");
    println!(
        "RESULT nodes={nodes} pods={count} claims={count}: all scheduled and bound {:.1?} after the first create; all Running {:.1?}",
        all,
        t0.elapsed()
    );
    cluster.stop().await;
    Ok(())
}
