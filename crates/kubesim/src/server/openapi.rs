//! A minimal OpenAPI v3 document set: no schemas, only each resource's PATCH operation
//! declaring the `fieldValidation` query parameter. That is what kubectl checks to decide
//! that the server validates fields itself, so `kubectl create/apply -f` work without
//! `--validate=false`. (kubesim accepts fieldValidation and does no schema validation.)

use serde_json::{Map, Value, json};

use crate::resources::Registry;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// GET /openapi/v3
pub fn root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = registry
        .all()
        .iter()
        .map(|r| (r.group.clone(), r.version.clone()))
        .collect();
    gvs.sort();
    gvs.dedup();
    for (g, v) in gvs {
        let p = gv_path(&g, &v);
        paths.insert(
            p.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash=kubesim") }),
        );
    }
    json!({ "paths": paths })
}

/// GET /openapi/v3/api/v1, /openapi/v3/apis/{group}/{version}
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for r in registry.all() {
        if r.group != group || r.version != version {
            continue;
        }
        let base = format!("/{}", gv_path(group, version));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        paths.insert(
            item,
            json!({
                "patch": {
                    "x-kubernetes-group-version-kind": {
                        "group": r.group, "version": r.version, "kind": r.kind,
                    },
                    "parameters": [
                        { "name": "fieldValidation", "in": "query", "schema": { "type": "string" } },
                        { "name": "dryRun", "in": "query", "schema": { "type": "string" } },
                        { "name": "fieldManager", "in": "query", "schema": { "type": "string" } },
                    ],
                    "responses": { "200": { "description": "OK" } },
                }
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes (kubesim)", "version": "v1.32.0" },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}
