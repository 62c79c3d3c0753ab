//! Lenient loading as Velero's node-agent loads: Velero decodes the document and then quietly
//! falls back wherever a value is unusable (`globalConfig: 0` means 1, a `perNodeConfig` rule
//! with a bad number or selector is skipped, an invalid `podResources` section is dropped
//! whole, `cachePVC` without a storage class means no cache PVC). The controller does the
//! same, with a warning naming the problem, instead of refusing the whole configuration.
//!
//! Only value problems are repaired. A value of the wrong type (a string where a number
//! belongs) fails Velero's decoder, so it stays an error here too.

use serde_json::Value;

use crate::problems::ConfigProblem;

/// One step of a path as `ConfigProblem::path` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `a.b[2]["c.d"]` into steps; None for `$` or anything unexpected.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    if path == "$" {
        return None;
    }
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            if after.starts_with('"') {
                // A JSON string key: find its end by decoding.
                let mut de = serde_json::Deserializer::from_str(after).into_iter::<String>();
                let key = de.next()?.ok()?;
                let used = de.byte_offset();
                steps.push(Step::Key(key));
                rest = after[used..].strip_prefix(']')?;
            } else {
                let end = after.find(']')?;
                steps.push(Step::Index(after[..end].parse().ok()?));
                rest = &after[end + 1..];
            }
        } else {
            let rest_key = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_key.find(['.', '[']).unwrap_or(rest_key.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(rest_key[..end].to_string()));
            rest = &rest_key[end..];
        }
    }
    Some(steps)
}

/// How much of the document Velero gives up for a problem at `steps`: the steps of the part to
/// drop, or None when Velero would refuse the configuration.
fn unit_to_drop(steps: &[Step]) -> Option<&[Step]> {
    let key = |i: usize| match steps.get(i) {
        Some(Step::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    let index = |i: usize| matches!(steps.get(i), Some(Step::Index(_)));
    let len = match key(0)? {
        // Velero drops the whole section when one quantity is unusable.
        "podResources" | "cachePVC" | "priorityClassName" => 1,
        "loadConcurrency" => match key(1)? {
            "globalConfig" | "prepareQueueLength" => 2,
            "perNodeConfig" if index(2) => 3,
            _ => return None,
        },
        "loadAffinity" if index(1) => 2,
        "backupPVC" | "podLabels" | "podAnnotations" if steps.len() >= 2 => 2,
        _ => return None,
    };
    Some(&steps[..len])
}

/// Removes the value at `steps` (keys compared ignoring case, as Velero's decoder matches
/// them). Whether something was removed.
fn remove(doc: &mut Value, steps: &[Step]) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut at = doc;
    for step in parents {
        at = match (step, at) {
            (Step::Key(k), Value::Object(map)) => {
                let Some(found) = map.keys().find(|m| m.eq_ignore_ascii_case(k)).cloned() else {
                    return false;
                };
                map.get_mut(&found).expect("key just found")
            }
            (Step::Index(i), Value::Array(items)) if *i < items.len() => &mut items[*i],
            _ => return false,
        };
    }
    match (last, at) {
        (Step::Key(k), Value::Object(map)) => {
            let found = map.keys().find(|m| m.eq_ignore_ascii_case(k)).cloned();
            found.is_some_and(|f| map.remove(&f).is_some())
        }
        (Step::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

/// Drops from `doc` what Velero would ignore for `problem`; the warning to log, or None when
/// the problem is one Velero refuses too (the caller keeps it as an error).
pub(crate) fn drop_as_velero(doc: &mut Value, problem: &ConfigProblem) -> Option<ConfigProblem> {
    // "expected …": the wrong type, which Velero's decoder refuses.
    if problem.message.starts_with("expected ") {
        return None;
    }
    let steps = parse_path(&problem.path)?;
    let unit = unit_to_drop(&steps)?;
    if !remove(doc, unit) {
        return None;
    }
    let dropped = render(unit);
    Some(ConfigProblem::new(
        problem.path.clone(),
        format!(
            "{}; ignoring {dropped}, as Velero does (`ferry config validate` reports it as an error)",
            problem.message
        ),
    ))
}

fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) => out = crate::problems::child_path(&out, k),
            Step::Index(i) => out = crate::problems::index_path(&out, *i),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_back_into_steps() {
        assert_eq!(
            parse_path(r#"loadConcurrency.perNodeConfig[1].nodeSelector.matchLabels["a.b/c"]"#),
            Some(vec![
                Step::Key("loadConcurrency".into()),
                Step::Key("perNodeConfig".into()),
                Step::Index(1),
                Step::Key("nodeSelector".into()),
                Step::Key("matchLabels".into()),
                Step::Key("a.b/c".into()),
            ])
        );
        assert_eq!(parse_path("$"), None);
        for path in [
            "loadAffinity[0].storageClass",
            r#"backupPVC["gp3.x"].annotations"#,
        ] {
            assert_eq!(render(&parse_path(path).unwrap()), path);
        }
    }
}
