//! API errors, rendered as metav1 `Status` objects the way the real API server words them,
//! so that kubectl and kube-rs classify them (NotFound, AlreadyExists, Conflict, …) correctly.

use serde_json::{Value, json};

use crate::resources::ResourceInfo;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, info: &ResourceInfo, name: &str) -> Self {
        let mut details = json!({ "name": name, "kind": info.plural });
        if !info.group.is_empty() {
            details["group"] = json!(info.group);
        }
        self.details = Some(details);
        self
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", info.qualified_name(), name),
        )
        .with_details(info, name)
    }

    /// A 404 for a path that names no served resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        ApiError {
            details: Some(json!({ "name": ns, "kind": "namespaces" })),
            ..Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
        }
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", info.qualified_name(), name),
        )
        .with_details(info, name)
    }

    pub fn conflict(info: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                info.qualified_name(),
                name,
                why
            ),
        )
        .with_details(info, name)
    }

    pub fn stale(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with one cause: `field` is a path like `metadata.name`.
    pub fn invalid(info: &ResourceInfo, name: &str, field: &str, why: &str) -> Self {
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{} \"{}\" is invalid: {}: {}", info.kind, name, field, why),
        )
        .with_details(info, name);
        if let Some(d) = e.details.as_mut() {
            d["causes"] =
                json!([{ "reason": "FieldValueInvalid", "message": why, "field": field }]);
        }
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            // kube-apiserver's wording; kubesim reads protobuf only for a few core kinds.
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json, application/yaml (got {content_type})"
            ),
        )
    }

    /// 410 for a watch or list from a resourceVersion older than the kept history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}
