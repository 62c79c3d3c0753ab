//! The cluster operations the exposer and rebind need, behind a trait so that their logic is
//! unit-tested against an in-memory cluster (with injected failures, as Velero's exposer tests
//! do with fake clients), and runs against a real API server through [`KubeCluster`].
//!
//! [`KubeCluster::cached`] serves reads from the controller's watch stores
//! ([`crate::wakeups::Watches`]) and goes to the API server only while a store is not synced
//! or does not yet show a write this controller made (read-your-own-writes). A store's
//! "absent" is believed only for the objects ferry alone creates: pods and PVCs in its own
//! namespace.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::wakeups::Watches;

/// A failed cluster call; the text says which call on which object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub message: String,
    /// The API server may well accept the same call a moment later (a conflict, throttling,
    /// a 5xx, a timeout, a broken connection): retry, never fail a restore over it.
    pub transient: bool,
}

impl OpError {
    /// An error retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> OpError {
        OpError {
            message: message.into(),
            transient: false,
        }
    }

    /// An error worth retrying.
    pub fn transient(message: impl Into<String>) -> OpError {
        OpError {
            message: message.into(),
            transient: true,
        }
    }

    fn kube(verb: &str, what: &str, err: kube::Error) -> OpError {
        OpError {
            transient: is_transient(&err),
            message: format!("cannot {verb} {what}: {err}"),
        }
    }
}

/// Whether the API server may accept the same request later: a conflict (409), throttling
/// (429), a server-side error or timeout (5xx), or no answer at all (connection refused or
/// reset, a timeout). 4xx answers about the request itself (403, 404, 422) are not.
pub fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500..=599),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// Reads and writes of the objects a restore touches. Creates treat "already exists" and
/// deletes treat "not found" as success: every step is safe to repeat after a restart.
pub trait RestoreCluster: Send + Sync {
    fn get_pvc(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = OpResult<Option<PersistentVolumeClaim>>> + Send;
    fn create_pvc(
        &self,
        namespace: &str,
        pvc: &PersistentVolumeClaim,
    ) -> impl Future<Output = OpResult<()>> + Send;
    fn delete_pvc(&self, namespace: &str, name: &str) -> impl Future<Output = OpResult<()>> + Send;
    /// JSON merge patch (RFC 7386) of a PVC's metadata: `null` removes a field.
    fn patch_pvc(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> impl Future<Output = OpResult<()>> + Send;
    fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = OpResult<Option<Pod>>> + Send;
    fn create_pod(&self, namespace: &str, pod: &Pod) -> impl Future<Output = OpResult<()>> + Send;
    fn delete_pod(&self, namespace: &str, name: &str) -> impl Future<Output = OpResult<()>> + Send;
    fn get_pv(&self, name: &str)
    -> impl Future<Output = OpResult<Option<PersistentVolume>>> + Send;
    /// PersistentVolumes carrying `label=value`.
    fn list_pvs(
        &self,
        label: &str,
        value: &str,
    ) -> impl Future<Output = OpResult<Vec<PersistentVolume>>> + Send;
    /// JSON merge patch (RFC 7386): `null` removes a field.
    fn patch_pv(
        &self,
        name: &str,
        patch: &serde_json::Value,
    ) -> impl Future<Output = OpResult<()>> + Send;
    fn delete_pv(&self, name: &str) -> impl Future<Output = OpResult<()>> + Send;
    fn get_storage_class(
        &self,
        name: &str,
    ) -> impl Future<Output = OpResult<Option<StorageClass>>> + Send;
}

/// [`RestoreCluster`] over a kube client.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    watches: Option<Arc<Watches>>,
    /// ferry's namespace: its restore and backup pods and PVCs, which nobody else creates.
    own_namespace: String,
}

impl KubeCluster {
    /// Reads come from `watches`' stores where they are synced and up to date with this
    /// cluster's own writes; `own_namespace` is ferry's namespace.
    pub fn cached(client: kube::Client, watches: Arc<Watches>, own_namespace: &str) -> Self {
        Self {
            client,
            watches: Some(watches),
            own_namespace: own_namespace.to_string(),
        }
    }

    /// Whether a synced store's "absent" for `kind` `ns/name` is the truth: the object is
    /// one ferry alone creates (in its own namespace), and ferry wrote nothing to it that the
    /// store has not shown yet. This spares the API server a GET per exposing restore per
    /// pass while the restore PVC waits for its volume and the pod is not made yet.
    fn absence_known(&self, w: &Watches, kind: &'static str, ns: &str, name: &str) -> bool {
        ns == self.own_namespace && w.own_writes.caught_up::<Pod>(kind, ns, name, None)
    }

    /// The store's copy of `ns/name`, or None when the API server must be asked (store not
    /// synced, behind this controller's own write, or without the object).
    fn cached_get<K>(
        &self,
        kind: &'static str,
        store: impl Fn(&Watches) -> &Store<K>,
        ns: &str,
        name: &str,
    ) -> Option<Option<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let w = self.watches.as_ref().filter(|w| w.synced())?;
        let key = if ns.is_empty() {
            ObjectRef::new(name)
        } else {
            ObjectRef::new(name).within(ns)
        };
        // Absence of someone else's object is not trusted: one created moments ago (a target
        // PVC created just before its DataDownload) may not have reached the store yet, and
        // "not found" fails a restore.
        let Some(cached) = store(w).get(&key) else {
            return self.absence_known(w, kind, ns, name).then_some(None);
        };
        w.own_writes
            .caught_up(kind, ns, name, Some(cached.as_ref()))
            .then(|| Some((*cached).clone()))
    }

    fn wrote<K: Resource>(&self, kind: &'static str, written: &K) {
        if let Some(w) = &self.watches {
            w.own_writes.wrote(kind, written);
        }
    }
}

fn ignore_status<T>(result: Result<T, kube::Error>, code: u16) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == code => Ok(()),
        Err(err) => Err(err),
    }
}

impl RestoreCluster for KubeCluster {
    async fn get_pvc(&self, ns: &str, name: &str) -> OpResult<Option<PersistentVolumeClaim>> {
        if let Some(hit) = self.cached_get("pvc", |w| &w.pvcs, ns, name) {
            return Ok(hit);
        }
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(|e| OpError::kube("get", &format!("PVC {ns}/{name}"), e))
    }
    async fn create_pvc(&self, ns: &str, pvc: &PersistentVolumeClaim) -> OpResult<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let created = api.create(&PostParams::default(), pvc).await;
        if let Ok(written) = &created {
            self.wrote("pvc", written);
        }
        ignore_status(created, 409)
            .map_err(|e| OpError::kube("create", &format!("PVC {ns}/{name}"), e))
    }
    async fn delete_pvc(&self, ns: &str, name: &str) -> OpResult<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        ignore_status(api.delete(name, &DeleteParams::background()).await, 404)
            .map_err(|e| OpError::kube("delete", &format!("PVC {ns}/{name}"), e))
    }
    async fn patch_pvc(&self, ns: &str, name: &str, patch: &serde_json::Value) -> OpResult<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let written = api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| OpError::kube("patch", &format!("PVC {ns}/{name}"), e))?;
        self.wrote("pvc", &written);
        Ok(())
    }
    async fn get_pod(&self, ns: &str, name: &str) -> OpResult<Option<Pod>> {
        // Restore and backup pods are watched apart (by their labels); a pod absent from
        // one store may be in the other, and the backup pods' store may not be synced.
        let backup_pod = self.watches.as_ref().and_then(|w| {
            w.backup_pods_synced()
                .then(|| self.cached_get("pod", |w| &w.backup_pods, ns, name))
                .flatten()
        });
        if let Some(Some(pod)) = backup_pod {
            return Ok(Some(pod));
        }
        if let Some(hit) = self.cached_get("pod", |w| &w.pods, ns, name)
            && (hit.is_some() || backup_pod.is_some())
        {
            return Ok(hit);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(|e| OpError::kube("get", &format!("pod {ns}/{name}"), e))
    }
    async fn create_pod(&self, ns: &str, pod: &Pod) -> OpResult<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let created = api.create(&PostParams::default(), pod).await;
        if let Ok(written) = &created {
            self.wrote("pod", written);
        }
        ignore_status(created, 409)
            .map_err(|e| OpError::kube("create", &format!("pod {ns}/{name}"), e))
    }
    async fn delete_pod(&self, ns: &str, name: &str) -> OpResult<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        ignore_status(api.delete(name, &DeleteParams::background()).await, 404)
            .map_err(|e| OpError::kube("delete", &format!("pod {ns}/{name}"), e))
    }
    async fn get_pv(&self, name: &str) -> OpResult<Option<PersistentVolume>> {
        if let Some(hit) = self.cached_get("pv", |w| &w.pvs, "", name) {
            return Ok(hit);
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(|e| OpError::kube("get", &format!("PV {name}"), e))
    }
    async fn list_pvs(&self, label: &str, value: &str) -> OpResult<Vec<PersistentVolume>> {
        if let Some(w) = self.watches.as_ref().filter(|w| w.synced())
            && !w.own_writes.any_pending("pv", &w.pvs)
        {
            return Ok(w
                .pvs
                .state()
                .iter()
                .filter(|pv| {
                    pv.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(label))
                        .is_some_and(|v| v == value)
                })
                .map(|pv| (**pv).clone())
                .collect());
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.list(&ListParams::default().labels(&format!("{label}={value}")))
            .await
            .map(|l| l.items)
            .map_err(|e| OpError::kube("list", "PVs", e))
    }
    async fn patch_pv(&self, name: &str, patch: &serde_json::Value) -> OpResult<()> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let written = api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| OpError::kube("patch", &format!("PV {name}"), e))?;
        self.wrote("pv", &written);
        Ok(())
    }
    async fn delete_pv(&self, name: &str) -> OpResult<()> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        ignore_status(api.delete(name, &DeleteParams::background()).await, 404)
            .map_err(|e| OpError::kube("delete", &format!("PV {name}"), e))
    }
    async fn get_storage_class(&self, name: &str) -> OpResult<Option<StorageClass>> {
        if let Some(hit) = self.cached_get("storageclass", |w| &w.storage_classes, "", name) {
            return Ok(hit);
        }
        let api: Api<StorageClass> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(|e| OpError::kube("get", &format!("StorageClass {name}"), e))
    }
}
