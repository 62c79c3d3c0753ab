//! Kubernetes label selectors (`matchLabels` + `matchExpressions`), as used by `nodeSelector` in
//! `loadConcurrency.perNodeConfig` and `loadAffinity`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A label selector. Every `matchLabels` pair and every expression must hold (logical AND);
/// an empty selector matches every node, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operators a Kubernetes `LabelSelector` accepts (`Gt`/`Lt` exist only for node affinity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl SelectorOperator {
    pub const ALL: [(&'static str, SelectorOperator); 4] = [
        ("In", SelectorOperator::In),
        ("NotIn", SelectorOperator::NotIn),
        ("Exists", SelectorOperator::Exists),
        ("DoesNotExist", SelectorOperator::DoesNotExist),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, op)| *op)
    }

    /// `In` and `NotIn` need values; `Exists` and `DoesNotExist` must have none.
    pub fn takes_values(self) -> bool {
        matches!(self, SelectorOperator::In | SelectorOperator::NotIn)
    }

    /// Whether a label's value (`None`: the object has no such label) satisfies this operator
    /// with these values. ferry's one copy of the operators' meaning: selectors here and the
    /// StorageClass `allowedTopologies` check in ferry-controller's placement use it.
    pub fn holds(self, value: Option<&String>, values: &[String]) -> bool {
        match self {
            SelectorOperator::In => value.is_some_and(|v| values.contains(v)),
            // As in Kubernetes, an object without the label satisfies NotIn.
            SelectorOperator::NotIn => value.is_none_or(|v| !values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl LabelSelector {
    /// Whether a node (or any object) with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

impl LabelSelectorRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.operator.holds(labels.get(&self.key), &self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = LabelSelector::default();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = LabelSelector {
            match_labels: labels(&[("env", "prod"), ("disk", "ssd")]),
            match_expressions: vec![],
        };
        assert!(s.matches(&labels(&[("env", "prod"), ("disk", "ssd"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("disk", "hdd")])));
    }

    #[test]
    fn operators() {
        use SelectorOperator::*;
        let node = labels(&[("kubernetes.io/hostname", "node-2"), ("zone", "a")]);
        assert!(expr("kubernetes.io/hostname", In, &["node-1", "node-2"]).matches(&node));
        assert!(!expr("kubernetes.io/hostname", In, &["node-1"]).matches(&node));
        assert!(!expr("missing", In, &["x"]).matches(&node));
        assert!(expr("zone", NotIn, &["b"]).matches(&node));
        assert!(!expr("zone", NotIn, &["a"]).matches(&node));
        assert!(expr("missing", NotIn, &["a"]).matches(&node));
        assert!(expr("zone", Exists, &[]).matches(&node));
        assert!(!expr("missing", Exists, &[]).matches(&node));
        assert!(expr("critical-workload", DoesNotExist, &[]).matches(&node));
        assert!(!expr("zone", DoesNotExist, &[]).matches(&node));
    }

    #[test]
    fn operators_on_a_value() {
        use SelectorOperator::*;
        let values = ["a".to_string(), "b".to_string()];
        let (a, c) = ("a".to_string(), "c".to_string());
        assert!(In.holds(Some(&a), &values));
        assert!(!In.holds(Some(&c), &values));
        assert!(!In.holds(None, &values));
        assert!(!In.holds(Some(&a), &[]));
        assert!(!NotIn.holds(Some(&a), &values));
        assert!(NotIn.holds(Some(&c), &values));
        assert!(NotIn.holds(None, &values));
        assert!(Exists.holds(Some(&a), &[]));
        assert!(!Exists.holds(None, &[]));
        assert!(DoesNotExist.holds(None, &[]));
        assert!(!DoesNotExist.holds(Some(&a), &[]));
        for (name, op) in SelectorOperator::ALL {
            assert_eq!(SelectorOperator::parse(name), Some(op));
        }
        assert_eq!(SelectorOperator::parse("Gt"), None);
        assert_eq!(SelectorOperator::parse("in"), None);
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        use SelectorOperator::*;
        let s = LabelSelector {
            match_labels: labels(&[("node-type", "backup")]),
            match_expressions: vec![expr("critical-workload", DoesNotExist, &[])],
        };
        assert!(s.matches(&labels(&[("node-type", "backup")])));
        assert!(!s.matches(&labels(&[
            ("node-type", "backup"),
            ("critical-workload", "true")
        ])));
        assert!(!s.matches(&labels(&[])));
    }
}
