//! Load check for the API server (a measurement, not a test): 1,000 nodes and 10,000 pods
//! created by concurrent clients while several kube-rs reflectors watch, then full lists.
//!
//! cargo run -p kubesim --example api_scale [-- NODES PODS WATCHERS]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let nodes = args.first().copied().unwrap_or(1000);
    let pods = args.get(1).copied().unwrap_or(10_000);
    let watchers = args.get(2).copied().unwrap_or(5);
    let server = kubesim::ApiServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let client = server.client()?;

    let mut readers = Vec::new();
    for _ in 0..watchers {
        let (reader, writer) = reflector::store::<Pod>();
        let api: Api<Pod> = Api::all(client.clone());
        let s = reflector(writer, watcher(api, watcher::Config::default())).applied_objects();
        tokio::spawn(s.for_each(|_| async {}));
        reader.wait_until_ready().await?;
        readers.push(reader);
    }

    let node_api: Api<Node> = Api::all(client.clone());
    let t = Instant::now();
    stream::iter(0..nodes)
        .for_each_concurrent(32, |i| {
            let api = node_api.clone();
            async move {
                let n: Node = serde_json::from_value(json!({
                    "metadata": {"name": format!("node-{}", i + 1),
                                 "labels": {"kubernetes.io/hostname": format!("node-{}", i + 1)}},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}
                }))
                .unwrap();
                api.create(&PostParams::default(), &n).await.unwrap();
            }
        })
        .await;
    let node_secs = t.elapsed().as_secs_f64();

    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let t = Instant::now();
    stream::iter(0..pods)
        .for_each_concurrent(32, |i| {
            let api = pod_api.clone();
            async move {
                let p: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("pod-{i}"), "labels": {"app": format!("a{}", i % 10)}},
                    "spec": {"nodeName": format!("node-{}", i % nodes.max(1) + 1),
                             "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"]}]}
                }))
                .unwrap();
                api.create(&PostParams::default(), &p).await.unwrap();
            }
        })
        .await;
    let create_secs = t.elapsed().as_secs_f64();
    loop {
        if readers.iter().all(|r| r.state().len() == pods) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let seen_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let all = pod_api.list(&ListParams::default()).await?;
    let list_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let some = pod_api
        .list(&ListParams::default().labels("app=a3"))
        .await?;
    let select_secs = t.elapsed().as_secs_f64();
    println!(
        "nodes created: {nodes} in {node_secs:.2}s ({:.0}/s)",
        nodes as f64 / node_secs
    );
    println!(
        "pods created: {pods} in {create_secs:.2}s ({:.0}/s), all seen by {watchers} reflectors after {seen_secs:.2}s",
        pods as f64 / create_secs
    );
    println!(
        "list of {} pods: {list_secs:.3}s; label-selected list of {}: {select_secs:.3}s",
        all.items.len(),
        some.items.len()
    );
    server.stop().await;
    Ok(())
}
