//! Server-side printing: the meta.k8s.io/v1 `Table` kubectl asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. Name and Age for every resource,
//! plus a few columns per built-in resource and a CRD's additionalPrinterColumns
//! (evaluated with a simple JSONPath: dotted fields, `[n]` and `[?(@.k=="v")]`).

use serde_json::{Value, json};

use crate::resources::{PrinterColumn, ResourceInfo};

fn column_def(name: &str, type_: &str, format: &str, priority: i64, description: &str) -> Value {
    json!({
        "name": name, "type": type_, "format": format,
        "description": description, "priority": priority,
    })
}

pub fn column_definitions(info: &ResourceInfo) -> Value {
    let mut cols = vec![column_def(
        "Name",
        "string",
        "name",
        0,
        "Name must be unique within a namespace.",
    )];
    let mut age_added = false;
    for c in &info.printer_columns {
        if c.type_ == "date" {
            age_added |= c.json_path == ".metadata.creationTimestamp";
            cols.push(column_def(
                &c.name,
                "string",
                "",
                c.priority,
                &c.description,
            ));
        } else {
            cols.push(column_def(
                &c.name,
                &c.type_,
                "",
                c.priority,
                &c.description,
            ));
        }
    }
    if !age_added {
        cols.push(column_def(
            "Age",
            "string",
            "",
            0,
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        ));
    }
    json!(cols)
}

/// One row: the cells and the object as PartialObjectMetadata (includeObject=Metadata, the
/// default) or the full object (includeObject=Object).
pub fn row(info: &ResourceInfo, obj: &Value, include_object: &str) -> Value {
    let mut cells = vec![obj["metadata"]["name"].clone()];
    let mut age_added = false;
    for c in &info.printer_columns {
        if c.type_ == "date" {
            age_added |= c.json_path == ".metadata.creationTimestamp";
        }
        cells.push(cell(obj, c));
    }
    if !age_added {
        cells.push(json!(age(&obj["metadata"]["creationTimestamp"])));
    }
    let object = match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }),
    };
    json!({ "cells": cells, "object": object })
}

pub fn table(
    info: &ResourceInfo,
    objects: &[&Value],
    rv: &str,
    include_object: &str,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| row(info, o, include_object))
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": rv },
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = column_definitions(info);
    } else {
        t["columnDefinitions"] = json!([]);
    }
    t
}

fn cell(obj: &Value, c: &PrinterColumn) -> Value {
    let v = if let Some(special) = c.json_path.strip_prefix('@') {
        special_cell(obj, special)
    } else {
        json_path(obj, &c.json_path)
    };
    match (c.type_.as_str(), v) {
        ("date", v) => json!(age(&v)),
        (_, Value::Null) => json!("<none>"),
        (_, Value::Array(a)) => json!(
            a.iter()
                .map(|x| x
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ),
        (_, v @ Value::Object(_)) => json!(v.to_string()),
        (_, v) => v,
    }
}

/// Columns computed like the real printers do, not a plain field.
fn special_cell(obj: &Value, what: &str) -> Value {
    let status = &obj["status"];
    match what {
        "podReady" => {
            let total = obj["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = status["containerStatuses"]
                .as_array()
                .map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            json!(format!("{ready}/{total}"))
        }
        "podStatus" => {
            if !obj["metadata"]["deletionTimestamp"].is_null() {
                return json!("Terminating");
            }
            let waiting = status["containerStatuses"].as_array().and_then(|cs| {
                cs.iter().find_map(|c| {
                    c["state"]["waiting"]["reason"]
                        .as_str()
                        .or_else(|| c["state"]["terminated"]["reason"].as_str())
                        .map(str::to_string)
                })
            });
            let phase = status["phase"].as_str().unwrap_or("Pending");
            match waiting {
                Some(r) if phase != "Succeeded" && phase != "Failed" => json!(r),
                _ => json!(status["reason"].as_str().unwrap_or(phase)),
            }
        }
        "podRestarts" => json!(status["containerStatuses"].as_array().map_or(0, |s| {
            s.iter()
                .filter_map(|c| c["restartCount"].as_i64())
                .sum::<i64>()
        })),
        "nodeStatus" => {
            let ready = status["conditions"].as_array().and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "Ready")
                    .map(|c| c["status"] == "True")
            });
            let mut s = match ready {
                Some(true) => "Ready".to_string(),
                Some(false) | None => "NotReady".to_string(),
            };
            if obj["spec"]["unschedulable"] == true {
                s.push_str(",SchedulingDisabled");
            }
            json!(s)
        }
        "accessModes" => {
            let modes = obj["spec"]["accessModes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let short: Vec<&str> = modes
                .iter()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect();
            json!(short.join(","))
        }
        "pvClaim" => {
            let r = &obj["spec"]["claimRef"];
            match (r["namespace"].as_str(), r["name"].as_str()) {
                (Some(ns), Some(n)) => json!(format!("{ns}/{n}")),
                _ => json!(""),
            }
        }
        "dataCount" => json!(
            obj["data"].as_object().map_or(0, |m| m.len())
                + obj["binaryData"].as_object().map_or(0, |m| m.len())
        ),
        "involvedObject" => {
            let o = &obj["involvedObject"];
            json!(format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default().to_lowercase(),
                o["name"].as_str().unwrap_or_default()
            ))
        }
        "replicasReady" => json!(format!(
            "{}/{}",
            status["readyReplicas"].as_i64().unwrap_or(0),
            obj["spec"]["replicas"].as_i64().unwrap_or(1)
        )),
        "roleRef" => json!(format!(
            "{}/{}",
            obj["roleRef"]["kind"].as_str().unwrap_or_default(),
            obj["roleRef"]["name"].as_str().unwrap_or_default()
        )),
        _ => Value::Null,
    }
}

/// A simple JSONPath: `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`, `{.a.b}`, with
/// `\.` escaping a dot inside a key.
pub fn json_path(obj: &Value, path: &str) -> Value {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut cur = obj.clone();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let mut key = String::new();
            let mut chars = r.char_indices().peekable();
            let mut end = r.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            key.push(n);
                        }
                    }
                    '.' | '[' => {
                        end = i;
                        break;
                    }
                    _ => key.push(c),
                }
            }
            cur = cur.get(&key).cloned().unwrap_or(Value::Null);
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(close) = r.find(']') else {
                return Value::Null;
            };
            let inner = &r[..close];
            rest = &r[close + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let Some((field, want)) = filter.split_once("==") else {
                    return Value::Null;
                };
                let want = want.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .find(|x| {
                                let v = &x[field.trim()];
                                v.as_str() == Some(want)
                                    || serde_json::from_str::<Value>(want).ok().as_ref() == Some(v)
                            })
                            .cloned()
                    })
                    .unwrap_or(Value::Null);
            } else if inner == "*" {
                // Keep the array as is.
            } else if let Ok(i) = inner.parse::<usize>() {
                cur = cur.get(i).cloned().unwrap_or(Value::Null);
            } else {
                let key = inner.trim_matches('\'').trim_matches('"');
                cur = cur.get(key).cloned().unwrap_or(Value::Null);
            }
        } else {
            return Value::Null;
        }
    }
    cur
}

/// kubectl's short human duration: 45s, 5m12s, 3h, 2d, …
pub fn age(ts: &Value) -> String {
    let Some(t) = ts
        .as_str()
        .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
    else {
        return "<unknown>".to_string();
    };
    let secs = k8s_openapi::jiff::Timestamp::now()
        .duration_since(t)
        .as_secs()
        .max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        let hh = h % 24;
        if hh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{hh}h")
        }
    } else {
        format!("{d}d")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_forms() {
        let obj = json!({
            "metadata": {"labels": {"topology.kubernetes.io/zone": "z1"}},
            "status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
            "spec": {"items": [{"n": 1}, {"n": 2}]}
        });
        assert_eq!(json_path(&obj, ".spec.items[1].n"), json!(2));
        assert_eq!(
            json_path(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            json!("True")
        );
        assert_eq!(
            json_path(&obj, r".metadata.labels.topology\.kubernetes\.io/zone"),
            json!("z1")
        );
        assert_eq!(json_path(&obj, "{.spec.missing}"), Value::Null);
    }
}
