//! Watch semantics through kube-rs: event types, resume from a resourceVersion, 410 Expired,
//! bookmarks, selectors on watches, and the kube-runtime watcher and reflector.

use crate::api_support;

use std::time::Duration;

use api_support::{eventually, start, start_with};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kubesim::ApiServerOptions;
use serde_json::json;

fn configmap(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels }, "data": { "k": "v" },
    }))
    .unwrap()
}

fn describe(e: &WatchEvent<ConfigMap>) -> String {
    match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.as_deref().unwrap()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.as_deref().unwrap()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.as_deref().unwrap()),
        WatchEvent::Bookmark(_) => "BOOKMARK".to_string(),
        WatchEvent::Error(s) => format!("ERROR {}", s.code),
    }
}

#[tokio::test]
async fn watch_reports_added_modified_deleted_and_resumes_from_a_resource_version() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let start_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &start_rv)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    let mut last_rv = String::new();
    while seen.len() < 3 {
        let ev = stream.try_next().await.unwrap().expect("stream open");
        if let WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) = &ev {
            last_rv = o.metadata.resource_version.clone().unwrap();
        }
        seen.push(describe(&ev));
    }
    assert_eq!(seen, ["ADDED a", "MODIFIED a", "DELETED a"]);
    drop(stream);

    // Changes made while nobody watches are replayed from the history.
    cms.create(&PostParams::default(), &configmap("b", json!({})))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &configmap("c", json!({})))
        .await
        .unwrap();
    let mut resumed = cms
        .watch(&WatchParams::default().timeout(30), &last_rv)
        .await
        .unwrap()
        .boxed();
    let first = describe(&resumed.try_next().await.unwrap().unwrap());
    let second = describe(&resumed.try_next().await.unwrap().unwrap());
    assert_eq!([first, second], ["ADDED b", "ADDED c"]);

    // Without a resourceVersion, a watch starts with the current objects as ADDED.
    let mut fresh = cms
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    let mut initial = vec![
        describe(&fresh.try_next().await.unwrap().unwrap()),
        describe(&fresh.try_next().await.unwrap().unwrap()),
    ];
    initial.sort();
    assert_eq!(initial, ["ADDED b", "ADDED c"]);
    server.stop().await;
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_gone() {
    let (server, client) = start_with(ApiServerOptions {
        watch_history: 5,
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let old_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..10 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("c{i}"), json!({})),
        )
        .await
        .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(status)) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!(
            "expected a 410 ERROR event, got {:?}",
            other.map(|e| describe(&e))
        ),
    }
    server.stop().await;
}

#[tokio::test]
async fn bookmarks_arrive_when_asked_for() {
    let (server, client) = start_with(ApiServerOptions {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            let got: u64 = b.metadata.resource_version.parse().unwrap();
            assert!(got >= rv.parse::<u64>().unwrap());
        }
        other => panic!("expected a BOOKMARK, got {:?}", other.map(|e| describe(&e))),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_label_selected_watch_sees_objects_enter_and_leave() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().labels("team=blue").timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let set = |v: serde_json::Value| Patch::Merge(json!({"metadata": {"labels": v}}));
    cms.patch("a", &PatchParams::default(), &set(json!({"team": "blue"})))
        .await
        .unwrap();
    cms.patch("a", &PatchParams::default(), &set(json!({"x": "1"})))
        .await
        .unwrap();
    cms.patch("a", &PatchParams::default(), &set(json!({"team": "red"})))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&stream.try_next().await.unwrap().unwrap()));
    }
    assert_eq!(seen, ["ADDED a", "MODIFIED a", "DELETED a"]);
    server.stop().await;
}

#[tokio::test]
async fn kube_runtime_watcher_and_reflector_track_the_collection() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..5 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("pre-{i}"), json!({})),
        )
        .await
        .unwrap();
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let driver = tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state().len(), 5);
    for i in 0..5 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("post-{i}"), json!({})),
        )
        .await
        .unwrap();
    }
    cms.delete("pre-0", &DeleteParams::default()).await.unwrap();
    eventually("the reflector sees 9 configmaps", || {
        let n = reader.state().len();
        async move { (n == 9).then_some(()) }
    })
    .await;
    assert!(
        reader
            .state()
            .iter()
            .all(|c| c.metadata.name.as_deref() != Some("pre-0"))
    );
    driver.abort();
    server.stop().await;
}
