//! Object lifecycle through kube-rs: finalizers and deletionTimestamp, garbage collection
//! through ownerReferences, namespace deletion, and CustomResourceDefinitions whose custom
//! resources are served at once.

use crate::api_support;

use api_support::{api_status, eventually, start};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Discovery};
use serde_json::json;

fn configmap(v: serde_json::Value) -> ConfigMap {
    serde_json::from_value(v).unwrap()
}

async fn exists(cms: &Api<ConfigMap>, name: &str) -> bool {
    cms.get_opt(name).await.unwrap().is_some()
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(
        &PostParams::default(),
        &configmap(json!({"metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}})),
    )
    .await
    .unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());

    // No new finalizers while deleting.
    let err = api_status(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/cleanup", "other/x"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));

    // Other changes are still allowed, and removing the last finalizer deletes.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    assert!(exists(&cms, "held").await);
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(!exists(&cms, "held").await);
    server.stop().await;
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_whose_owners_are_all_gone() {
    let (server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mk = |name: &str| configmap(json!({"metadata": {"name": name}}));
    let owner_a = cms
        .create(&PostParams::default(), &mk("owner-a"))
        .await
        .unwrap();
    let owner_b = cms
        .create(&PostParams::default(), &mk("owner-b"))
        .await
        .unwrap();
    let oref = |o: &ConfigMap| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "name": o.metadata.name, "uid": o.metadata.uid})
    };
    let dependent = |name: &str, owners: Vec<serde_json::Value>| {
        configmap(json!({"metadata": {"name": name, "ownerReferences": owners}}))
    };
    cms.create(
        &PostParams::default(),
        &dependent("only-a", vec![oref(&owner_a)]),
    )
    .await
    .unwrap();
    cms.create(
        &PostParams::default(),
        &dependent("a-and-b", vec![oref(&owner_a), oref(&owner_b)]),
    )
    .await
    .unwrap();
    let grandchild = cms.get("only-a").await.unwrap();
    cms.create(
        &PostParams::default(),
        &dependent("grandchild", vec![oref(&grandchild)]),
    )
    .await
    .unwrap();

    cms.delete("owner-a", &DeleteParams::background())
        .await
        .unwrap();
    eventually("only-a and its dependent are collected", || {
        let cms = cms.clone();
        async move {
            (!exists(&cms, "only-a").await && !exists(&cms, "grandchild").await).then_some(())
        }
    })
    .await;
    // Still owned by owner-b.
    assert!(exists(&cms, "a-and-b").await);

    // Orphan propagation keeps the dependent and drops the reference.
    cms.delete("owner-b", &DeleteParams::orphan())
        .await
        .unwrap();
    let orphan = cms.get("a-and-b").await.unwrap();
    let refs = orphan.metadata.owner_references.unwrap_or_default();
    assert!(refs.iter().all(|r| r.name != "owner-b"), "{refs:?}");
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let (server, client) = start().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(
        &PostParams::default(),
        &configmap(json!({"metadata": {"name": "x"}})),
    )
    .await
    .unwrap();
    cms.create(
        &PostParams::default(),
        &configmap(json!({"metadata": {"name": "held", "finalizers": ["example.com/f"]}})),
    )
    .await
    .unwrap();
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    // New content is refused while terminating.
    let err = api_status(
        cms.create(
            &PostParams::default(),
            &configmap(json!({"metadata": {"name": "late"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    eventually("x is deleted", || {
        let cms = cms.clone();
        async move { (!exists(&cms, "x").await).then_some(()) }
    })
    .await;
    // The finalizer keeps both the object and the namespace.
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert!(nss.get_opt("doomed").await.unwrap().is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the namespace is gone", || {
        let nss = nss.clone();
        async move { nss.get_opt("doomed").await.unwrap().is_none().then_some(()) }
    })
    .await;
    server.stop().await;
}

fn widget_crd(scope: &str, plural: &str, kind: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}},
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            ]
        }
    }))
    .unwrap()
}

async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), crd).await.unwrap();
    let name = crd.metadata.name.clone().unwrap();
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(std::time::Duration::from_secs(10), established)
        .await
        .expect("CRD established in time")
        .unwrap();
}

#[tokio::test]
async fn custom_resources_are_served_once_their_crd_exists() {
    let (server, client) = start().await;
    install_crd(&client, &widget_crd("Namespaced", "widgets", "Widget")).await;

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("discovered");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 1},
        "status": {"phase": "ignored on create"}
    }))
    .unwrap();
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert!(created.data.get("status").is_none());
    assert_eq!(created.metadata.generation, Some(1));

    // Status subresource: only status changes, generation stays.
    let s = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Ready");
    assert_eq!(s.data["spec"]["size"], 1);
    assert_eq!(s.metadata.generation, Some(1));
    let s = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"phase": "ignored"}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Ready");
    assert_eq!(s.metadata.generation, Some(2));

    // Another served version reads the same object.
    let beta = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1beta1", "Widget"));
    let beta_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &beta);
    let as_beta = beta_api.get("w1").await.unwrap();
    assert_eq!(as_beta.types.unwrap().api_version, "example.com/v1beta1");

    // Deleting the CRD deletes its resources and stops serving them.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let err = api_status(widgets.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.code, 404);
    server.stop().await;
}

#[tokio::test]
async fn reapplying_a_crd_unchanged_later_writes_nothing() {
    let (server, client) = start().await;
    let crd = widget_crd("Namespaced", "widgets", "Widget");
    install_crd(&client, &crd).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let before = crds.get("widgets.example.com").await.unwrap();
    // The conditions' transition times are whole seconds: a write in a later second that
    // restamped them would be a change.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let params = PatchParams::apply("test").force();
    let after = crds
        .patch("widgets.example.com", &params, &Patch::Apply(&crd))
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "an apply that changes nothing is not written"
    );
    // A real change is written, and the conditions keep their transition times.
    let mut changed = crd.clone();
    changed.spec.names.short_names = Some(vec!["wd".into()]);
    let after = crds
        .patch("widgets.example.com", &params, &Patch::Apply(&changed))
        .await
        .unwrap();
    assert_ne!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    let times = |c: &CustomResourceDefinition| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.last_transition_time)
            .collect::<Vec<_>>()
    };
    assert_eq!(times(&after), times(&before));
    assert_eq!(times(&after).len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn cluster_scoped_custom_resources_work() {
    let (server, client) = start().await;
    install_crd(&client, &widget_crd("Cluster", "gadgets", "Gadget")).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Gadget"),
        "gadgets",
    );
    let gadgets: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let g: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {}
    }))
    .unwrap();
    let created = gadgets.create(&PostParams::default(), &g).await.unwrap();
    assert!(created.metadata.namespace.is_none());
    assert_eq!(
        gadgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let err = api_status(
        gadgets
            .create(&PostParams::default(), &g)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.message, "gadgets.example.com \"g1\" already exists");
    server.stop().await;
}
