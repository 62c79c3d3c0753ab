//! Objects a fresh cluster has before anyone asks: the system namespaces.

use serde_json::json;

use crate::store::Store;

/// Namespaces every cluster starts with.
pub(crate) const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

pub fn create_system_namespaces(store: &Store) {
    let info = store
        .registry()
        .find("", "v1", "namespaces")
        .expect("namespaces are built in");
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
        if let Err(e) = store.create(&info, None, obj, false) {
            tracing::warn!(namespace = ns, error = %e, "cannot create a system namespace");
        }
    }
}
