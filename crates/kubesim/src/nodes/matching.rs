//! Matching rules shared by the scheduler and the volume binder: label selectors, node
//! selector terms (node affinity, PV node affinity), topology terms (StorageClass
//! allowedTopologies) and taints against tolerations. Semantics follow the Kubernetes API
//! reference for each type.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration, TopologySelectorTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

type Labels = BTreeMap<String, String>;

/// The set-based operators every selector shares (`In`, `NotIn`, `Exists`, `DoesNotExist`)
/// applied to a label's value (`None`: no such label); `None` for any other operator.
/// kubesim's one copy of their meaning: label selectors, node selector requirements and the
/// `?labelSelector=` query parameter ([`crate::selectors`]) use it. kubesim stands in for the
/// API server and keeps its own, not ferry-config's, so it never borrows ferry's reading.
pub fn set_operator_holds(operator: &str, value: Option<&str>, values: &[String]) -> Option<bool> {
    Some(match operator {
        "In" => value.is_some_and(|a| values.iter().any(|v| v == a)),
        "NotIn" => value.is_none_or(|a| values.iter().all(|v| v != a)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => return None,
    })
}

/// Whether `labels` satisfy a label selector. An empty selector matches everything; the
/// caller decides what an absent selector means (for spread constraints: nothing).
pub fn label_selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    if let Some(match_labels) = &selector.match_labels {
        for (key, value) in match_labels {
            if labels.get(key) != Some(value) {
                return false;
            }
        }
    }
    for requirement in selector.match_expressions.iter().flatten() {
        let actual = labels.get(&requirement.key).map(String::as_str);
        let values = requirement.values.as_deref().unwrap_or_default();
        if set_operator_holds(&requirement.operator, actual, values) != Some(true) {
            return false;
        }
    }
    true
}

/// One node selector requirement against a value (a label value or a field value).
fn requirement_matches(requirement: &NodeSelectorRequirement, actual: Option<&String>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    if let Some(holds) =
        set_operator_holds(&requirement.operator, actual.map(String::as_str), values)
    {
        return holds;
    }
    match requirement.operator.as_str() {
        // Gt/Lt compare integers; a non-integer label or value never matches.
        "Gt" | "Lt" => {
            let (Some(actual), [bound]) = (actual, values) else {
                return false;
            };
            match (actual.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(a), Ok(b)) if requirement.operator == "Gt" => a > b,
                (Ok(a), Ok(b)) => a < b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// A node selector term: all its label expressions and field expressions must hold. A term
/// with no requirements at all matches no node (as in Kubernetes).
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &Labels,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node_name.to_string();
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            // metadata.name is the only supported field, as in Kubernetes.
            r.key == "metadata.name" && requirement_matches(r, Some(&name))
        })
}

/// Terms are ORed.
pub fn node_selector_terms_match(
    terms: &[NodeSelectorTerm],
    node_name: &str,
    labels: &Labels,
) -> bool {
    terms
        .iter()
        .any(|t| node_selector_term_matches(t, node_name, labels))
}

/// StorageClass allowedTopologies: terms ORed, requirements within a term ANDed, each
/// requirement "label in values". Empty/absent means every node.
pub fn allowed_topologies_match(terms: Option<&[TopologySelectorTerm]>, labels: &Labels) -> bool {
    let Some(terms) = terms.filter(|t| !t.is_empty()) else {
        return true;
    };
    terms.iter().any(|term| {
        term.match_label_expressions
            .iter()
            .flatten()
            .all(|r| labels.get(&r.key).is_some_and(|v| r.values.contains(v)))
    })
}

/// Whether one toleration tolerates one taint (key, operator Exists/Equal, value, effect).
pub fn toleration_tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    // An empty key with Exists tolerates everything.
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        _ => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

/// The first NoSchedule/NoExecute taint of the node that no toleration tolerates
/// (PreferNoSchedule only affects scoring, which kubesim leaves out).
pub fn first_untolerated_taint<'a>(
    node: &'a Node,
    tolerations: &[Toleration],
) -> Option<&'a Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| toleration_tolerates(t, taint)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::TopologySelectorLabelRequirement;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn set_operators() {
        let values = ["a".to_string(), "b".to_string()];
        assert_eq!(set_operator_holds("In", Some("a"), &values), Some(true));
        assert_eq!(set_operator_holds("In", Some("c"), &values), Some(false));
        assert_eq!(set_operator_holds("In", None, &values), Some(false));
        assert_eq!(set_operator_holds("NotIn", Some("a"), &values), Some(false));
        assert_eq!(set_operator_holds("NotIn", None, &values), Some(true));
        assert_eq!(set_operator_holds("Exists", Some(""), &[]), Some(true));
        assert_eq!(set_operator_holds("DoesNotExist", None, &[]), Some(true));
        assert_eq!(set_operator_holds("Gt", Some("2"), &values), None);
        assert_eq!(set_operator_holds("in", Some("a"), &values), None);
    }

    #[test]
    fn node_selector_operators() {
        let l = labels(&[("zone", "a"), ("gpus", "4")]);
        let term = |r: NodeSelectorRequirement| NodeSelectorTerm {
            match_expressions: Some(vec![r]),
            match_fields: None,
        };
        assert!(node_selector_term_matches(
            &term(req("zone", "In", &["a", "b"])),
            "n",
            &l
        ));
        assert!(!node_selector_term_matches(
            &term(req("zone", "NotIn", &["a"])),
            "n",
            &l
        ));
        assert!(node_selector_term_matches(
            &term(req("disk", "NotIn", &["ssd"])),
            "n",
            &l
        ));
        assert!(node_selector_term_matches(
            &term(req("zone", "Exists", &[])),
            "n",
            &l
        ));
        assert!(node_selector_term_matches(
            &term(req("disk", "DoesNotExist", &[])),
            "n",
            &l
        ));
        assert!(node_selector_term_matches(
            &term(req("gpus", "Gt", &["3"])),
            "n",
            &l
        ));
        assert!(!node_selector_term_matches(
            &term(req("gpus", "Lt", &["3"])),
            "n",
            &l
        ));
        assert!(!node_selector_term_matches(
            &term(req("zone", "Gt", &["3"])),
            "n",
            &l
        ));
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["node-2"])]),
        };
        assert!(node_selector_term_matches(&by_name, "node-2", &l));
        assert!(!node_selector_term_matches(&by_name, "node-1", &l));
        assert!(!node_selector_term_matches(
            &NodeSelectorTerm::default(),
            "n",
            &l
        ));
    }

    #[test]
    fn label_selector_expressions() {
        let l = labels(&[("app", "db")]);
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "db".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        };
        assert!(label_selector_matches(&sel, &l));
        assert!(!label_selector_matches(&sel, &labels(&[("app", "web")])));
        assert!(label_selector_matches(&LabelSelector::default(), &l));
    }

    #[test]
    fn tolerations_match_taints() {
        let taint = Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        let exists = Toleration {
            key: Some("node.kubernetes.io/not-ready".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        let wrong_effect = Toleration {
            effect: Some("NoExecute".into()),
            ..exists.clone()
        };
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(toleration_tolerates(&exists, &taint));
        assert!(!toleration_tolerates(&wrong_effect, &taint));
        assert!(toleration_tolerates(&everything, &taint));
    }

    #[test]
    fn allowed_topologies() {
        let terms = vec![TopologySelectorTerm {
            match_label_expressions: Some(vec![TopologySelectorLabelRequirement {
                key: "topology.kubernetes.io/zone".into(),
                values: vec!["zone-1".into()],
            }]),
        }];
        let z1 = labels(&[("topology.kubernetes.io/zone", "zone-1")]);
        let z2 = labels(&[("topology.kubernetes.io/zone", "zone-2")]);
        assert!(allowed_topologies_match(Some(&terms), &z1));
        assert!(!allowed_topologies_match(Some(&terms), &z2));
        assert!(allowed_topologies_match(None, &z2));
    }
}
