//! Request bodies in Kubernetes' protobuf encoding, read into the JSON the rest of the server
//! works with. kubectl's `create namespace|secret|configmap|serviceaccount` subcommands send
//! `application/vnd.kubernetes.protobuf` for these built-in kinds; kubesim reads those kinds
//! (the fields those commands can set) and answers every other protobuf body as
//! kube-apiserver answers a content type a resource does not take: 415 UnsupportedMediaType.
//!
//! The encoding: the 4 bytes `k8s\0`, then a `runtime.Unknown` message whose `typeMeta`
//! names the kind and whose `raw` holds the object's own message (generated.proto of
//! k8s.io/api, proto2). Field numbers below are those of k8s.io/api v1.34.

use std::collections::BTreeMap;

use base64::Engine;
use prost::Message;
use serde_json::{Value, json};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    type_: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceAccount {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(bool, optional, tag = "4")]
    automount_service_account_token: Option<bool>,
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ProtobufError {
    /// Not the envelope, or a message that does not parse.
    Malformed(String),
    /// A kind kubesim does not read from protobuf.
    UnsupportedKind(String),
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    let mut out = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_string(), value);
    };
    if let Some(name) = meta.name.filter(|s| !s.is_empty()) {
        put("name", json!(name));
    }
    if let Some(name) = meta.generate_name.filter(|s| !s.is_empty()) {
        put("generateName", json!(name));
    }
    if let Some(namespace) = meta.namespace.filter(|s| !s.is_empty()) {
        put("namespace", json!(namespace));
    }
    if !meta.labels.is_empty() {
        put("labels", json!(meta.labels));
    }
    if !meta.annotations.is_empty() {
        put("annotations", json!(meta.annotations));
    }
    if !meta.finalizers.is_empty() {
        put("finalizers", json!(meta.finalizers));
    }
    Value::Object(out)
}

fn base64_map(map: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    map.into_iter()
        .map(|(k, v)| (k, engine.encode(v)))
        .collect()
}

fn malformed(e: prost::DecodeError) -> ProtobufError {
    ProtobufError::Malformed(e.to_string())
}

/// The JSON object a protobuf request body holds.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let message = body.strip_prefix(MAGIC).ok_or_else(|| {
        ProtobufError::Malformed(
            "the body does not start with the protobuf prefix \"k8s\\0\"".into(),
        )
    })?;
    let unknown = Unknown::decode(message).map_err(malformed)?;
    if unknown
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(ProtobufError::Malformed(format!(
            "content encoding {:?} is not supported",
            unknown.content_encoding
        )));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let raw = raw.as_slice();
    let mut object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns = Namespace::decode(raw).map_err(malformed)?;
            json!({"metadata": metadata(ns.metadata)})
        }
        ("v1", "Secret") => {
            let s = Secret::decode(raw).map_err(malformed)?;
            let mut v = json!({"metadata": metadata(s.metadata)});
            if !s.data.is_empty() {
                v["data"] = json!(base64_map(s.data));
            }
            if !s.string_data.is_empty() {
                v["stringData"] = json!(s.string_data);
            }
            if let Some(t) = s.type_.filter(|t| !t.is_empty()) {
                v["type"] = json!(t);
            }
            if let Some(i) = s.immutable {
                v["immutable"] = json!(i);
            }
            v
        }
        ("v1", "ConfigMap") => {
            let c = ConfigMap::decode(raw).map_err(malformed)?;
            let mut v = json!({"metadata": metadata(c.metadata)});
            if !c.data.is_empty() {
                v["data"] = json!(c.data);
            }
            if !c.binary_data.is_empty() {
                v["binaryData"] = json!(base64_map(c.binary_data));
            }
            if let Some(i) = c.immutable {
                v["immutable"] = json!(i);
            }
            v
        }
        ("v1", "ServiceAccount") => {
            let a = ServiceAccount::decode(raw).map_err(malformed)?;
            let mut v = json!({"metadata": metadata(a.metadata)});
            if let Some(m) = a.automount_service_account_token {
                v["automountServiceAccountToken"] = json!(m);
            }
            v
        }
        _ => {
            return Err(ProtobufError::UnsupportedKind(format!(
                "{api_version} {kind}"
            )));
        }
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
        };
        [MAGIC.to_vec(), unknown.encode_to_vec()].concat()
    }

    fn meta(name: &str, namespace: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: BTreeMap::from([("app".into(), "x".into())]),
            ..Default::default()
        })
    }

    #[test]
    fn a_secret_is_read_with_its_bytes_as_base64() {
        let secret = Secret {
            metadata: meta("creds", "velero"),
            data: BTreeMap::from([("key".into(), b"\x00\xffbytes".to_vec())]),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "creds", "namespace": "velero", "labels": {"app": "x"}},
                   "data": {"key": "AP9ieXRlcw=="}})
        );
    }

    #[test]
    fn a_configmap_and_a_namespace_are_read() {
        let cm = ConfigMap {
            metadata: meta("settings", "app"),
            data: BTreeMap::from([("a".into(), "1".into())]),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(v["data"], json!({"a": "1"}));
        assert_eq!(v["metadata"]["name"], "settings");
        let ns = Namespace {
            metadata: Some(ObjectMeta {
                name: Some("velero".into()),
                ..Default::default()
            }),
        };
        let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "velero"}})
        );
    }

    #[test]
    fn other_kinds_and_garbage_are_refused() {
        assert_eq!(
            decode(&envelope("apps/v1", "Deployment", vec![])),
            Err(ProtobufError::UnsupportedKind("apps/v1 Deployment".into()))
        );
        assert!(matches!(decode(b"{}"), Err(ProtobufError::Malformed(_))));
        assert!(matches!(
            decode(b"k8s\0\xff\xff\xff"),
            Err(ProtobufError::Malformed(_))
        ));
    }
}
