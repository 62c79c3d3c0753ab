//! The cluster operations the exposer and rebind need, behind a trait so that their logic is
//! unit-tested against an in-memory cluster (with injected failures, as Velero's exposer tests
//! do with fake clients), and runs against a real API server through [`KubeCluster`].

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

/// A failed cluster call; the text says which call on which object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl OpError {
    fn kube(verb: &str, what: &str, err: kube::Error) -> OpError {
        OpError(format!("cannot {verb} {what}: {err}"))
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
}

impl KubeCluster {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
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
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(|e| OpError::kube("get", &format!("PVC {ns}/{name}"), e))
    }
    async fn create_pvc(&self, ns: &str, pvc: &PersistentVolumeClaim) -> OpResult<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let name = pvc.metadata.name.clone().unwrap_or_default();
        ignore_status(api.create(&PostParams::default(), pvc).await, 409)
            .map_err(|e| OpError::kube("create", &format!("PVC {ns}/{name}"), e))
    }
    async fn delete_pvc(&self, ns: &str, name: &str) -> OpResult<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        ignore_status(api.delete(name, &DeleteParams::background()).await, 404)
            .map_err(|e| OpError::kube("delete", &format!("PVC {ns}/{name}"), e))
    }
    async fn get_pod(&self, ns: &str, name: &str) -> OpResult<Option<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(|e| OpError::kube("get", &format!("pod {ns}/{name}"), e))
    }
    async fn create_pod(&self, ns: &str, pod: &Pod) -> OpResult<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let name = pod.metadata.name.clone().unwrap_or_default();
        ignore_status(api.create(&PostParams::default(), pod).await, 409)
            .map_err(|e| OpError::kube("create", &format!("pod {ns}/{name}"), e))
    }
    async fn delete_pod(&self, ns: &str, name: &str) -> OpResult<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        ignore_status(api.delete(name, &DeleteParams::background()).await, 404)
            .map_err(|e| OpError::kube("delete", &format!("pod {ns}/{name}"), e))
    }
    async fn get_pv(&self, name: &str) -> OpResult<Option<PersistentVolume>> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(|e| OpError::kube("get", &format!("PV {name}"), e))
    }
    async fn list_pvs(&self, label: &str, value: &str) -> OpResult<Vec<PersistentVolume>> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.list(&ListParams::default().labels(&format!("{label}={value}")))
            .await
            .map(|l| l.items)
            .map_err(|e| OpError::kube("list", "PVs", e))
    }
    async fn patch_pv(&self, name: &str, patch: &serde_json::Value) -> OpResult<()> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(|e| OpError::kube("patch", &format!("PV {name}"), e))
    }
    async fn delete_pv(&self, name: &str) -> OpResult<()> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        ignore_status(api.delete(name, &DeleteParams::background()).await, 404)
            .map_err(|e| OpError::kube("delete", &format!("PV {name}"), e))
    }
    async fn get_storage_class(&self, name: &str) -> OpResult<Option<StorageClass>> {
        let api: Api<StorageClass> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(|e| OpError::kube("get", &format!("StorageClass {name}"), e))
    }
}
