//! Snapshot files (`snapshots/<id>`): the root tree of one backup and what it was of.

use serde::{Deserialize, Serialize};

use crate::id::Id;

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// The snapshot file's id (not part of the JSON).
    #[serde(skip)]
    pub id: Id,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    pub tree: Id,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_version: Option<String>,
}

impl Snapshot {
    /// The snapshot as restic's `snapshots --json` prints it: its fields plus `id` and
    /// `short_id`.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("snapshot serializes");
        v["id"] = self.id.to_hex().into();
        v["short_id"] = self.id.short().into();
        v
    }

    /// Seconds since the epoch, for ordering.
    pub fn unix_time(&self) -> (i64, u32) {
        crate::tree::parse_time(&self.time).unwrap_or((0, 0))
    }
}
