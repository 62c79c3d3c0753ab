//! The kubeconfig file kubectl and other clients use to reach the simulated cluster.

use std::io::Write;
use std::path::Path;

/// Writes the kubeconfig atomically (a temporary file renamed into place), so a client
/// polling for it never reads half a file.
pub fn write(path: &Path, server_url: &str) -> std::io::Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: {server_url}
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: kubesim
    namespace: default
current-context: kubesim
users:
- name: kubesim
  user: {{}}
preferences: {{}}
"
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp-kubesim");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
