//! The StatefulSet controller of kubesim's simulated mode, a subset of kube-controller-manager's:
//! pods `<set>-<ordinal>` with the template's labels plus `statefulset.kubernetes.io/pod-name`
//! and `apps.kubernetes.io/pod-index`, owned by the set (controller reference); one claim per
//! volumeClaimTemplate and ordinal, `<template>-<set>-<ordinal>`, created before the pod and
//! never deleted by the controller (the default retention policy); `OrderedReady` creates the
//! next pod only once every lower ordinal is Running and Ready (`Parallel` creates them all);
//! scaling down deletes the highest ordinals first; a pod that ended (Failed, Succeeded) is
//! deleted and created again; `status` counts replicas, ready and available pods. Not
//! simulated: rolling updates and revisions, `minReadySeconds`, `persistentVolumeClaimRetentionPolicy`,
//! `ordinals.start`. In attached mode the real controller does this.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

/// A pass without any change still runs this often (a pod became Ready without an event
/// reaching us, a failed create to retry).
const RESYNC: Duration = Duration::from_secs(2);

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Runs until `stop`: a pass over every StatefulSet after each change to StatefulSets or pods.
pub async fn run(client: kube::Client, stop: CancellationToken) {
    let sets: Api<StatefulSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default();
    let mut changes = futures::stream::select(
        watcher(sets.clone(), config.clone()).map(|_| ()).boxed(),
        watcher(pods, config).map(|_| ()).boxed(),
    );
    loop {
        match sets.list(&ListParams::default()).await {
            Ok(list) => {
                for set in list.items {
                    if let Err(error) = reconcile(&client, &set).await {
                        tracing::debug!(%error, set = %set.name_any(), "kubesim statefulset controller");
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "kubesim statefulset controller: list"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changes.next() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        // Let a burst of events (a pod's status changing several times) settle into one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn has_ended(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

/// The set's ordinal of a pod it owns, from its name.
fn ordinal_of(set: &str, pod: &Pod) -> Option<usize> {
    pod.name_any()
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn owner_reference(set: &StatefulSet) -> OwnerReference {
    let mut owner = set
        .controller_owner_ref(&())
        .expect("a stored set has a uid");
    owner.block_owner_deletion = Some(true);
    owner
}

/// The claim of `template` for ordinal `i`, labelled with the set's selector labels.
fn claim_for(
    set: &StatefulSet,
    template: &PersistentVolumeClaim,
    i: usize,
) -> PersistentVolumeClaim {
    let name = set.name_any();
    let mut labels = template.metadata.labels.clone().unwrap_or_default();
    if let Some(match_labels) = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
    {
        labels.extend(match_labels);
    }
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(format!("{}-{name}-{i}", template.name_any())),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: template.metadata.annotations.clone(),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Pod `<set>-<i>` from the template, with the claims of the volumeClaimTemplates mounted.
fn pod_for(set: &StatefulSet, i: usize) -> Pod {
    let name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let template = spec.template;
    let pod_name = format!("{name}-{i}");
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), i.to_string());
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.hostname = Some(pod_name.clone());
    pod_spec.subdomain = spec.service_name.clone();
    let mut volumes = pod_spec.volumes.take().unwrap_or_default();
    for claim_template in spec.volume_claim_templates.iter().flatten() {
        let volume_name = claim_template.name_any();
        volumes.retain(|v| v.name != volume_name);
        volumes.push(
            serde_json::from_value::<Volume>(serde_json::json!({
                "name": volume_name,
                "persistentVolumeClaim": {"claimName": format!("{volume_name}-{name}-{i}")},
            }))
            .expect("a valid volume"),
        );
    }
    pod_spec.volumes = Some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: template.metadata.and_then(|m| m.annotations),
            owner_references: Some(vec![owner_reference(set)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

async fn create_ignoring_conflict<K>(api: &Api<K>, object: &K) -> kube::Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn reconcile(client: &kube::Client, set: &StatefulSet) -> kube::Result<()> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let uid = set.uid();
    let owned: BTreeMap<usize, Pod> = pods_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .filter_map(|p| Some((ordinal_of(&name, &p)?, p)))
        .collect();

    // Scale up (and replace ended pods), lowest ordinal first.
    for i in 0..replicas {
        match owned.get(&i) {
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                if !parallel {
                    break;
                }
            }
            Some(pod) if has_ended(pod) => {
                pods_api
                    .delete(&pod.name_any(), &DeleteParams::default())
                    .await?;
                if !parallel {
                    break;
                }
            }
            Some(pod) => {
                if !parallel && !is_ready(pod) {
                    break;
                }
            }
            None => {
                for template in spec.volume_claim_templates.iter().flatten() {
                    create_ignoring_conflict(&claims_api, &claim_for(set, template, i)).await?;
                }
                create_ignoring_conflict(&pods_api, &pod_for(set, i)).await?;
                if !parallel {
                    break;
                }
            }
        }
    }
    // Scale down, highest ordinal first, one at a time unless Parallel.
    let excess: Vec<&Pod> = owned
        .iter()
        .rev()
        .filter(|(i, p)| **i >= replicas && p.metadata.deletion_timestamp.is_none())
        .map(|(_, p)| p)
        .collect();
    for pod in excess {
        pods_api
            .delete(&pod.name_any(), &DeleteParams::default())
            .await?;
        if !parallel {
            break;
        }
    }

    let ready = owned
        .values()
        .filter(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
        .count() as i32;
    let status = serde_json::json!({"status": {
        "observedGeneration": set.metadata.generation,
        "replicas": owned.len() as i32,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": owned.len() as i32,
        "updatedReplicas": owned.len() as i32,
    }});
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "app", "uid": "u-1"},
            "spec": {
                "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "data", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"]}}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn pods_are_named_by_ordinal_labelled_owned_and_mount_their_claims() {
        let pod = pod_for(&set(), 2);
        assert_eq!(pod.name_any(), "web-2");
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels["app"], "web");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", "u-1")
        );
        assert_eq!(ordinal_of("web", &pod), Some(2));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        let volumes = spec.volumes.unwrap();
        assert_eq!(
            volumes.len(),
            1,
            "the template's claim replaces the same-named volume"
        );
        let claim = volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim.claim_name, "data-web-2");
    }

    #[test]
    fn claims_carry_the_selector_labels() {
        let s = set();
        let template = &s
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap()[0];
        let claim = claim_for(&s, template, 0);
        assert_eq!(claim.name_any(), "data-web-0");
        assert_eq!(claim.metadata.labels.unwrap()["app"], "web");
    }
}
