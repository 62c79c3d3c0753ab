//! Returning a shared control plane to its state right after start: every object that was
//! not there then is deleted (namespaces with their content, nodes, PVs, CRDs, cluster
//! roles…), finalizers and grace periods overridden, since the controllers and kubelets
//! that would honour them belonged to the previous test. Found through discovery, so a
//! resource a test adds (a CRD) is covered without a list to keep up to date.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};

/// `group/resource namespace/name`: an object's identity across its versions.
pub type ObjectKey = String;

/// Resources never deleted: what they hold expires or is derived.
const KEEP: &[&str] = &["events", "componentstatuses"];

fn key(ar: &ApiResource, obj: &DynamicObject) -> ObjectKey {
    format!(
        "{}/{} {}/{}",
        ar.group,
        ar.plural,
        obj.metadata.namespace.as_deref().unwrap_or(""),
        obj.metadata.name.as_deref().unwrap_or("")
    )
}

async fn resources(client: &kube::Client) -> anyhow::Result<Vec<(ApiResource, ApiCapabilities)>> {
    // A group whose CRD is going away can answer discovery with 404 for a moment: try again.
    let mut attempt = 0;
    let discovery = loop {
        match Discovery::new(client.clone()).run().await {
            Ok(d) => break d,
            Err(_) if attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(ar, caps)| {
            caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::DELETE)
                && !KEEP.contains(&ar.plural.as_str())
        })
        .collect())
}

/// Every object of the cluster, by key, with how to reach it.
async fn objects(
    client: &kube::Client,
) -> anyhow::Result<Vec<(ObjectKey, ApiResource, ApiCapabilities, DynamicObject)>> {
    let mut all = Vec::new();
    for (ar, caps) in resources(client).await? {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        // A CRD deleted a moment ago may still be discovered: skip what cannot be listed
        // after a few tries (a list that fails once must not hide objects still there).
        let mut listed = None;
        for _ in 0..5 {
            if let Ok(list) = api.list(&ListParams::default()).await {
                listed = Some(list);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let Some(list) = listed else {
            continue;
        };
        for obj in list.items {
            all.push((key(&ar, &obj), ar.clone(), caps.clone(), obj));
        }
    }
    Ok(all)
}

/// The keys of every object now: the baseline a reset returns to.
pub async fn snapshot(client: &kube::Client) -> anyhow::Result<BTreeSet<ObjectKey>> {
    Ok(objects(client)
        .await?
        .into_iter()
        .map(|(key, ..)| key)
        .collect())
}

/// Deletes everything not in `baseline` and waits until it is gone.
pub async fn to_baseline(
    client: &kube::Client,
    baseline: &BTreeSet<ObjectKey>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let extra: Vec<_> = objects(client)
            .await?
            .into_iter()
            .filter(|(key, ..)| !baseline.contains(key))
            .collect();
        if extra.is_empty() {
            return drop_events(client).await;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let keys: Vec<&str> = extra.iter().take(20).map(|(k, ..)| k.as_str()).collect();
            bail!("objects of the previous test would not go away: {keys:?}");
        }
        for (_, ar, caps, obj) in &extra {
            remove(client, ar, caps, obj).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Events are not part of the baseline (components write them at any time), but those of the
/// previous test must not be seen by the next: a namespace deleted without its finalizer
/// leaves its events in etcd, and they come back with a namespace of the same name.
async fn drop_events(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Event;
    // From the events themselves: their namespace may be gone already.
    let namespaces: BTreeSet<String> = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|e| e.metadata.namespace)
        .collect();
    for ns in &namespaces {
        Api::<Event>::namespaced(client.clone(), ns)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
    }
    Ok(())
}

fn is_crd(ar: &ApiResource) -> bool {
    ar.group == "apiextensions.k8s.io" && ar.plural == "customresourcedefinitions"
}

async fn remove(
    client: &kube::Client,
    ar: &ApiResource,
    caps: &ApiCapabilities,
    obj: &DynamicObject,
) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = match (&caps.scope, obj.metadata.namespace.as_deref()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, ar),
        _ => Api::all_with(client.clone(), ar),
    };
    // A CRD's finalizer is the apiserver's own (it deletes the CRD's objects from etcd): kept,
    // or those objects stay in etcd and come back, still terminating, when the next test
    // creates the CRD again. The objects' own finalizers are stripped here while it waits.
    if !is_crd(ar)
        && obj
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
    {
        let _ = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
            )
            .await;
    }
    if obj.metadata.deletion_timestamp.is_none() || ar.plural == "pods" {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            propagation_policy: Some(kube::api::PropagationPolicy::Background),
            ..Default::default()
        };
        let _ = api.delete(&name, &params).await;
    }
}
