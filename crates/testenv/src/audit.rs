//! The real API server's audit log, read back: who asked for what and what they got. Tests
//! use it to prove that ferry's identities were allowed everything they asked for, and
//! benchmarks to count a controller's requests. kubesim's request log reads the same way
//! ([`Requests`]), so a test's assertions on requests hold on both clusters.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One completed request (`uri` is empty on kubesim, whose log keeps the request in RBAC's
/// terms only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub user: String,
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: u16,
    pub uri: String,
}

/// The events appended to a log since a point.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    start: u64,
}

impl AuditLog {
    /// From now on (what is in the file already is skipped).
    pub fn from_now(path: &Path) -> AuditLog {
        let start = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        AuditLog {
            path: path.to_path_buf(),
            start,
        }
    }

    /// The same log from its present end: only requests made from now on.
    pub fn from_here(&self) -> AuditLog {
        AuditLog::from_now(&self.path)
    }

    /// Every completed request since this log was opened.
    pub fn events(&self) -> anyhow::Result<Vec<AuditEvent>> {
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.start))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text.lines().filter_map(parse).collect())
    }
}

/// The requests a test cluster's API server completed: the real one's audit log since the
/// cluster was taken, or kubesim's request log (recording from the first service account
/// kubeconfig written, which is when ferry's identities start asking).
#[derive(Clone, Copy)]
pub enum Requests<'a> {
    Real(&'a AuditLog),
    Kubesim(&'a kubesim::audit::AuditLog),
}

impl Requests<'_> {
    pub fn events(&self) -> anyhow::Result<Vec<AuditEvent>> {
        match self {
            Requests::Real(log) => log.events(),
            Requests::Kubesim(log) => Ok(log
                .records()
                .into_iter()
                .map(|r| AuditEvent {
                    user: r.user,
                    verb: r.verb,
                    api_group: r.api_group,
                    resource: r.resource,
                    subresource: r.subresource,
                    namespace: r.namespace,
                    name: r.name,
                    code: r.code,
                    uri: String::new(),
                })
                .collect()),
        }
    }
}

fn parse(line: &str) -> Option<AuditEvent> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["stage"] != "ResponseComplete" {
        return None;
    }
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let object = &v["objectRef"];
    Some(AuditEvent {
        user: text(&v["user"]["username"])?,
        verb: text(&v["verb"])?,
        api_group: text(&object["apiGroup"]).unwrap_or_default(),
        resource: text(&object["resource"]).unwrap_or_default(),
        subresource: text(&object["subresource"]),
        namespace: text(&object["namespace"]),
        name: text(&object["name"]),
        code: v["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
        uri: text(&v["requestURI"]).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_requests_are_read_with_their_identity_and_code() {
        let line = r#"{"kind":"Event","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/velero/pods","verb":"create","user":{"username":"system:serviceaccount:velero:ferry-controller"},"objectRef":{"resource":"pods","namespace":"velero","name":"dd-0","apiVersion":"v1"},"responseStatus":{"code":403}}"#;
        let event = parse(line).unwrap();
        assert_eq!(event.user, "system:serviceaccount:velero:ferry-controller");
        assert_eq!(
            (event.verb.as_str(), event.resource.as_str()),
            ("create", "pods")
        );
        assert_eq!(event.api_group, "");
        assert_eq!(event.code, 403);
        let received = line.replace("ResponseComplete", "RequestReceived");
        assert_eq!(parse(&received), None);
    }
}
