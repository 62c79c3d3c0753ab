//! Label and field selectors, as in `?labelSelector=` and `?fieldSelector=`.

use serde_json::{Map, Value};

use crate::nodes::matching::set_operator_holds;

#[derive(Debug, Clone, PartialEq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: every requirement must hold (`,` is AND).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelRequirement>);

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/')
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_set(rest: &str, term: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("label selector term {term:?}: expected a set like (a,b)"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            if let Some(key) = term.strip_prefix('!') {
                reqs.push(LabelRequirement::NotExists(key.trim().to_string()));
                continue;
            }
            let key_end = term.find(|c| !is_key_char(c)).unwrap_or(term.len());
            let key = term[..key_end].to_string();
            if key.is_empty() {
                return Err(format!("label selector term {term:?}: missing key"));
            }
            let rest = term[key_end..].trim_start();
            let req = if rest.is_empty() {
                LabelRequirement::Exists(key)
            } else if let Some(v) = rest.strip_prefix("==") {
                LabelRequirement::Equals(key, v.trim().to_string())
            } else if let Some(v) = rest.strip_prefix("!=") {
                LabelRequirement::NotEquals(key, v.trim().to_string())
            } else if let Some(v) = rest.strip_prefix('=') {
                LabelRequirement::Equals(key, v.trim().to_string())
            } else if let Some(v) = rest.strip_prefix("notin") {
                LabelRequirement::NotIn(key, parse_set(v, term)?)
            } else if let Some(v) = rest.strip_prefix("in") {
                LabelRequirement::In(key, parse_set(v, term)?)
            } else {
                return Err(format!("label selector term {term:?}: unknown operator"));
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        // The set-based operators mean what they mean in a LabelSelector object.
        let set = |op, k: &str, vs: &[String]| set_operator_holds(op, get(k), vs) == Some(true);
        self.0.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelRequirement::In(k, vs) => set("In", k, vs),
            LabelRequirement::NotIn(k, vs) => set("NotIn", k, vs),
            LabelRequirement::Exists(k) => set("Exists", k, &[]),
            LabelRequirement::NotExists(k) => set("DoesNotExist", k, &[]),
        })
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(obj["metadata"]["labels"].as_object())
    }
}

/// A parsed field selector. Kubernetes supports only a few fields per resource
/// (metadata.name, metadata.namespace, spec.nodeName, status.phase, involvedObject.* …);
/// kubesim simplifies by accepting any dotted path, a missing field reading as "".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v)
            } else {
                return Err(format!(
                    "field selector term {term:?}: expected field=value or field!=value"
                ));
            };
            reqs.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The single `metadata.name=X` requirement, if that is all the selector says.
    pub fn exact_name(&self) -> Option<&str> {
        match self.0.as_slice() {
            [(path, true, value)] if path == "metadata.name" => Some(value),
            _ => None,
        }
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut cur = obj;
            for part in path.split('.') {
                cur = &cur[part];
            }
            let actual = match cur {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Value {
        json!({ "metadata": { "labels": v } })
    }

    #[test]
    fn label_operators() {
        let obj = labels(json!({"app": "web", "tier": "front", "env": "prod"}));
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches_object(&obj);
        assert!(ok("app=web"));
        assert!(ok("app==web"));
        assert!(!ok("app!=web"));
        assert!(ok("app in (web, db)"));
        assert!(!ok("app notin (web,db)"));
        assert!(ok("missing notin (x)"));
        assert!(ok("tier"));
        assert!(!ok("!tier"));
        assert!(ok("!missing"));
        assert!(ok("app=web,tier in (front),env"));
        assert!(!ok("app=web,env=dev"));
        assert!(ok("missing!=x"));
        assert!(ok(""));
    }

    #[test]
    fn label_selector_rejects_garbage() {
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "a"}, "spec": {}, "status": {"phase": "Running"}});
        let ok = |s: &str| FieldSelector::parse(s).unwrap().matches(&pod);
        assert!(ok("metadata.name=p"));
        assert!(ok("metadata.namespace==a,status.phase=Running"));
        assert!(ok("spec.nodeName="));
        assert!(!ok("spec.nodeName!="));
        assert!(!ok("status.phase!=Running"));
        assert_eq!(
            FieldSelector::parse("metadata.name=p")
                .unwrap()
                .exact_name(),
            Some("p")
        );
    }
}
