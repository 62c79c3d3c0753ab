//! Index files (`index/<id>`): which blobs lie where in which packs. The master index
//! merges all of them in memory, compactly, for lookups during restore and backup.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::pack::{BlobType, PackedBlob};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct IndexJson {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<Id>,
    #[serde(default)]
    pub packs: Vec<IndexPackJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexPackJson {
    pub id: Id,
    #[serde(default)]
    pub blobs: Vec<IndexBlobJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexBlobJson {
    pub id: Id,
    #[serde(rename = "type")]
    pub kind: BlobType,
    pub offset: u64,
    pub length: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

impl IndexPackJson {
    pub fn from_packed(id: Id, blobs: &[PackedBlob]) -> Self {
        IndexPackJson {
            id,
            blobs: blobs
                .iter()
                .map(|b| IndexBlobJson {
                    id: b.id,
                    kind: b.kind,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                })
                .collect(),
        }
    }
}

/// A blob's place: which pack (an index into `MasterIndex::packs`), where, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    /// 0 when the blob is not compressed.
    pub uncompressed_length: u32,
}

impl BlobLocation {
    /// The plaintext length of the blob.
    pub fn plain_len(&self) -> u64 {
        if self.uncompressed_length > 0 {
            self.uncompressed_length as u64
        } else {
            self.length.saturating_sub(crate::crypto::OVERHEAD as u32) as u64
        }
    }
}

/// A map keyed by blob or pack ids. foldhash rather than the standard SipHash: a restore looks
/// up every blob of every file, and foldhash is several times faster on 32-byte keys while
/// still seeded per process, so an index crafted to collide cannot slow a restore down.
pub(crate) type IdMap<V> = HashMap<Id, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub struct MasterIndex {
    pub packs: Vec<Id>,
    pack_numbers: IdMap<u32>,
    data: IdMap<BlobLocation>,
    tree: IdMap<BlobLocation>,
}

impl MasterIndex {
    fn pack_number(&mut self, id: Id) -> u32 {
        if let Some(n) = self.pack_numbers.get(&id) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(id);
        self.pack_numbers.insert(id, n);
        n
    }

    pub fn add_pack(&mut self, pack: &IndexPackJson) {
        let n = self.pack_number(pack.id);
        for b in &pack.blobs {
            let loc = BlobLocation {
                pack: n,
                offset: b.offset as u32,
                length: b.length,
                uncompressed_length: b.uncompressed_length.unwrap_or(0),
            };
            let map = match b.kind {
                BlobType::Data => &mut self.data,
                BlobType::Tree => &mut self.tree,
            };
            map.entry(b.id).or_insert(loc);
        }
    }

    pub fn add(&mut self, index: &IndexJson) {
        for p in &index.packs {
            self.add_pack(p);
        }
    }

    pub fn get(&self, kind: BlobType, id: &Id) -> Option<BlobLocation> {
        match kind {
            BlobType::Data => self.data.get(id).copied(),
            BlobType::Tree => self.tree.get(id).copied(),
        }
    }

    pub fn contains(&self, kind: BlobType, id: &Id) -> bool {
        self.get(kind, id).is_some()
    }

    pub fn pack_id(&self, n: u32) -> Id {
        self.packs[n as usize]
    }

    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_numbers.contains_key(id)
    }

    pub fn blob_count(&self) -> usize {
        self.data.len() + self.tree.len()
    }

    /// All blobs, grouped by nothing in particular.
    pub fn iter(&self) -> impl Iterator<Item = (BlobType, &Id, &BlobLocation)> {
        self.data
            .iter()
            .map(|(i, l)| (BlobType::Data, i, l))
            .chain(self.tree.iter().map(|(i, l)| (BlobType::Tree, i, l)))
    }
}
