//! What a restore reports: its counts, the entries it could not restore (and why), files whose
//! read-back did not match the snapshot, and warnings that lose no data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    /// Files restored (damaged ones not counted).
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub total_bytes: u64,
    /// Bytes actually written (all-zero blobs are left as holes).
    pub bytes_written: u64,
    pub seconds: f64,
    /// How long flushing the restored tree to stable storage took (with `flush`), within
    /// `seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_seconds: Option<f64>,
    /// Files read back and found equal to the snapshot (with `verify`).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub verified_files: u64,
    /// Entries not restored because their data is damaged or missing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamagedEntry>,
    /// Restored files that did not read back as the snapshot has them (with `verify`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_failures: Vec<DamagedEntry>,
    /// Things that lose no file data (an xattr the file system refuses, a device node that
    /// cannot be made), one line per kind.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// An entry a restore could not restore, or restored wrong: where it belongs, and the pack and
/// blob at fault when known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedEntry {
    /// The path in the target.
    pub path: String,
    /// The pack holding the bad blob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// The blob at fault: a data blob of a file, the tree blob of a directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for DamagedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(b) = &self.blob {
            write!(f, ": blob {b}")?;
        }
        if let Some(p) = &self.pack {
            write!(f, " in pack {p}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// How many entries an error message lists (the summary holds them all).
const LISTED: usize = 5;

/// The message of [`crate::RepoError::Incomplete`]: bounded, whatever the number of entries.
pub(crate) fn incomplete_message(s: &RestoreSummary) -> String {
    let mut parts = Vec::new();
    let list = |entries: &[DamagedEntry]| {
        let mut l: Vec<String> = entries.iter().take(LISTED).map(|e| e.to_string()).collect();
        if entries.len() > LISTED {
            l.push(format!("and {} more", entries.len() - LISTED));
        }
        l.join("; ")
    };
    if !s.damaged.is_empty() {
        parts.push(format!(
            "{} entr{} not restored because of damaged or missing repository data (removed, \
             so no wrong file is left): {}",
            s.damaged.len(),
            if s.damaged.len() == 1 {
                "y was"
            } else {
                "ies were"
            },
            list(&s.damaged)
        ));
    }
    if !s.verify_failures.is_empty() {
        parts.push(format!(
            "{} restored file(s) do not read back as the snapshot has them: {}",
            s.verify_failures.len(),
            list(&s.verify_failures)
        ));
    }
    format!(
        "restore incomplete: {}; the other {} files are restored and complete; \
         `ferry repo check --read-data` lists the damaged packs",
        parts.join("; "),
        s.files
    )
}

/// Warnings, one per kind (e.g. an xattr the file system refuses), counted: a file system
/// without xattr support would otherwise warn once per file.
#[derive(Default)]
pub(crate) struct Warnings {
    kinds: Mutex<HashMap<String, (String, u64)>>,
}

/// Distinct kinds of warning kept; later kinds are only counted in the log.
const MAX_KINDS: usize = 50;

impl Warnings {
    /// Records a warning of kind `kind` (what makes two warnings the same) with a message
    /// naming the first entry it happened to.
    pub(crate) fn add(&self, kind: String, message: impl FnOnce() -> String) {
        let mut kinds = self.kinds.lock().unwrap();
        if let Some(k) = kinds.get_mut(&kind) {
            k.1 += 1;
            return;
        }
        let message = message();
        tracing::warn!("{message}");
        if kinds.len() < MAX_KINDS {
            kinds.insert(kind, (message, 1));
        }
    }

    pub(crate) fn list(&self) -> Vec<String> {
        let kinds = self.kinds.lock().unwrap();
        let mut out: Vec<String> = kinds
            .values()
            .map(|(m, n)| match n {
                1 => m.clone(),
                n => format!("{m} (and {} more like it)", n - 1),
            })
            .collect();
        out.sort();
        out
    }
}

/// How far a restore has come, as its progress callback is told.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreProgress {
    pub total_bytes: u64,
    pub bytes_done: u64,
    pub total_files: u64,
    pub files_done: u64,
}

pub type ProgressFn = Arc<dyn Fn(&RestoreProgress) + Send + Sync>;
