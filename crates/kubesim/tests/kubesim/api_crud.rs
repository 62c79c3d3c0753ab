//! CRUD, patch, conflicts, selectors and subresources through kube-rs.

use crate::api_support;

use api_support::{api_status, start};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn configmap(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "labels": labels },
        "data": { "k": "v" },
    }))
    .unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "containers": [
            { "name": "main", "image": "busybox:1.36", "env": [{ "name": "A", "value": "1" }] },
            { "name": "side", "image": "busybox:1.36" }
        ] },
    }))
    .unwrap()
}

#[tokio::test]
async fn create_get_list_update_delete_round_trip() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = cms
        .create(&PostParams::default(), &configmap("one", json!({})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    let got = cms.get("one").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "v");

    let mut changed = got.clone();
    changed
        .data
        .as_mut()
        .unwrap()
        .insert("k".into(), "w".into());
    let updated = cms
        .replace("one", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion must grow: {rv1} then {rv2}");
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv >= rv2);

    cms.delete("one", &DeleteParams::default()).await.unwrap();
    let err = api_status(cms.get("one").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "configmaps \"one\" not found");
    server.stop().await;
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict_and_duplicates_already_exist() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = cms
        .create(&PostParams::default(), &configmap("c", json!({})))
        .await
        .unwrap();
    let err = api_status(
        cms.create(&PostParams::default(), &configmap("c", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));

    let mut a = first.clone();
    a.data = Some([("k".to_string(), "a".to_string())].into());
    cms.replace("c", &PostParams::default(), &a).await.unwrap();
    // `first` still carries the old resourceVersion.
    let mut b = first.clone();
    b.data = Some([("k".to_string(), "b".to_string())].into());
    let err = api_status(
        cms.replace("c", &PostParams::default(), &b)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    assert_eq!(cms.get("c").await.unwrap().data.unwrap()["k"], "a");
    server.stop().await;
}

#[tokio::test]
async fn namespaces_must_exist_and_generate_name_makes_unique_names() {
    let (server, client) = start().await;
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = api_status(
        missing
            .create(&PostParams::default(), &configmap("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );

    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    let ns = nss.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));

    let cms: Api<ConfigMap> = Api::namespaced(client, "team");
    let mut generated = configmap("", json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let a = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let b = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(a.starts_with("gen-") && a.len() == 9, "{a}");
    assert_ne!(a, b);

    let bad = api_status(
        cms.create(&PostParams::default(), &configmap("Bad_Name", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    server.stop().await;
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, labels) in [
        ("web-prod", json!({"app": "web", "env": "prod"})),
        ("web-dev", json!({"app": "web", "env": "dev"})),
        ("db-prod", json!({"app": "db", "env": "prod"})),
        ("plain", json!({})),
    ] {
        cms.create(&PostParams::default(), &configmap(name, labels))
            .await
            .unwrap();
    }
    let names = |sel: &str, fields: &str| {
        let cms = cms.clone();
        let lp = ListParams::default().labels(sel).fields(fields);
        async move {
            let mut n: Vec<String> = cms
                .list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(names("app=web", "").await, ["web-dev", "web-prod"]);
    assert_eq!(names("app==web,env!=dev", "").await, ["web-prod"]);
    assert_eq!(names("env in (prod)", "").await, ["db-prod", "web-prod"]);
    assert_eq!(names("app,app notin (web)", "").await, ["db-prod"]);
    assert_eq!(names("!app", "").await, ["plain"]);
    assert_eq!(names("", "metadata.name=plain").await, ["plain"]);
    assert_eq!(
        names("app=web", "metadata.name!=web-dev").await,
        ["web-prod"]
    );

    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    let unscheduled = pods
        .list(&ListParams::default().fields("spec.nodeName=,status.phase=Pending"))
        .await
        .unwrap();
    assert_eq!(unscheduled.items.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn limit_and_continue_page_through_a_list() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..7 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("cm-{i}"), json!({})),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        seen.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
    assert_eq!(seen, want);
    server.stop().await;
}

#[tokio::test]
async fn patches_merge_json_strategic_and_apply() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();

    let p = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["a"], "1");

    // Strategic merge: containers and env merge by name, $patch: delete removes one.
    let p = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({
                "metadata": {"finalizers": ["x/y"]},
                "spec": {"containers": [
                    {"name": "main", "env": [{"name": "B", "value": "2"}]},
                    {"name": "side", "$patch": "delete"}
                ]}
            })),
        )
        .await
        .unwrap();
    let containers = p.spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    let env: Vec<String> = containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, ["A", "B"]);
    assert_eq!(containers[0].image.as_deref(), Some("busybox:1.36"));

    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "remove", "path": "/metadata/finalizers"},
        {"op": "add", "path": "/metadata/annotations", "value": {"n": "v"}}
    ]))
    .unwrap();
    let p = pods
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(json_patch))
        .await
        .unwrap();
    assert!(p.metadata.finalizers.is_none());
    assert_eq!(p.metadata.annotations.unwrap()["n"], "v");

    // A patch carrying a stale resourceVersion conflicts.
    let err = api_status(
        pods.patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"b": "2"}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);

    // Server-side apply (approximated) creates when absent and merges when present.
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let applied = cms
        .patch(
            "applied",
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied"}, "data": {"a": "1"}
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["a"], "1");
    let applied = cms
        .patch(
            "applied",
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied"}, "data": {"b": "2"}
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["b"], "2");

    let err = api_status(
        cms.patch(
            "absent",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    server.stop().await;
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_writes() {
    let (server, client) = start().await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        // Status on create is the system's to write: reset to Pending.
        "status": {"phase": "Bound"},
    }))
    .unwrap();
    let created = pvcs.create(&PostParams::default(), &claim).await.unwrap();
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(
        created.spec.as_ref().unwrap().volume_mode.as_deref(),
        Some("Filesystem")
    );

    // The main resource ignores status.
    let mut main = created.clone();
    main.status.as_mut().unwrap().phase = Some("Bound".into());
    main.metadata.labels = Some([("l".to_string(), "1".to_string())].into());
    let after = pvcs
        .replace("data", &PostParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(after.metadata.labels.as_ref().unwrap()["l"], "1");

    // The status subresource changes only status.
    let after = pvcs
        .patch_status(
            "data",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Bound"}, "metadata": {"labels": {"l": "2"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().phase.as_deref(),
        Some("Bound")
    );
    assert_eq!(after.metadata.labels.as_ref().unwrap()["l"], "1");
    let mut lost = after.clone();
    lost.status.as_mut().unwrap().phase = Some("Lost".into());
    let after = pvcs
        .replace_status("data", &PostParams::default(), &lost)
        .await
        .unwrap();
    assert_eq!(after.status.unwrap().phase.as_deref(), Some("Lost"));
    server.stop().await;
}

#[tokio::test]
async fn generation_follows_spec_changes_only() {
    let (server, client) = start().await;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        }
    }))
    .unwrap();
    let d = deploys.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    // A no-op update changes nothing, not even the resourceVersion.
    let again = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, d.metadata.resource_version);
    server.stop().await;
}

#[tokio::test]
async fn pod_binding_sets_the_node_once() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    let req = http::Request::post("/api/v1/namespaces/default/pods/p/binding")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}
            }))
            .unwrap(),
        )
        .unwrap();
    let status: serde_json::Value = client.request(req).await.unwrap();
    assert_eq!(status["status"], "Success");
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let scheduled = p.status.unwrap().conditions.unwrap();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );

    let again = http::Request::post("/api/v1/namespaces/default/pods/p/binding")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-2"}
            }))
            .unwrap(),
        )
        .unwrap();
    let err = client
        .request::<serde_json::Value>(again)
        .await
        .unwrap_err();
    assert_eq!(api_status(err).code, 409);
    server.stop().await;
}

#[tokio::test]
async fn events_are_shared_between_core_and_events_k8s_io() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let (server, client) = start().await;
    let new_api: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let ev: NewEvent = serde_json::from_value(json!({
        "metadata": {"name": "p.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "kubesim/test", "reportingInstance": "test-1",
        "action": "Scheduling", "reason": "FailedScheduling", "type": "Warning",
        "note": "0/3 nodes are available",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "p"}
    }))
    .unwrap();
    new_api.create(&PostParams::default(), &ev).await.unwrap();

    let core_api: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let core = core_api
        .list(&ListParams::default().fields("involvedObject.name=p"))
        .await
        .unwrap();
    assert_eq!(core.items.len(), 1);
    let core = &core.items[0];
    assert_eq!(core.message.as_deref(), Some("0/3 nodes are available"));
    assert_eq!(core.involved_object.name.as_deref(), Some("p"));
    assert_eq!(core.reporting_component.as_deref(), Some("kubesim/test"));

    let back = new_api.get("p.1").await.unwrap();
    assert_eq!(back.note.as_deref(), Some("0/3 nodes are available"));
    assert_eq!(back.regarding.unwrap().name.as_deref(), Some("p"));
    server.stop().await;
}
