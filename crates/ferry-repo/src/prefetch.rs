//! Repository files read while the password's key is derived. The derivation keeps the CPUs
//! busy for a fraction of a second (restic calibrates its cost to about half a second), time in
//! which the snapshot and index files that a restore, a backup or a check reads next can come
//! off the disk or over the network. What is read then waits here, encrypted, until it is
//! asked for; what the derivation outlasts is not read at all.
//!
//! A repository file is named by the SHA-256 of its bytes, so a file read early is the file
//! read later, whatever was added or removed in between: the reader lists the files again and
//! takes from here only those it still wants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Backend, FileType, Handle};
use crate::id::Id;

/// At most this many bytes are held (a repository of many terabytes has an index of hundreds
/// of MiB: its first files are read early, the rest when asked for).
const MAX_BYTES: u64 = 64 << 20;
/// Files read at once, as the index load does.
const READS_AT_ONCE: usize = 8;

/// The files read ahead, by kind and id.
#[derive(Default)]
pub(crate) struct Prefetched {
    files: Mutex<HashMap<(FileType, Id), Bytes>>,
}

impl Prefetched {
    /// Reads the snapshot files, then the index files, into this store; ends when all are
    /// read, the byte budget is spent, or a listing fails (the reader will meet the failure
    /// itself). Meant to be dropped (cancelled) when the key is ready.
    pub(crate) async fn fill(&self, backend: &Arc<dyn Backend>) {
        let mut budget = MAX_BYTES;
        for kind in [FileType::Snapshot, FileType::Index] {
            let Ok(listed) = backend.list(kind).await else {
                return;
            };
            let mut wanted = Vec::new();
            for (name, size) in listed {
                let Ok(id) = name.parse::<Id>() else { continue };
                if size > budget {
                    break;
                }
                budget -= size;
                wanted.push((id, name));
            }
            futures::stream::iter(wanted)
                .map(|(id, name)| async move {
                    let raw = backend.load(&Handle::new(kind, name), None).await;
                    (id, raw)
                })
                .buffer_unordered(READS_AT_ONCE)
                .for_each(|(id, raw)| {
                    // A failed read is retried by the reader, which reports it.
                    if let Ok(raw) = raw {
                        self.files.lock().unwrap().insert((kind, id), raw);
                    }
                    std::future::ready(())
                })
                .await;
            if budget == 0 {
                return;
            }
        }
    }

    /// The file `kind`/`id` if it was read ahead; it is handed out once.
    pub(crate) fn take(&self, kind: FileType, id: &Id) -> Option<Bytes> {
        self.files.lock().unwrap().remove(&(kind, *id))
    }

    /// Drops whatever of `kind` is left (files removed from the repository since they were
    /// read, once every file of that kind that is still listed has been taken).
    pub(crate) fn forget(&self, kind: FileType) {
        self.files.lock().unwrap().retain(|(k, _), _| *k != kind);
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.files.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;

    #[tokio::test]
    async fn reads_snapshots_and_index_files_and_hands_each_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        backend.create().await.unwrap();
        let mut saved = Vec::new();
        for (kind, body) in [
            (FileType::Snapshot, &b"a snapshot"[..]),
            (FileType::Index, &b"an index"[..]),
            (FileType::Pack, &b"a pack: never read ahead"[..]),
        ] {
            let id = Id::hash(body);
            backend
                .save(&Handle::new(kind, id.to_hex()), Bytes::from_static(body))
                .await
                .unwrap();
            saved.push((kind, id, body));
        }
        let pre = Prefetched::default();
        pre.fill(&backend).await;
        assert_eq!(pre.held(), 2);
        for (kind, id, body) in &saved[..2] {
            assert_eq!(pre.take(*kind, id).as_deref(), Some(*body));
            assert_eq!(pre.take(*kind, id), None, "handed out once");
        }
        let (kind, id, _) = saved[2];
        assert_eq!(pre.take(kind, &id), None);
    }

    #[tokio::test]
    async fn forget_drops_one_kind_only() {
        let pre = Prefetched::default();
        let (s, i) = (Id::hash(b"s"), Id::hash(b"i"));
        {
            let mut files = pre.files.lock().unwrap();
            files.insert((FileType::Snapshot, s), Bytes::from_static(b"s"));
            files.insert((FileType::Index, i), Bytes::from_static(b"i"));
        }
        pre.forget(FileType::Index);
        assert_eq!(pre.take(FileType::Index, &i), None);
        assert!(pre.take(FileType::Snapshot, &s).is_some());
    }
}
