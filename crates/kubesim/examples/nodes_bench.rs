//! Benchmark (not a test) of kubesim's node side at scale: N nodes, then M PersistentVolumeClaims
//! (the default WaitForFirstConsumer class) and M pods each using one, timed until every pod
//! is scheduled and every claim Bound (and, separately, until every pod is Running), while W
//! extra clients watch all pods (as controllers and `kubectl get -w` would).
//!
//! cargo run --release -p kubesim --example nodes_bench -- [NODES] [PODS] [WATCHERS]
//! (default 1000 5000 0)
//!
//! Pods run an image with no local binary, so the kubelets simulate them (no processes).
//! Progress is followed through watches (no polling lists), so the times are exact.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
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

/// The process's peak resident set size (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// When every pod got a node, every claim got Bound and every pod got Running.
#[derive(Default)]
struct Progress {
    scheduled: HashSet<String>,
    running: HashSet<String>,
    bound: HashSet<String>,
    all_scheduled: Option<Duration>,
    all_bound: Option<Duration>,
    all_running: Option<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let count: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let watchers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(0);
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

    // Extra watch streams on all pods, each decoding every event as a client would.
    let watched = Arc::new(AtomicU64::new(0));
    for _ in 0..watchers {
        let watched = watched.clone();
        let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .touched_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(_)) = stream.next().await {
                watched.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let t0 = Instant::now();
    let progress = Arc::new(std::sync::Mutex::new(Progress::default()));
    let done = Arc::new(tokio::sync::Notify::new());
    {
        let (progress, done) = (progress.clone(), done.clone());
        let stream = watcher(pods.clone(), watcher::Config::default())
            .default_backoff()
            .touched_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(pod)) = stream.try_next().await {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let mut p = progress.lock().unwrap();
                if pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some()
                {
                    p.scheduled.insert(name.clone());
                }
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    p.running.insert(name);
                }
                if p.all_scheduled.is_none() && p.scheduled.len() == count {
                    p.all_scheduled = Some(t0.elapsed());
                }
                if p.all_running.is_none() && p.running.len() == count {
                    p.all_running = Some(t0.elapsed());
                    done.notify_one();
                }
            }
        });
    }
    {
        let progress = progress.clone();
        let stream = watcher(claims.clone(), watcher::Config::default())
            .default_backoff()
            .touched_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(claim)) = stream.try_next().await {
                if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
                    let mut p = progress.lock().unwrap();
                    p.bound
                        .insert(claim.metadata.name.clone().unwrap_or_default());
                    if p.all_bound.is_none() && p.bound.len() == count {
                        p.all_bound = Some(t0.elapsed());
                    }
                }
            }
        });
    }

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
    let created = t0.elapsed();
    println!(
        "created {count} claims and {count} pods in {created:.2?} ({:.0} objects/s)",
        (2 * count) as f64 / created.as_secs_f64()
    );

    let deadline = Duration::from_secs(1800);
    loop {
        tokio::select! {
            _ = done.notified() => break,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let p = progress.lock().unwrap();
        println!(
            "{:>7.1?}  scheduled {:>5}  bound {:>5}  running {:>5}",
            t0.elapsed(),
            p.scheduled.len(),
            p.bound.len(),
            p.running.len()
        );
        if p.all_running.is_some() {
            break;
        }
        if t0.elapsed() > deadline {
            anyhow::bail!("gave up after 30 minutes");
        }
    }
    let (scheduled, bound, running) = {
        let p = progress.lock().unwrap();
        let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
        (
            secs(p.all_scheduled),
            secs(p.all_bound),
            secs(p.all_running),
        )
    };
    let both = scheduled.max(bound);
    println!("SUMMARY nodes={nodes} pods={count} claims={count} extra pod watchers={watchers}");
    println!(
        "  created {} objects in {:.1} s ({:.0} objects/s)",
        2 * count,
        created.as_secs_f64(),
        (2 * count) as f64 / created.as_secs_f64()
    );
    println!(
        "  all scheduled {scheduled:.1} s, all claims Bound {bound:.1} s, both {both:.1} s ({:.0} pods/s), all Running {running:.1} s (after the first create)",
        count as f64 / both
    );
    if watchers > 0 {
        println!(
            "  {} pod events decoded by the {watchers} extra watchers",
            watched.load(Ordering::Relaxed)
        );
    }
    if let Some(rss) = peak_rss_mib() {
        println!(
            "  peak RSS {rss:.0} MiB (API server, node components and clients in one process)"
        );
    }
    let stopping = Instant::now();
    cluster.stop().await;
    println!("  cluster stopped in {:.1?}", stopping.elapsed());
    let removing = Instant::now();
    drop(dir);
    println!("  data dir removed in {:.1?}", removing.elapsed());
    Ok(())
}
