//! How a pod's processes reach the API server. kubesim's own API server has no
//! authentication, so every pod uses the cluster's kubeconfig. On a real control plane a
//! kubelet projects a token of the pod's service account, bound to the pod, into
//! `/var/run/secrets/kubernetes.io/serviceaccount`; kubesim writes the same files into the
//! pod's `kube-api-access-*` volume and a kubeconfig with that token (pods are processes
//! here, not containers, so `KUBECONFIG` is how a client finds it). The API server's
//! authorizer then judges the pod's requests as the service account's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::PostParams;

use super::volume_matching::{name_of, namespace_of, uid_of};

#[derive(Debug, Clone, Default)]
pub enum PodAccess {
    /// Every pod uses `DATA_DIR/kubeconfig`, the cluster's own.
    #[default]
    ClusterKubeconfig,
    /// Each pod gets a token of its service account, as a kubelet projects one.
    ServiceAccountTokens {
        /// The API server's URL as pods reach it.
        server: String,
        /// The CA that signed the API server's certificate (PEM).
        ca_pem: String,
    },
}

/// A kubelet's default for projected tokens: one hour (plus the 7 s it adds).
const TOKEN_SECONDS: i64 = 3607;

/// The volume the ServiceAccount admission plugin adds: a projected serviceAccountToken.
fn token_volume(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.volumes.iter().flatten().find_map(|v| {
        let projected = v.projected.as_ref()?;
        projected
            .sources
            .iter()
            .flatten()
            .any(|s| s.service_account_token.is_some())
            .then_some(v.name.as_str())
    })
}

/// Gives the pod its credentials; returns the environment its containers get for them.
pub async fn provide(
    access: &PodAccess,
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    volume_dir: impl Fn(&str) -> Option<PathBuf>,
    cluster_kubeconfig: &Path,
) -> anyhow::Result<BTreeMap<String, String>> {
    let (server, ca_pem) = match access {
        PodAccess::ClusterKubeconfig => {
            return Ok(BTreeMap::from([(
                "KUBECONFIG".to_string(),
                cluster_kubeconfig.to_string_lossy().into_owned(),
            )]));
        }
        PodAccess::ServiceAccountTokens { server, ca_pem } => (server, ca_pem),
    };
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.automount_service_account_token) == Some(false)
        && token_volume(pod).is_none()
    {
        // No token for this pod: its clients are anonymous, as on a real node.
        return Ok(BTreeMap::new());
    }
    let account = spec
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default");
    let namespace = namespace_of(pod);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name_of(pod).into()),
                uid: Some(uid_of(pod).into()),
            }),
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("cannot get a token of service account {namespace}/{account}"))?
        .status
        .context("the token request has no status")?
        .token;
    if let Some(dir) = token_volume(pod).and_then(&volume_dir) {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(dir.join("token"), &token).await?;
        tokio::fs::write(dir.join("ca.crt"), ca_pem).await?;
        tokio::fs::write(dir.join("namespace"), namespace).await?;
    }
    let kubeconfig = pod_dir.join("kubeconfig");
    tokio::fs::write(
        &kubeconfig,
        kubeconfig_text(server, ca_pem, &token, namespace),
    )
    .await?;
    Ok(BTreeMap::from([
        (
            "KUBECONFIG".to_string(),
            kubeconfig.to_string_lossy().into_owned(),
        ),
        // What in-cluster clients look for, pointed at the real API server.
        ("KUBERNETES_SERVICE_HOST".to_string(), host_of(server)),
        ("KUBERNETES_SERVICE_PORT".to_string(), port_of(server)),
    ]))
}

fn host_of(server: &str) -> String {
    let rest = server.split("://").nth(1).unwrap_or(server);
    rest.rsplit_once(':').map_or(rest, |(h, _)| h).to_string()
}

fn port_of(server: &str) -> String {
    let rest = server.split("://").nth(1).unwrap_or(server);
    rest.rsplit_once(':')
        .map_or("443", |(_, p)| p)
        .trim_end_matches('/')
        .to_string()
}

fn kubeconfig_text(server: &str, ca_pem: &str, token: &str, namespace: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: pod
  user:
    token: {token}
contexts:
- name: pod
  context:
    cluster: cluster
    user: pod
    namespace: {namespace}
current-context: pod
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_url_splits_into_in_cluster_host_and_port() {
        assert_eq!(host_of("https://127.0.0.1:34567"), "127.0.0.1");
        assert_eq!(port_of("https://127.0.0.1:34567"), "34567");
        assert_eq!(port_of("https://kubernetes.default.svc"), "443");
    }

    #[test]
    fn the_admission_plugins_token_volume_is_found() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "kube-api-access-x2c4z", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt"}}]}},
            ]},
        }))
        .unwrap();
        assert_eq!(token_volume(&pod), Some("kube-api-access-x2c4z"));
    }
}
