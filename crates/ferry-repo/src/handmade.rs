//! Hand-made snapshots, for tests and fuzzing: blobs, trees, packs, an index and a snapshot
//! written through the repository's own writers (sealing, [`PackBuilder`], `save_unpacked`),
//! holding whatever trees the caller builds. Nothing is checked: duplicate names, symlinks
//! pointing anywhere, hard links, names like `..` all go in as given, which is the point:
//! restic would never write them, a forged or broken repository might.

use std::collections::HashSet;

use bytes::Bytes;

use crate::backend::{FileType, Handle};
use crate::error::Result;
use crate::id::Id;
use crate::index::{IndexJson, IndexPackJson};
use crate::pack::{BlobType, PackBuilder};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{GO_MODE_DIR, GO_MODE_SYMLINK, Node, Tree};

/// Modification time of hand-made nodes.
pub const MTIME: &str = "2024-01-02T03:04:05.123456789Z";

/// Builds one snapshot's blobs; [`SnapshotWriter::finish`] stores them.
pub struct SnapshotWriter<'a> {
    repo: &'a Repository,
    current: PackBuilder,
    finished: Vec<PackBuilder>,
    seen: HashSet<(BlobType, Id)>,
}

impl<'a> SnapshotWriter<'a> {
    pub fn new(repo: &'a Repository) -> Self {
        SnapshotWriter {
            repo,
            current: PackBuilder::default(),
            finished: Vec::new(),
            seen: HashSet::new(),
        }
    }

    fn add(&mut self, kind: BlobType, plain: &[u8]) -> Id {
        self.add_as(kind, Id::hash(plain), plain)
    }

    fn add_as(&mut self, kind: BlobType, id: Id, plain: &[u8]) -> Id {
        if !self.seen.insert((kind, id)) {
            return id;
        }
        let compressed = self
            .repo
            .compression()
            .then(|| crate::compression::compress(plain).expect("zstd compress"))
            .filter(|c| c.len() < plain.len());
        let (stored, ulen) = match &compressed {
            Some(c) => (c.as_slice(), Some(plain.len() as u32)),
            None => (plain, None),
        };
        let sealed = self.repo.key().seal(stored);
        self.current.add(id, kind, &sealed, ulen);
        id
    }

    /// Stores a data blob (once per content); returns its id.
    pub fn data(&mut self, plain: &[u8]) -> Id {
        self.add(BlobType::Data, plain)
    }

    /// Stores `plain` as the data blob `id`, whatever its hash: a blob sealed with the right
    /// key whose content is not what its id says (a bug in the writer, or a forgery).
    pub fn forged_data(&mut self, id: Id, plain: &[u8]) {
        self.add_as(BlobType::Data, id, plain);
    }

    /// Stores `data` cut into blobs of at most `blob_size` bytes; returns the content list.
    pub fn content(&mut self, data: &[u8], blob_size: usize) -> Vec<Id> {
        data.chunks(blob_size.max(1))
            .map(|c| self.data(c))
            .collect()
    }

    /// Stores a tree of exactly these nodes, in this order; returns its id.
    pub fn tree(&mut self, nodes: Vec<Node>) -> Id {
        self.add(BlobType::Tree, &Tree { nodes }.to_bytes())
    }

    /// Starts a new pack: blobs added from now on go into it (so a test can damage one pack
    /// and know what is in it).
    pub fn cut_pack(&mut self) {
        if !self.current.is_empty() {
            self.finished.push(std::mem::take(&mut self.current));
        }
    }

    /// Stores the packs, one index for them, then a snapshot of `root`; returns the snapshot
    /// (with its id) and the pack ids in the order their blobs were added.
    pub async fn finish(mut self, root: Id) -> Result<(Snapshot, Vec<Id>)> {
        self.cut_pack();
        let mut index = IndexJson::default();
        let mut pack_ids = Vec::new();
        for p in self.finished {
            let (bytes, blobs) = p.finish(self.repo.key());
            let id = Id::hash(&bytes);
            self.repo
                .backend()
                .save(
                    &Handle::new(FileType::Pack, id.to_hex()),
                    Bytes::from(bytes),
                )
                .await?;
            index.packs.push(IndexPackJson::from_packed(id, &blobs));
            pack_ids.push(id);
        }
        if !index.packs.is_empty() {
            let json = serde_json::to_vec(&index).expect("index serializes");
            self.repo.save_unpacked(FileType::Index, json).await?;
        }
        self.repo.invalidate_index().await;
        let mut snap = Snapshot {
            id: Id::default(),
            time: crate::tree::format_now(),
            parent: None,
            tree: root,
            paths: vec!["/handmade".into()],
            hostname: "handmade".into(),
            username: crate::sys::username(),
            uid: crate::sys::uid(),
            gid: crate::sys::gid(),
            excludes: Vec::new(),
            tags: Vec::new(),
            original: None,
            program_version: Some("ferry handmade".into()),
        };
        snap.id = self.repo.save_snapshot(&snap).await?;
        Ok((snap, pack_ids))
    }
}

fn base(name: &[u8], kind: &str, mode: u32) -> Node {
    Node {
        name: name.to_vec(),
        kind: kind.into(),
        mode,
        mtime: MTIME.into(),
        atime: MTIME.into(),
        ctime: MTIME.into(),
        uid: crate::sys::uid(),
        gid: crate::sys::gid(),
        ..Default::default()
    }
}

/// A regular file node (mode 0644) with this content list and size.
pub fn file(name: &[u8], content: Vec<Id>, size: u64) -> Node {
    Node {
        size,
        links: 1,
        content: Some(content),
        ..base(name, "file", 0o644)
    }
}

/// A directory node (mode 0755) whose entries are the tree `subtree`.
pub fn dir(name: &[u8], subtree: Id) -> Node {
    Node {
        subtree: Some(subtree),
        ..base(name, "dir", GO_MODE_DIR | 0o755)
    }
}

/// A symlink node pointing at `target` (any bytes, absolute or with `..`).
pub fn symlink(name: &[u8], target: &[u8]) -> Node {
    Node {
        linktarget: target.to_vec(),
        ..base(name, "symlink", GO_MODE_SYMLINK | 0o777)
    }
}

/// `node` as one of `links` hard links to inode `inode` (restore links every node with the
/// same device and inode to the first one it restores).
pub fn hard_linked(node: Node, inode: u64, links: u64) -> Node {
    Node {
        inode,
        device_id: 1,
        links,
        ..node
    }
}
