//! Whether an object in the cluster already says everything ferry would write.
//!
//! The API server fills in defaults (a container's `terminationMessagePath`, a CRD's
//! `conversion`, `status`, ...) so a stored object is a superset of what was sent. ferry
//! rewrites an object only when one of the fields it sets differs; that is what makes a
//! second `ferry install` change nothing.

use serde_json::Value;

/// True when every field set in `desired` has the same value in `actual`.
/// Lists must have the same length and match element by element; a field ferry leaves empty
/// (`{}`, `[]`, null) matches an absent one, since the server drops empty values.
pub fn is_contained_in(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().all(|(key, value)| match have.get(key) {
                Some(existing) => is_contained_in(value, existing),
                None => is_empty(value),
            })
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_contained_in(w, h))
        }
        (want, Value::Null) => is_empty(want),
        (want, have) => want == have,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_contained_in;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_drift() {
        let desired = json!({"spec": {"containers": [{"name": "c", "image": "ferry:1"}]}});
        let stored = json!({"spec": {"containers": [{"name": "c", "image": "ferry:1",
            "terminationMessagePath": "/dev/termination-log"}], "dnsPolicy": "ClusterFirst"},
            "status": {}});
        assert!(is_contained_in(&desired, &stored));
        assert!(is_contained_in(&json!({"subresources": {}}), &json!({})));
    }

    #[test]
    fn a_changed_missing_or_extra_element_is_drift() {
        let desired = json!({"args": ["controller", "--namespace", "velero"]});
        assert!(!is_contained_in(
            &desired,
            &json!({"args": ["controller", "--namespace", "ferry"]})
        ));
        assert!(!is_contained_in(
            &desired,
            &json!({"args": ["controller", "--namespace"]})
        ));
        assert!(!is_contained_in(&desired, &json!({})));
        assert!(!is_contained_in(
            &json!({"replicas": 1}),
            &json!({"replicas": 2})
        ));
    }
}
