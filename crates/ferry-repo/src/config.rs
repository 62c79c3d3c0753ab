//! The repository config (`config`): format version, repository id, chunker polynomial.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoConfig {
    pub version: u32,
    pub id: String,
    /// The chunker polynomial, lower-case hex without prefix.
    pub chunker_polynomial: String,
}

impl RepoConfig {
    pub fn polynomial(&self) -> Option<u64> {
        u64::from_str_radix(self.chunker_polynomial.trim_start_matches("0x"), 16).ok()
    }
}
