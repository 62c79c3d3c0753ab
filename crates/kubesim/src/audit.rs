//! An opt-in request log, for tests that check what a client really asks of the API server
//! (for example that an RBAC role allows every request a controller makes).
//!
//! kubesim has no authentication or authorization. To tell clients apart, the log takes the
//! user from the request: the bearer token (`Authorization: Bearer NAME`, i.e. `token: NAME`
//! of a kubeconfig user) is taken as the user name; without one, the `User-Agent` header;
//! without either, `anonymous`. Recording is off until [`AuditLog::enable`] and costs nothing
//! then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::http::{HeaderMap, Method, header};

use crate::resources::Registry;

/// One API request, in RBAC's terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    /// Bearer token, else User-Agent, else `anonymous`.
    pub user: String,
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// `""` for the core group.
    pub api_group: String,
    /// Plural resource name, e.g. `pods`.
    pub resource: String,
    /// e.g. `status`, `log`, `binding`.
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// HTTP status of the response.
    pub code: u16,
    /// When the response was ready.
    pub at: SystemTime,
}

/// The request log of one API server (see [`crate::ApiServer::audit`]).
#[derive(Debug, Default)]
pub struct AuditLog {
    enabled: AtomicBool,
    records: Mutex<Vec<AuditRecord>>,
}

impl AuditLog {
    /// Starts recording resource requests (discovery and health paths are not recorded).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    pub fn disable(&self) {
        self.enabled.store(false, Ordering::SeqCst);
    }

    /// Everything recorded so far, in arrival order.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().expect("audit log").clone()
    }

    /// Drops what was recorded so far (recording stays on or off as it was).
    pub fn clear(&self) {
        self.records.lock().expect("audit log").clear();
    }

    /// The router's hook: records the request if recording is on and it addresses a resource.
    pub(crate) fn observe(
        &self,
        registry: &Registry,
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        code: u16,
    ) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        if let Some(mut record) = describe(registry, method, path, query) {
            record.user = user(headers);
            record.code = code;
            record.at = SystemTime::now();
            self.records.lock().expect("audit log").push(record);
        }
    }
}

/// Who sent the request: bearer token, else User-Agent, else `anonymous`.
pub fn user(headers: &HeaderMap) -> String {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let agent = || {
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .filter(|a| !a.is_empty())
    };
    bearer.or_else(agent).unwrap_or("anonymous").to_string()
}

/// The request in RBAC terms, or None for paths that are no resource (discovery, health,
/// OpenAPI). `user`, `code` and `at` are left empty.
pub fn describe(
    registry: &Registry,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
) -> Option<AuditRecord> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    // `namespaces/NS/RESOURCE/...` when RESOURCE is namespaced; else a cluster-scoped
    // resource (namespaces themselves included).
    let (namespace, resource, name, subresource) = match rest {
        ["namespaces", ns, resource, tail @ ..]
            if registry
                .find(group, version, resource)
                .is_some_and(|i| i.namespaced) =>
        {
            (Some(*ns), *resource, tail.first(), tail.get(1))
        }
        [resource, tail @ ..] => (None, *resource, tail.first(), tail.get(1)),
        [] => return None,
    };
    let watching = watch_path || query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let verb = match (method, name.is_some()) {
        (&Method::GET, _) if watching => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return None,
    };
    Some(AuditRecord {
        user: String::new(),
        verb: verb.to_string(),
        api_group: group.to_string(),
        resource: resource.to_string(),
        subresource: subresource.map(|s| s.to_string()),
        namespace: namespace.map(str::to_string),
        name: name.map(|s| s.to_string()),
        code: 0,
        at: SystemTime::UNIX_EPOCH,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn d(method: Method, path: &str, query: &[(&str, &str)]) -> AuditRecord {
        describe(&Registry::with_builtins(), &method, path, &q(query)).expect("a resource request")
    }

    #[test]
    fn verbs_follow_method_name_and_watch() {
        let path = "/api/v1/namespaces/velero/pods";
        assert_eq!(d(Method::GET, path, &[]).verb, "list");
        assert_eq!(d(Method::GET, path, &[("watch", "true")]).verb, "watch");
        assert_eq!(
            d(Method::GET, "/api/v1/watch/namespaces/velero/pods", &[]).verb,
            "watch"
        );
        assert_eq!(d(Method::POST, path, &[]).verb, "create");
        assert_eq!(d(Method::DELETE, path, &[]).verb, "deletecollection");
        let one = "/api/v1/namespaces/velero/pods/p1";
        assert_eq!(d(Method::GET, one, &[]).verb, "get");
        assert_eq!(d(Method::PUT, one, &[]).verb, "update");
        assert_eq!(d(Method::PATCH, one, &[]).verb, "patch");
        assert_eq!(d(Method::DELETE, one, &[]).verb, "delete");
    }

    #[test]
    fn group_namespace_resource_and_subresource() {
        let r = d(Method::GET, "/api/v1/namespaces/velero/pods/p1/log", &[]);
        assert_eq!(
            (
                r.api_group.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str()
            ),
            ("", Some("velero"), "pods")
        );
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("p1"), Some("log"))
        );
        let r = d(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/velero/leases/l",
            &[],
        );
        assert_eq!(
            (r.api_group.as_str(), r.resource.as_str()),
            ("coordination.k8s.io", "leases")
        );
        // Cluster-scoped: nodes, and namespaces themselves (with their subresource).
        let r = d(Method::GET, "/api/v1/nodes", &[]);
        assert_eq!((r.namespace, r.resource.as_str()), (None, "nodes"));
        let r = d(Method::PUT, "/api/v1/namespaces/velero/finalize", &[]);
        assert_eq!(r.resource, "namespaces");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("velero"), Some("finalize"))
        );
        // Discovery is no resource request.
        assert!(
            describe(
                &Registry::with_builtins(),
                &Method::GET,
                "/apis/velero.io/v1",
                &q(&[])
            )
            .is_none()
        );
        assert!(
            describe(
                &Registry::with_builtins(),
                &Method::GET,
                "/version",
                &q(&[])
            )
            .is_none()
        );
    }

    #[test]
    fn user_from_bearer_token_then_user_agent() {
        let mut h = HeaderMap::new();
        assert_eq!(user(&h), "anonymous");
        h.insert(header::USER_AGENT, "kubectl/v1.33".parse().unwrap());
        assert_eq!(user(&h), "kubectl/v1.33");
        h.insert(
            header::AUTHORIZATION,
            "Bearer ferry-controller".parse().unwrap(),
        );
        assert_eq!(user(&h), "ferry-controller");
    }

    #[test]
    fn nothing_is_recorded_until_enabled() {
        let log = AuditLog::default();
        let reg = Registry::with_builtins();
        let h = HeaderMap::new();
        log.observe(&reg, &Method::GET, "/api/v1/nodes", &q(&[]), &h, 200);
        assert!(log.records().is_empty());
        log.enable();
        log.observe(&reg, &Method::GET, "/api/v1/nodes", &q(&[]), &h, 200);
        assert_eq!(log.records().len(), 1);
        assert_eq!(log.records()[0].code, 200);
        log.clear();
        assert!(log.records().is_empty());
    }
}
