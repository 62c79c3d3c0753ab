//! Small Kubernetes chores the demo repeats: create-or-replace, wait for a condition, delete
//! and wait until gone. Waiting polls (the demo's objects are few and the API server is local)
//! and gives up with a message naming the object and what it was waiting for.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How often waits look again.
pub const POLL: Duration = Duration::from_millis(40);

/// Creates the namespace unless it exists.
pub async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// Creates the object, or replaces it when one of that name exists.
pub async fn apply<K>(api: &Api<K>, object: &K) -> anyhow::Result<K>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.meta().name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), object).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let current = api
                .get(&name)
                .await
                .with_context(|| format!("reading {name}"))?;
            let mut replacement = object.clone();
            replacement.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &replacement)
                .await
                .with_context(|| format!("replacing {name}"))
        }
        Err(e) => Err(e).with_context(|| format!("creating {name}")),
    }
}

/// Calls `check` until it returns `Some`, or fails after `timeout` saying what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("gave up after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One look at a pod for [`wait_for`]: `Some` once it runs, an error once it failed (its
/// logs are under the cluster directory, `pods/<namespace>_<pod>/`).
pub async fn pod_running(pods: &Api<Pod>, name: &str) -> anyhow::Result<Option<()>> {
    let pod = pods
        .get(name)
        .await
        .with_context(|| format!("reading pod {name}"))?;
    Ok(running(&pod)?.then_some(()))
}

/// Whether the pod runs; an error once it failed (its logs are under the cluster directory).
pub fn running(pod: &Pod) -> anyhow::Result<bool> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    if phase == "Failed" {
        bail!(
            "pod {namespace}/{name} failed; see its logs under the cluster directory \
             (pods/{namespace}_{name}/)"
        );
    }
    Ok(phase == "Running")
}

/// Deletes every object of the kind in the api's scope (optionally by label) and waits
/// until they are gone.
pub async fn delete_all_and_wait<K>(
    api: &Api<K>,
    labels: Option<&str>,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<()>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let mut params = ListParams::default();
    if let Some(labels) = labels {
        params = params.labels(labels);
    }
    let existing = api
        .list(&params)
        .await
        .with_context(|| format!("listing {what}"))?;
    for object in existing.items {
        let name = object.meta().name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {what} {name}")),
        }
    }
    wait_for(&format!("{what} to be deleted"), timeout, || {
        let api = api.clone();
        let params = params.clone();
        async move {
            let left = api.list(&params).await?;
            Ok(left.items.is_empty().then_some(()))
        }
    })
    .await
}
