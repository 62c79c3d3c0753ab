//! Kubeconfig files for the real control plane's clients, credentials embedded so a file
//! can be handed to kubectl, a test or a pod on its own.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// How a kubeconfig's user authenticates.
pub enum Credentials<'a> {
    /// A client certificate and its key (PEM).
    Certificate { cert_pem: &'a str, key_pem: &'a str },
    /// A bearer token (a service account's).
    Token(&'a str),
}

/// Writes a kubeconfig for `server` (trusting `ca_pem`) atomically: a client polling for the
/// file never reads half of it.
pub fn write(
    path: &Path,
    server: &str,
    ca_pem: &str,
    credentials: Credentials<'_>,
    namespace: &str,
) -> anyhow::Result<()> {
    let user = match credentials {
        Credentials::Certificate { cert_pem, key_pem } => serde_json::json!({
            "client-certificate-data": STANDARD.encode(cert_pem),
            "client-key-data": STANDARD.encode(key_pem),
        }),
        Credentials::Token(token) => serde_json::json!({ "token": token }),
    };
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": server,
            "certificate-authority-data": STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": "testenv", "user": user}],
        "contexts": [{"name": "testenv", "context": {
            "cluster": "testenv", "user": "testenv", "namespace": namespace,
        }}],
        "current-context": "testenv",
    });
    let text = serde_yaml_ng::to_string(&config)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp-testenv");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A client from a kubeconfig file.
pub async fn client(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("kubeconfig {} is not usable", path.display()))?;
    Ok(kube::Client::try_from(config)?)
}
