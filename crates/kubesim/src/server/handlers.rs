//! Request routing and the REST verbs: get, list, watch, create, update, patch, delete,
//! deletecollection, and the status / binding / finalize subresources.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::watch::{WatchParams, watch_response};
use super::{Repr, ServerState, discovery, openapi, table};
use crate::convert::{served, to_storage};
use crate::error::ApiError;
use crate::patch::{PatchType, apply_patch, parse_apply_body};
use crate::resources::ResourceInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{DeleteOptions, Propagation, Scope, meta_str};

type Query = HashMap<String, String>;

/// The resource a request addresses.
struct Target {
    info: Arc<ResourceInfo>,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    watch_path: bool,
}

pub(crate) async fn handle(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Query = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let result = dispatch(&state, &method, uri.path(), &query, &headers, body);
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, path = uri.path(), code = e.code, reason = e.reason, "request failed");
            json_response(e.code, &e.to_status())
        }
    };
    let (registry, code) = (state.store.registry(), response.status().as_u16());
    state
        .audit
        .observe(registry, &method, uri.path(), &query, &headers, code);
    response
}

pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    bytes_response(code, serde_json::to_vec(body).expect("json"))
}

fn bytes_response(code: u16, body: Vec<u8>) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("response")
}

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn dispatch(
    state: &Arc<ServerState>,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let registry = state.store.registry();
    let get_only = |doc: Option<Value>| -> Result<Response, ApiError> {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on {path}"
            )));
        }
        doc.map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::no_route(path))
    };
    match segs.as_slice() {
        ["version"] => get_only(Some(discovery::version())),
        ["healthz"] | ["readyz"] | ["livez"] => Ok(Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("ok"))
            .expect("response")),
        ["api"] => get_only(Some(discovery::core_versions())),
        ["apis"] => get_only(Some(discovery::group_list(registry))),
        ["api", "v1"] => get_only(discovery::resource_list(registry, "", "v1")),
        ["apis", group] => get_only(discovery::group(registry, group)),
        ["apis", group, version] => get_only(discovery::resource_list(registry, group, version)),
        ["openapi", "v3"] => get_only(Some(openapi::root(registry))),
        ["openapi", "v3", "api", version] => {
            get_only(openapi::group_version(registry, "", version))
        }
        ["openapi", "v3", "apis", group, version] => {
            get_only(openapi::group_version(registry, group, version))
        }
        ["api", "v1", rest @ ..] => {
            let t = target(state, "", "v1", rest, path)?;
            serve(state, method, t, query, headers, body)
        }
        ["apis", group, version, rest @ ..] => {
            let t = target(state, group, version, rest, path)?;
            serve(state, method, t, query, headers, body)
        }
        _ => Err(ApiError::no_route(path)),
    }
}

fn target(
    state: &ServerState,
    group: &str,
    version: &str,
    rest: &[&str],
    path: &str,
) -> Result<Target, ApiError> {
    let registry = state.store.registry();
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let namespaced_resource = |plural: &str| {
        registry
            .find(group, version, plural)
            .filter(|i| i.namespaced)
    };
    let (ns, resource, name, sub) = match rest {
        ["namespaces", ns, resource, tail @ ..] if namespaced_resource(resource).is_some() => {
            (Some(ns.to_string()), *resource, tail.first(), tail.get(1))
        }
        [resource, tail @ ..] => (None, *resource, tail.first(), tail.get(1)),
        [] => return Err(ApiError::no_route(path)),
    };
    let info = registry
        .find(group, version, resource)
        .ok_or_else(|| ApiError::no_route(path))?;
    if info.namespaced && ns.is_none() && name.is_some() {
        return Err(ApiError::no_route(path));
    }
    if let Some(sub) = sub
        && !info.subresources.iter().any(|s| s == sub)
    {
        return Err(ApiError::no_route(path));
    }
    Ok(Target {
        info,
        ns,
        name: name.map(|s| s.to_string()),
        sub: sub.map(|s| s.to_string()),
        watch_path,
    })
}

fn repr(headers: &HeaderMap, query: &Query) -> Repr {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    for part in accept.split(',') {
        let part = part.trim();
        if part.contains("as=Table") {
            return Repr::Table {
                include_object: query
                    .get("includeObject")
                    .cloned()
                    .unwrap_or_else(|| "Metadata".to_string()),
            };
        }
        if part.contains("as=PartialObjectMetadata") {
            return Repr::PartialMetadata;
        }
        if part.starts_with("application/json") || part.starts_with("*/*") {
            return Repr::Json;
        }
    }
    Repr::Json
}

fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.contains("protobuf") {
        return super::protobuf::decode(body).map_err(|e| match e {
            super::protobuf::ProtobufError::UnsupportedKind(_) => {
                ApiError::unsupported_media_type(ct)
            }
            super::protobuf::ProtobufError::Malformed(why) => {
                ApiError::bad_request(format!("the request body is not valid protobuf: {why}"))
            }
        });
    }
    if ct.contains("yaml") {
        return serde_yaml_ng::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
        });
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn flag(query: &Query, key: &str) -> bool {
    query
        .get(key)
        .is_some_and(|v| v == "true" || v == "1" || v.is_empty())
}

fn selectors(query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unable to parse fieldSelector: {e}")))?;
    Ok((labels, fields))
}

fn serve(
    state: &Arc<ServerState>,
    method: &Method,
    t: Target,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let dry_run = query.contains_key("dryRun");
    let ns = t.ns.clone().unwrap_or_default();
    let info = t.info.clone();
    // Where the objects live (differs for events.k8s.io, stored as core/v1 events).
    let sinfo = crate::convert::storage_info(&info).unwrap_or_else(|| (*info).clone());
    let watching = t.watch_path || flag(query, "watch");
    let repr = repr(headers, query);
    match (method.clone(), t.name.as_deref(), t.sub.as_deref()) {
        (Method::GET, None, None) if watching => watch(state, &t, query, repr),
        (Method::GET, Some(name), None) if watching => {
            let mut q = query.clone();
            q.insert("fieldSelector".into(), format!("metadata.name={name}"));
            watch(state, &t, &q, repr)
        }
        (Method::GET, None, None) => list(state, &t, query, &repr),
        (Method::POST, None, None) => {
            let obj = to_storage(&info, decode_body(headers, &body)?);
            let created = state.store.create(&sinfo, t.ns.as_deref(), obj, dry_run)?;
            Ok(object_response(201, &info, &created, &repr))
        }
        (Method::DELETE, None, None) => delete_collection(state, &t, query, headers, &body),
        (Method::GET, Some(name), None | Some("status")) => {
            let obj = state
                .store
                .get(&sinfo, &ns, name)
                .ok_or_else(|| ApiError::not_found(&info, name))?;
            Ok(object_response(200, &info, &obj, &repr))
        }
        (Method::PUT, Some(name), None | Some("status")) => {
            let obj = to_storage(&info, decode_body(headers, &body)?);
            let scope = if t.sub.is_some() {
                Scope::Status
            } else {
                Scope::Main
            };
            let updated = state.store.update(&sinfo, &ns, name, obj, scope, dry_run)?;
            Ok(object_response(200, &info, &updated, &repr))
        }
        (Method::PATCH, Some(name), None | Some("status")) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let patch_type = PatchType::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            if patch_type == PatchType::Strategic
                && !info.group.is_empty()
                && is_custom(state, &info)
            {
                return Err(ApiError::unsupported_media_type(
                    "strategic merge patch is not supported for custom resources; use a merge patch",
                ));
            }
            if patch_type == PatchType::Apply {
                // Validate the body up front so a bad body is a 400, not a 500.
                parse_apply_body(&body).map_err(ApiError::bad_request)?;
            }
            let scope = if t.sub.is_some() {
                Scope::Status
            } else {
                Scope::Main
            };
            let existed = state.store.get(&sinfo, &ns, name).is_some();
            let patched = state.store.patch(
                &sinfo,
                &ns,
                name,
                |old| {
                    let new = apply_patch(&served(&info, old), patch_type, &body)
                        .map_err(ApiError::bad_request)?;
                    Ok(to_storage(&info, new))
                },
                scope,
                patch_type == PatchType::Apply,
                dry_run,
            )?;
            let code = if existed { 200 } else { 201 };
            Ok(object_response(code, &info, &patched, &repr))
        }
        (Method::DELETE, Some(name), None) => {
            let opts = delete_options(query, headers, &body)?;
            let deleted = state.store.delete(&sinfo, &ns, name, &opts)?;
            Ok(object_response(200, &info, &deleted.object, &repr))
        }
        (Method::POST, Some(name), Some("binding")) => {
            let binding = decode_body(headers, &body)?;
            bind_pod(state, &info, &ns, name, &binding, dry_run)
        }
        (Method::PUT, Some(name), Some("finalize")) => {
            let obj = decode_body(headers, &body)?;
            let finalizers = obj["spec"]["finalizers"].clone();
            let updated = state.store.patch(
                &info,
                &ns,
                name,
                |old| {
                    let mut new = old.clone();
                    new["spec"]["finalizers"] = if finalizers.is_null() {
                        json!([])
                    } else {
                        finalizers
                    };
                    Ok(new)
                },
                Scope::Main,
                false,
                dry_run,
            )?;
            Ok(object_response(200, &info, &updated, &repr))
        }
        (m, _, _) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on {}",
            info.qualified_name()
        ))),
    }
}

fn is_custom(state: &ServerState, info: &ResourceInfo) -> bool {
    let builtin_groups = [
        "apps",
        "batch",
        "storage.k8s.io",
        "coordination.k8s.io",
        "rbac.authorization.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
    ];
    let _ = state;
    !builtin_groups.contains(&info.group.as_str())
}

fn object_response(code: u16, info: &ResourceInfo, obj: &Value, repr: &Repr) -> Response {
    let obj = served(info, obj);
    match repr {
        Repr::Json => json_response(code, &obj),
        Repr::Table { include_object } => {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            json_response(code, &table::table(info, &[&obj], rv, include_object, true))
        }
        Repr::PartialMetadata => json_response(
            code,
            &json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }),
        ),
    }
}

/// Continue tokens are the hex of "namespace/name" of the last item returned.
/// Simplification: pages are not a consistent snapshot; later pages see later changes.
fn encode_continue(ns: &str, name: &str) -> String {
    hex::encode(format!("{ns}/{name}"))
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let raw = String::from_utf8(hex::decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let (ns, name) = raw.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

fn list(
    state: &Arc<ServerState>,
    t: &Target,
    query: &Query,
    repr: &Repr,
) -> Result<Response, ApiError> {
    let info = &t.info;
    let (labels, fields) = selectors(query)?;
    let sinfo = crate::convert::storage_info(info).unwrap_or_else(|| (**info).clone());
    let (objects, rv) = state.store.list(&sinfo, t.ns.as_deref());
    let after = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(|c| decode_continue(c))
        .transpose()?;
    let mut selected: Vec<&Arc<Value>> = objects
        .iter()
        .filter(|o| {
            after.as_ref().is_none_or(|(ns, name)| {
                (meta_str(o, "namespace"), meta_str(o, "name")) > (ns.as_str(), name.as_str())
            })
        })
        .filter(|o| labels.matches_object(o) && fields.matches(o))
        .collect();
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut cont = None;
    let mut remaining = 0;
    if limit > 0 && selected.len() > limit {
        remaining = selected.len() - limit;
        selected.truncate(limit);
        let last = selected.last().expect("non-empty");
        cont = Some(encode_continue(
            meta_str(last, "namespace"),
            meta_str(last, "name"),
        ));
    }
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some(c) = &cont {
        metadata["continue"] = json!(c);
        metadata["remainingItemCount"] = json!(remaining);
    }
    match repr {
        Repr::Table { include_object } => {
            let served: Vec<std::borrow::Cow<'_, Value>> =
                selected.iter().map(|o| served(info, o)).collect();
            let refs: Vec<&Value> = served.iter().map(|c| c.as_ref()).collect();
            let mut t = table::table(info, &refs, &rv.to_string(), include_object, true);
            t["metadata"] = metadata;
            Ok(json_response(200, &t))
        }
        Repr::PartialMetadata => {
            let items: Vec<Value> = selected
                .iter()
                .map(|o| {
                    json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    })
                })
                .collect();
            Ok(json_response(
                200,
                &json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata,
                    "items": items,
                }),
            ))
        }
        Repr::Json => {
            // Written item by item: a large list is never copied as a whole.
            let mut buf = Vec::with_capacity(256 + selected.len() * 512);
            buf.extend_from_slice(b"{\"kind\":");
            serde_json::to_writer(&mut buf, &format!("{}List", info.kind)).expect("json");
            buf.extend_from_slice(b",\"apiVersion\":");
            serde_json::to_writer(&mut buf, &info.api_version()).expect("json");
            buf.extend_from_slice(b",\"metadata\":");
            serde_json::to_writer(&mut buf, &metadata).expect("json");
            buf.extend_from_slice(b",\"items\":[");
            for (i, o) in selected.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                serde_json::to_writer(&mut buf, served(info, o).as_ref()).expect("json");
            }
            buf.extend_from_slice(b"]}");
            Ok(bytes_response(200, buf))
        }
    }
}

fn watch(
    state: &Arc<ServerState>,
    t: &Target,
    query: &Query,
    repr: Repr,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(query)?;
    let send_initial_events = flag(query, "sendInitialEvents");
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let since = if send_initial_events || rv.is_empty() || rv == "0" {
        None
    } else {
        Some(rv.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {rv:?}: not a number"))
        })?)
    };
    // Without timeoutSeconds the real server picks 30-60 minutes.
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(1800);
    let params = WatchParams {
        ns: t.ns.clone(),
        labels,
        fields,
        since,
        bookmarks: flag(query, "allowWatchBookmarks"),
        send_initial_events,
        timeout: Duration::from_secs(timeout),
        repr,
    };
    watch_response(state.clone(), t.info.clone(), params)
}

fn delete_options(
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeleteOptions, ApiError> {
    let body_opts = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        decode_body(headers, body)?
    };
    let policy = query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| body_opts["propagationPolicy"].as_str().map(str::to_string));
    let orphan = body_opts["orphanDependents"].as_bool() == Some(true)
        || query.get("orphanDependents").is_some_and(|v| v == "true");
    let propagation = match policy.as_deref() {
        Some("Orphan") => Propagation::Orphan,
        Some("Foreground") => Propagation::Foreground,
        Some("Background") | None if !orphan => Propagation::Background,
        None => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Orphan, Background, Foreground"
            )));
        }
    };
    let dry_run = query.contains_key("dryRun")
        || body_opts["dryRun"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    Ok(DeleteOptions {
        propagation,
        precondition_uid: body_opts["preconditions"]["uid"]
            .as_str()
            .map(str::to_string),
        precondition_rv: body_opts["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run,
    })
}

fn delete_collection(
    state: &Arc<ServerState>,
    t: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = &t.info;
    let (labels, fields) = selectors(query)?;
    let opts = delete_options(query, headers, body)?;
    let sinfo = crate::convert::storage_info(info).unwrap_or_else(|| (**info).clone());
    let (objects, _) = state.store.list(&sinfo, t.ns.as_deref());
    let mut items = Vec::new();
    for o in objects
        .iter()
        .filter(|o| labels.matches_object(o) && fields.matches(o))
    {
        match state
            .store
            .delete(info, meta_str(o, "namespace"), meta_str(o, "name"), &opts)
        {
            Ok(d) => items.push((*d.object).clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version(),
            "metadata": { "resourceVersion": state.store.current_rv().to_string() },
            "items": items,
        }),
    ))
}

/// pods/binding: sets spec.nodeName once and the PodScheduled condition, as the real
/// binding subresource does.
fn bind_pod(
    state: &Arc<ServerState>,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    binding: &Value,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let node = binding["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            info,
            name,
            "target.name",
            "Required value: a Binding must name its target node",
        ));
    }
    state.store.patch(
        info,
        ns,
        name,
        |old| {
            if !old["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::conflict(
                    info,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let current = old["spec"]["nodeName"].as_str().unwrap_or_default();
            if !current.is_empty() {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!("pod {name} is already assigned to node {current:?}"),
                ));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            let condition = json!({
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": null,
                "lastTransitionTime": crate::store::now_rfc3339(),
            });
            let conditions = new["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conditions: Vec<Value> = conditions
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conditions.push(condition);
            new["status"]["conditions"] = json!(conditions);
            Ok(new)
        },
        Scope::Whole,
        false,
        dry_run,
    )?;
    Ok(json_response(
        201,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 201,
        }),
    ))
}
