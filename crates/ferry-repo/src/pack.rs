//! Pack files (`data/<id>`): encrypted blobs one after another, then the encrypted header,
//! then the header's length as a little-endian u32. Header entry types: 0 data, 1 tree
//! (`type u8, length u32, id [32]`), 2 compressed data, 3 compressed tree
//! (`type u8, length u32, uncompressed length u32, id [32]`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::{self, Key};
use crate::id::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    Data,
    Tree,
}

impl std::fmt::Display for BlobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        })
    }
}

/// Where a blob lies inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedBlob {
    pub id: Id,
    pub kind: BlobType,
    pub offset: u64,
    /// Length on disk (encrypted, maybe compressed).
    pub length: u32,
    /// Plaintext length when the blob is compressed, else `None`.
    pub uncompressed_length: Option<u32>,
}

const ENTRY_PLAIN: usize = 1 + 4 + 32;
const ENTRY_COMPRESSED: usize = 1 + 4 + 4 + 32;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack too short ({0} bytes)")]
    TooShort(u64),
    #[error("header length {0} does not fit the pack")]
    BadHeaderLength(u32),
    #[error("header MAC verification failed")]
    HeaderMac,
    #[error("malformed header: {0}")]
    Malformed(String),
}

/// Parses a pack's header from the pack's last bytes. `tail` must end where the pack ends and
/// `pack_len` is the pack's total length; returns the blobs in pack order.
pub fn parse_header(key: &Key, tail: &[u8], pack_len: u64) -> Result<Vec<PackedBlob>, PackError> {
    if tail.len() < 4 {
        return Err(PackError::TooShort(pack_len));
    }
    let hlen = u32::from_le_bytes(tail[tail.len() - 4..].try_into().unwrap());
    if (hlen as u64) + 4 > pack_len || hlen as usize + 4 > tail.len() {
        return Err(PackError::BadHeaderLength(hlen));
    }
    let enc = &tail[tail.len() - 4 - hlen as usize..tail.len() - 4];
    let plain = key.open(enc).map_err(|_| PackError::HeaderMac)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut offset = 0u64;
    while pos < plain.len() {
        let t = plain[pos];
        let (kind, compressed) = match t {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            _ => return Err(PackError::Malformed(format!("entry type {t}"))),
        };
        let need = if compressed {
            ENTRY_COMPRESSED
        } else {
            ENTRY_PLAIN
        };
        if pos + need > plain.len() {
            return Err(PackError::Malformed("truncated entry".into()));
        }
        let length = u32::from_le_bytes(plain[pos + 1..pos + 5].try_into().unwrap());
        let (uncompressed_length, id_at) = if compressed {
            (
                Some(u32::from_le_bytes(
                    plain[pos + 5..pos + 9].try_into().unwrap(),
                )),
                pos + 9,
            )
        } else {
            (None, pos + 5)
        };
        let id = Id(plain[id_at..id_at + 32].try_into().unwrap());
        out.push(PackedBlob {
            id,
            kind,
            offset,
            length,
            uncompressed_length,
        });
        offset += length as u64;
        pos += need;
    }
    if offset + hlen as u64 + 4 != pack_len {
        return Err(PackError::Malformed(format!(
            "blobs ({offset} bytes) and header ({hlen} bytes) do not add up to the pack's {pack_len} bytes"
        )));
    }
    Ok(out)
}

/// The largest header a pack's tail read needs for `n` blobs.
pub fn max_header_len(n: usize) -> usize {
    n * ENTRY_COMPRESSED + crypto::OVERHEAD + 4
}

/// Accumulates sealed blobs into one pack.
#[derive(Default)]
pub struct PackBuilder {
    data: Vec<u8>,
    blobs: Vec<PackedBlob>,
    /// SHA-256 of `data` so far: the pack's id, computed while the bytes are in cache.
    hasher: Sha256,
}

impl PackBuilder {
    pub fn with_capacity(cap: usize) -> Self {
        PackBuilder {
            data: Vec::with_capacity(cap),
            blobs: Vec::new(),
            hasher: Sha256::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn count(&self) -> usize {
        self.blobs.len()
    }

    /// Appends an already sealed blob.
    pub fn add(&mut self, id: Id, kind: BlobType, sealed: &[u8], uncompressed_length: Option<u32>) {
        self.blobs.push(PackedBlob {
            id,
            kind,
            offset: self.data.len() as u64,
            length: sealed.len() as u32,
            uncompressed_length,
        });
        self.data.extend_from_slice(sealed);
        self.hasher.update(sealed);
    }

    /// Compresses (when `compress` is set and it makes the blob smaller, as restic's auto
    /// mode does) and seals the plaintext `plain` straight into the pack: the frame is
    /// written where the blob goes and encrypted there, no intermediate buffers.
    pub fn add_plain(
        &mut self,
        key: &Key,
        id: Id,
        kind: BlobType,
        plain: &[u8],
        compress: bool,
    ) -> std::io::Result<()> {
        let start = self.data.len();
        let body = start + crypto::IV_SIZE;
        self.data.resize(body, 0);
        let mut uncompressed_length = None;
        if compress {
            let n = crate::compression::compress_append(plain, &mut self.data)?;
            if n < plain.len() {
                uncompressed_length = Some(plain.len() as u32);
            } else {
                self.data.truncate(body);
            }
        }
        if uncompressed_length.is_none() {
            self.data.reserve(plain.len() + crypto::MAC_SIZE);
            self.data.extend_from_slice(plain);
        }
        let hasher = &mut self.hasher;
        key.seal_in_place(&mut self.data, start, |b| hasher.update(b));
        self.blobs.push(PackedBlob {
            id,
            kind,
            offset: start as u64,
            length: (self.data.len() - start) as u32,
            uncompressed_length,
        });
        Ok(())
    }

    /// Like [`PackBuilder::finish`], with the pack's id (the SHA-256 of its bytes).
    pub fn finish_hashed(self, key: &Key) -> (Vec<u8>, Vec<PackedBlob>, Id) {
        let mut hasher = self.hasher.clone();
        let start = self.data.len();
        let (bytes, blobs) = self.finish(key);
        hasher.update(&bytes[start..]);
        (bytes, blobs, Id(hasher.finalize().into()))
    }

    /// Seals the header and returns the pack's bytes and its blobs.
    pub fn finish(mut self, key: &Key) -> (Vec<u8>, Vec<PackedBlob>) {
        let mut header = Vec::with_capacity(self.blobs.len() * ENTRY_COMPRESSED);
        for b in &self.blobs {
            let t: u8 = match (b.kind, b.uncompressed_length.is_some()) {
                (BlobType::Data, false) => 0,
                (BlobType::Tree, false) => 1,
                (BlobType::Data, true) => 2,
                (BlobType::Tree, true) => 3,
            };
            header.push(t);
            header.extend_from_slice(&b.length.to_le_bytes());
            if let Some(u) = b.uncompressed_length {
                header.extend_from_slice(&u.to_le_bytes());
            }
            header.extend_from_slice(&b.id.0);
        }
        let sealed = key.seal(&header);
        self.data.extend_from_slice(&sealed);
        self.data
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        (self.data, self.blobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_pack_header_parses_back() {
        let key = Key::random();
        let mut b = PackBuilder::default();
        let s1 = key.seal(b"one");
        let s2 = key.seal(b"two-compressed");
        b.add(Id::hash(b"one"), BlobType::Data, &s1, None);
        b.add(Id::hash(b"two"), BlobType::Tree, &s2, Some(99));
        let (bytes, blobs) = b.finish(&key);
        let parsed = parse_header(&key, &bytes, bytes.len() as u64).unwrap();
        assert_eq!(parsed, blobs);
        assert_eq!(parsed[1].offset, s1.len() as u64);
        assert_eq!(parsed[1].uncompressed_length, Some(99));
    }

    #[test]
    fn add_plain_packs_what_restic_reads_and_hashes_the_pack() {
        let key = Key::random();
        let mut b = PackBuilder::default();
        let compressible = vec![7u8; 100_000];
        let mut x = 0x9e3779b97f4a7c15u64;
        let random: Vec<u8> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        b.add_plain(
            &key,
            Id::hash(&compressible),
            BlobType::Data,
            &compressible,
            true,
        )
        .unwrap();
        b.add_plain(&key, Id::hash(&random), BlobType::Data, &random, true)
            .unwrap();
        b.add_plain(&key, Id::hash(b"tree"), BlobType::Tree, b"tree", false)
            .unwrap();
        b.add(Id::hash(b"old"), BlobType::Data, &key.seal(b"old"), None);
        let (bytes, blobs, id) = b.finish_hashed(&key);
        assert_eq!(id, Id::hash(&bytes));
        assert_eq!(
            parse_header(&key, &bytes, bytes.len() as u64).unwrap(),
            blobs
        );
        assert_eq!(blobs[0].uncompressed_length, Some(100_000));
        assert!(blobs[0].length < 1000);
        assert_eq!(
            blobs[1].uncompressed_length, None,
            "incompressible stays plain"
        );
        assert_eq!(blobs[2].uncompressed_length, None);
        let open = |i: usize| {
            let b = &blobs[i];
            key.open(&bytes[b.offset as usize..][..b.length as usize])
                .unwrap()
        };
        assert_eq!(
            crate::compression::decompress(&open(0), 100_000).unwrap(),
            compressible
        );
        assert_eq!(open(1), random);
        assert_eq!(open(2), b"tree");
        assert_eq!(open(3), b"old");
    }
}
