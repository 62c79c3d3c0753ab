//! What validation reports: problems with their JSON path, and how strict to be.

use std::fmt;

/// How to treat fields ferry does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// `ferry config validate`: unknown or misspelt fields, and settings that have no effect,
    /// are errors.
    Strict,
    /// The running controller: unknown fields and settings without effect become warnings, so a
    /// configuration written for a newer Velero still loads. Everything else is still an error.
    Lenient,
}

/// One problem found in a configuration, located by its JSON path
/// (for example `loadConcurrency.perNodeConfig[1].number`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// JSON path of the offending value; `$` is the document itself.
    pub path: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        ConfigProblem {
            path: if path.is_empty() {
                "$".to_string()
            } else {
                path
            },
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem that made a configuration unusable, all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// Where the configuration came from, e.g. `ConfigMap node-agent-config (data key "config.json")`.
    pub source_name: Option<String>,
    pub problems: Vec<ConfigProblem>,
}

impl ConfigErrors {
    pub fn new(problems: Vec<ConfigProblem>) -> Self {
        ConfigErrors {
            source_name: None,
            problems,
        }
    }

    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors::new(vec![ConfigProblem::new(path, message)])
    }

    pub(crate) fn with_source(mut self, source_name: String) -> Self {
        if self.source_name.is_none() {
            self.source_name = Some(source_name);
        }
        self
    }

    /// The problem at `path`, if any (handy in tests and callers that react to one field).
    pub fn at(&self, path: &str) -> Option<&ConfigProblem> {
        self.problems.iter().find(|p| p.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        if let Some(source) = &self.source_name {
            write!(
                f,
                "invalid node-agent configuration in {source} ({} problem{}):",
                self.problems.len(),
                if self.problems.len() == 1 { "" } else { "s" }
            )?;
            first = false;
        }
        for problem in &self.problems {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// A configuration that loaded, with what the lenient mode chose to tolerate.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: crate::NodeAgentConfig,
    /// Empty in strict mode: there, every problem is an error.
    pub warnings: Vec<ConfigProblem>,
}

/// Builds JSON paths the way users read them: `a.b[2].c`, and `a["key.with/dots"]` for map keys
/// that are not plain identifiers.
pub(crate) fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", serde_json::Value::String(key.to_string())),
    }
}

pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}
