//! An open repository: the backend, the master key, the config, and the index.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::backend::{Backend, BackendError, FileType, Handle};
use crate::config::RepoConfig;
use crate::crypto::Key;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{IndexJson, MasterIndex};
use crate::kdf::KdfParams;
use crate::keyfile::{KeyFile, KeyFileError};
use crate::pack::BlobType;
use crate::prefetch::Prefetched;
use crate::snapshot::Snapshot;
use crate::tree::Tree;

/// At most this many key files are tried when opening (restic does the same).
const MAX_KEYS_TRIED: usize = 20;

/// An open repository. Cloning is cheap and clones share the cached index.
#[derive(Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: Key,
    config: RepoConfig,
    index: Arc<tokio::sync::Mutex<Option<Arc<MasterIndex>>>>,
    /// Snapshot and index files read while the key was derived.
    prefetched: Arc<Prefetched>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.backend.location())
            .field("config", &self.config)
            .finish()
    }
}

/// Finds the key file that `password` opens among `keys` (name, size). Wrong passwords move
/// on to the next key; a corrupt key file is named in the error when no key opens.
async fn open_master_key(
    backend: &Arc<dyn Backend>,
    keys: Vec<(String, u64)>,
    password: &str,
) -> Result<Key> {
    let location = backend.location();
    let mut corrupt: Option<RepoError> = None;
    let mut wrong = 0;
    for (name, _) in keys.into_iter().take(MAX_KEYS_TRIED) {
        let raw = backend
            .load(&Handle::new(FileType::Key, &name), None)
            .await?;
        let pw = zeroize::Zeroizing::new(password.to_string());
        match blocking(move || crate::keyfile::open_cached(&raw, &pw)).await {
            Ok(k) => {
                if let Some(e) = corrupt {
                    tracing::warn!(error = %e, "another key opened the repository");
                }
                return Ok(k);
            }
            Err(KeyFileError::WrongPassword) => wrong += 1,
            Err(KeyFileError::Corrupt(reason)) => {
                let e = RepoError::CorruptKey {
                    what: format!("keys/{name}"),
                    reason,
                };
                tracing::warn!(error = %e, "skipping a corrupt key file");
                corrupt.get_or_insert(e);
            }
            Err(KeyFileError::Kdf(e)) => {
                return Err(RepoError::KeyDerivation {
                    what: format!("keys/{name}"),
                    reason: e.to_string(),
                });
            }
        }
    }
    // Only corrupt keys: say so. Some key refused the password: that is the likelier cause
    // (the corrupt one was warned about above).
    match corrupt {
        Some(e) if wrong == 0 => Err(e),
        _ => Err(RepoError::WrongPassword { location }),
    }
}

/// Decompresses an unpacked file's plaintext: version 2 prefixes compressed JSON with byte 2,
/// plain JSON starts with `{` or `[`.
pub(crate) fn decode_unpacked(plain: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    match plain.first() {
        Some(2) => zstd::stream::decode_all(&plain[1..]).map_err(|e| format!("zstd: {e}")),
        _ => Ok(plain),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

impl Repository {
    /// Opens the repository in `backend` with `password`.
    pub async fn open(backend: Arc<dyn Backend>, password: &str) -> Result<Repository> {
        let location = backend.location();
        let config_raw = match backend.load(&Handle::config(), None).await {
            Ok(b) => b,
            Err(BackendError::NotFound(_)) => return Err(RepoError::NoRepository { location }),
            Err(e) => return Err(e.into()),
        };
        let mut keys = backend.list(FileType::Key).await?;
        if keys.is_empty() {
            return Err(RepoError::NoKey { location });
        }
        keys.sort();
        let prefetched = Arc::new(Prefetched::default());
        let key = {
            let key = open_master_key(&backend, keys, password);
            let fill = prefetched.fill(&backend);
            tokio::pin!(key, fill);
            // The reads go on only while the key is derived: once it is ready, whatever
            // they have not read yet is read when asked for.
            tokio::select! {
                key = &mut key => key,
                () = &mut fill => key.await,
            }
        }?;
        let plain = key.open(&config_raw).map_err(|_| RepoError::CorruptFile {
            what: format!("{location}/config"),
            reason: "MAC verification failed".into(),
        })?;
        let plain = decode_unpacked(plain).map_err(|reason| RepoError::CorruptFile {
            what: "config".into(),
            reason,
        })?;
        let config: RepoConfig =
            serde_json::from_slice(&plain).map_err(|e| RepoError::CorruptFile {
                what: "config".into(),
                reason: e.to_string(),
            })?;
        if !(1..=2).contains(&config.version) {
            return Err(RepoError::UnsupportedVersion(config.version));
        }
        Ok(Repository {
            backend,
            key,
            config,
            index: Arc::new(tokio::sync::Mutex::new(None)),
            prefetched,
        })
    }

    /// Creates a new version-2 repository in an empty `backend` location; the key's scrypt
    /// parameters are calibrated as restic calibrates them.
    pub async fn init(backend: Arc<dyn Backend>, password: &str) -> Result<Repository> {
        Repository::init_with_kdf(backend, password, None).await
    }

    /// [`Repository::init`] with given scrypt parameters instead of calibrated ones (tests
    /// that create many repositories use cheap ones).
    ///
    /// Safe against concurrent creation of the same repository (data movers of one backup
    /// start together, on different nodes): the config is written first, with the backend's
    /// atomic create-if-absent ([`Backend::save_new`]), and that decides the winner. Only the
    /// winner then writes its key file; the others get [`RepoError::AlreadyExists`] having
    /// written nothing, and open the winner's repository (see [`Repository::open_or_init`]).
    /// restic writes the key first; a reader that comes between our two writes finds a
    /// config without a key ([`RepoError::NoKey`], restic: "no key found"), a moment only.
    pub async fn init_with_kdf(
        backend: Arc<dyn Backend>,
        password: &str,
        kdf: Option<KdfParams>,
    ) -> Result<Repository> {
        let location = backend.location();
        if password.is_empty() {
            return Err(RepoError::EmptyPassword);
        }
        // Saves deriving a key for nothing; the decision is taken below.
        match backend.stat(&Handle::config()).await {
            Ok(_) => return Err(RepoError::AlreadyExists { location }),
            Err(BackendError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        backend.create().await?;
        let key = Key::random();
        let pol = crate::chunker::Pol::random_irreducible();
        let config = RepoConfig {
            version: 2,
            id: Id::random().to_hex(),
            chunker_polynomial: format!("{:x}", pol.0),
        };
        let pw = zeroize::Zeroizing::new(password.to_string());
        let master = key.clone();
        let kf = blocking(move || match kdf {
            Some(params) => KeyFile::create_with(&pw, &master, params),
            None => KeyFile::create(&pw, &master),
        })
        .await
        .map_err(|e| RepoError::KeyDerivation {
            what: format!("a new key for {location}"),
            reason: e.to_string(),
        })?;
        let kf_bytes = serde_json::to_vec_pretty(&kf).expect("key file serializes");
        // The config is never compressed: its version says whether compression exists.
        // Sealed with a random nonce, so its bytes are ours alone (as save_new asks).
        let cfg = key.seal(&serde_json::to_vec(&config).expect("config serializes"));
        if !backend
            .save_new(&Handle::config(), Bytes::from(cfg))
            .await?
        {
            return Err(RepoError::AlreadyExists { location });
        }
        backend
            .save(
                &Handle::new(FileType::Key, Id::hash(&kf_bytes).to_hex()),
                Bytes::from(kf_bytes),
            )
            .await?;
        Ok(Repository {
            backend,
            key,
            config,
            index: Arc::new(tokio::sync::Mutex::new(None)),
            prefetched: Arc::default(),
        })
    }

    /// Opens the repository, creating it if there is none, when other processes may be doing
    /// the same at the same moment. Exactly one of them creates it; the others open it once
    /// its creator has written its key, waiting (backing off) up to `wait` for that. A wrong
    /// password, a damaged repository or a backend failure end it at once.
    pub async fn open_or_init(
        backend: Arc<dyn Backend>,
        password: &str,
        kdf: Option<KdfParams>,
        wait: std::time::Duration,
    ) -> Result<Repository> {
        use std::time::{Duration, Instant};
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            let pending = match Repository::open(backend.clone(), password).await {
                Ok(repo) => return Ok(repo),
                Err(RepoError::NoRepository { .. }) => {
                    match Repository::init_with_kdf(backend.clone(), password, kdf).await {
                        Ok(repo) => {
                            tracing::info!(location = %repo.location(), "created the repository");
                            return Ok(repo);
                        }
                        // Another process created it first: open theirs once it has a key.
                        Err(e @ RepoError::AlreadyExists { .. }) => e,
                        Err(e) => return Err(e),
                    }
                }
                // Its creator has written the config, not yet its key.
                Err(e @ RepoError::NoKey { .. }) => e,
                Err(e) => return Err(e),
            };
            let waited = started.elapsed();
            if waited + delay > wait {
                return Err(RepoError::NotReady {
                    waited_secs: waited.as_secs(),
                    last: Box::new(pending),
                });
            }
            tracing::info!(
                location = %backend.location(),
                reason = %pending,
                retry_in_ms = delay.as_millis() as u64,
                "another process is creating the repository; waiting"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The chunker polynomial of this repository.
    pub fn polynomial(&self) -> Result<crate::chunker::Pol> {
        self.config
            .polynomial()
            .map(crate::chunker::Pol)
            .ok_or_else(|| RepoError::CorruptFile {
                what: "config".into(),
                reason: format!(
                    "chunker_polynomial {:?} is not hex",
                    self.config.chunker_polynomial
                ),
            })
    }

    pub fn compression(&self) -> bool {
        self.config.version >= 2
    }

    /// Loads, verifies, decrypts and decompresses a non-pack file.
    pub async fn load_unpacked(&self, kind: FileType, id: &Id) -> Result<Vec<u8>> {
        let h = Handle::new(kind, id.to_hex());
        let raw = match self.prefetched.take(kind, id) {
            Some(raw) => raw,
            None => self.backend.load(&h, None).await?,
        };
        let key = self.key.clone();
        let id = *id;
        blocking(move || {
            if Id::hash(&raw) != id {
                return Err(RepoError::CorruptFile {
                    what: h.to_string(),
                    reason: "content does not match its name (SHA-256)".into(),
                });
            }
            let plain = key.open(&raw).map_err(|_| RepoError::CorruptFile {
                what: h.to_string(),
                reason: "MAC verification failed".into(),
            })?;
            decode_unpacked(plain).map_err(|reason| RepoError::CorruptFile {
                what: h.to_string(),
                reason,
            })
        })
        .await
    }

    /// Encrypts (and for version 2 compresses) a JSON file and stores it; returns its id.
    pub async fn save_unpacked(&self, kind: FileType, json: Vec<u8>) -> Result<Id> {
        let key = self.key.clone();
        let compress = self.compression();
        let sealed = blocking(move || {
            let plain = if compress {
                let mut p = vec![2u8];
                p.extend(crate::compression::compress(&json).expect("zstd compress"));
                p
            } else {
                json
            };
            key.seal(&plain)
        })
        .await;
        let id = Id::hash(&sealed);
        self.backend
            .save(&Handle::new(kind, id.to_hex()), Bytes::from(sealed))
            .await?;
        Ok(id)
    }

    /// The ids of all files of a kind.
    pub async fn list_ids(&self, kind: FileType) -> Result<Vec<Id>> {
        Ok(self
            .backend
            .list(kind)
            .await?
            .into_iter()
            .filter_map(|(n, _)| n.parse().ok())
            .collect())
    }

    /// All snapshots, oldest first, and the snapshot files that cannot be read (damaged,
    /// not decryptable, not JSON) with why. restic lists the readable ones and warns about
    /// the rest; whatever deletes data must not (see [`Repository::snapshots`]).
    pub async fn snapshots_skipping_unreadable(
        &self,
    ) -> Result<(Vec<Snapshot>, Vec<(Id, RepoError)>)> {
        let ids = self.list_ids(FileType::Snapshot).await?;
        let loaded: Vec<(Id, Result<Snapshot>)> = futures::stream::iter(ids)
            .map(|id| async move { (id, self.load_snapshot(&id).await) })
            .buffer_unordered(8)
            .collect()
            .await;
        self.prefetched.forget(FileType::Snapshot);
        let mut snaps = Vec::new();
        let mut unreadable = Vec::new();
        for (id, r) in loaded {
            match r {
                Ok(s) => snaps.push(s),
                // A backend failure is not the file's fault: fail as before.
                Err(RepoError::Backend(e)) if !matches!(e, BackendError::NotFound(_)) => {
                    return Err(RepoError::Backend(e));
                }
                Err(e) => unreadable.push((id, e)),
            }
        }
        snaps.sort_by_key(|s| s.unix_time());
        unreadable.sort_by_key(|(id, _)| *id);
        Ok((snaps, unreadable))
    }

    /// All snapshots, oldest first; any unreadable snapshot file is an error (for
    /// operations that delete data, which must know every snapshot's references).
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let ids = self.list_ids(FileType::Snapshot).await?;
        let mut snaps: Vec<Snapshot> = futures::stream::iter(ids)
            .map(|id| async move { self.load_snapshot(&id).await })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        self.prefetched.forget(FileType::Snapshot);
        snaps.sort_by_key(|s| s.unix_time());
        Ok(snaps)
    }

    pub async fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let plain = self.load_unpacked(FileType::Snapshot, id).await?;
        let mut s: Snapshot =
            serde_json::from_slice(&plain).map_err(|e| RepoError::CorruptFile {
                what: format!("snapshots/{id}"),
                reason: e.to_string(),
            })?;
        s.id = *id;
        Ok(s)
    }

    /// Finds a snapshot by full id, unique id prefix, or `latest`.
    pub async fn find_snapshot(&self, spec: &str) -> Result<Snapshot> {
        let location = self.location();
        if spec == "latest" {
            let (mut snaps, unreadable) = self.snapshots_skipping_unreadable().await?;
            for (id, e) in unreadable {
                tracing::warn!(snapshot = %id, error = %e, "skipping an unreadable snapshot");
            }
            return snaps.pop().ok_or(RepoError::SnapshotNotFound {
                id: spec.into(),
                location,
            });
        }
        let spec_l = spec.to_ascii_lowercase();
        let ids = self.list_ids(FileType::Snapshot).await?;
        let matches: Vec<Id> = ids
            .into_iter()
            .filter(|i| !spec_l.is_empty() && i.to_hex().starts_with(&spec_l))
            .collect();
        match matches.as_slice() {
            [one] => self.load_snapshot(one).await,
            [] => Err(RepoError::SnapshotNotFound {
                id: spec.into(),
                location,
            }),
            _ => Err(RepoError::AmbiguousSnapshot {
                id: spec.into(),
                location,
            }),
        }
    }

    pub async fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        let json = serde_json::to_vec(snap).expect("snapshot serializes");
        self.save_unpacked(FileType::Snapshot, json).await
    }

    /// The master index, loaded on first use.
    pub async fn index(&self) -> Result<Arc<MasterIndex>> {
        let mut guard = self.index.lock().await;
        if let Some(i) = guard.as_ref() {
            return Ok(i.clone());
        }
        let ids = self.list_ids(FileType::Index).await?;
        let files: Vec<IndexJson> = futures::stream::iter(ids)
            .map(|id| async move {
                let plain = self.load_unpacked(FileType::Index, &id).await?;
                blocking(move || {
                    serde_json::from_slice::<IndexJson>(&plain).map_err(|e| {
                        RepoError::CorruptFile {
                            what: format!("index/{id}"),
                            reason: e.to_string(),
                        }
                    })
                })
                .await
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        self.prefetched.forget(FileType::Index);
        let mut mi = MasterIndex::default();
        for f in &files {
            mi.add(f);
        }
        let mi = Arc::new(mi);
        *guard = Some(mi.clone());
        Ok(mi)
    }

    /// Forgets the cached index (after new index files were written).
    pub async fn invalidate_index(&self) {
        *self.index.lock().await = None;
    }

    /// Loads one blob: fetch, verify MAC, decrypt, decompress, verify its id.
    pub async fn load_blob(&self, kind: BlobType, id: &Id) -> Result<Vec<u8>> {
        self.load_blob_then(kind, id, Ok).await
    }

    /// Loads one blob and turns it into a `T` with `then`, on the same blocking thread as the
    /// decoding: a tree's JSON is parsed there too, so a level of trees loaded at once is
    /// parsed on every CPU, not one after another on the task that awaits them.
    async fn load_blob_then<T: Send + 'static>(
        &self,
        kind: BlobType,
        id: &Id,
        then: impl FnOnce(Vec<u8>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let index = self.index().await?;
        let loc = index.get(kind, id).ok_or_else(|| RepoError::MissingBlob {
            blob: id.to_hex(),
            needed_by: format!("{kind} blob lookup"),
        })?;
        let pack = index.pack_id(loc.pack);
        let raw = self
            .backend
            .load(
                &Handle::new(FileType::Pack, pack.to_hex()),
                Some(loc.offset as u64..loc.offset as u64 + loc.length as u64),
            )
            .await?;
        let key = self.key.clone();
        let id = *id;
        blocking(move || {
            let plain =
                decode_blob(&key, &raw, loc.uncompressed_length, &id).map_err(|reason| {
                    RepoError::Corrupt {
                        pack: pack.to_hex(),
                        file: format!("{kind} blob {id}"),
                        reason,
                    }
                })?;
            then(plain)
        })
        .await
    }

    pub async fn load_tree(&self, id: &Id) -> Result<Tree> {
        let tree = *id;
        self.load_blob_then(BlobType::Tree, id, move |raw| {
            serde_json::from_slice(&raw).map_err(|e| RepoError::CorruptFile {
                what: format!("tree {tree}"),
                reason: e.to_string(),
            })
        })
        .await
    }
}

/// Verifies, decrypts and (when `uncompressed_length > 0`) decompresses one sealed blob,
/// then checks that its SHA-256 is `id`.
pub fn decode_blob(
    key: &Key,
    sealed: &[u8],
    uncompressed_length: u32,
    id: &Id,
) -> std::result::Result<Vec<u8>, String> {
    let len = match uncompressed_length {
        0 => sealed.len().saturating_sub(crate::crypto::OVERHEAD),
        n => n as usize,
    };
    // Zeroed by the allocator (fresh pages for large blobs), not by a pass over the bytes.
    let mut out = vec![0u8; len];
    decode_blob_to(
        key,
        sealed,
        uncompressed_length,
        id,
        &mut out,
        &mut Vec::new(),
    )?;
    Ok(out)
}

/// [`decode_blob`] into its place: `out` must be the blob's plaintext length (the index's
/// [`crate::index::BlobLocation::plain_len`]). An uncompressed blob is decrypted straight
/// into `out`; a compressed one into `decrypted` (grown as needed, reused) and decompressed
/// into `out`. Nothing is copied twice, so a caller can gather many blobs in one buffer.
pub fn decode_blob_to(
    key: &Key,
    sealed: &[u8],
    uncompressed_length: u32,
    id: &Id,
    out: &mut [u8],
    decrypted: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    decode_blob_unhashed_to(key, sealed, uncompressed_length, id, out, decrypted)?;
    if Id::hash(out) != *id {
        return Err(blob_id_mismatch(id));
    }
    Ok(())
}

/// The error [`decode_blob_to`] gives when the plaintext's SHA-256 is not the blob's id.
pub fn blob_id_mismatch(id: &Id) -> String {
    format!("blob {id}: content does not match its id")
}

/// [`decode_blob_to`] without its last step, the SHA-256 of the plaintext against `id`
/// (MAC verified, decrypted, decompressed): for a caller that hashes several blobs at once
/// ([`Id::hash_each`]) and then must compare each id itself ([`blob_id_mismatch`]).
pub fn decode_blob_unhashed_to(
    key: &Key,
    sealed: &[u8],
    uncompressed_length: u32,
    id: &Id,
    out: &mut [u8],
    decrypted: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let n = sealed.len().saturating_sub(crate::crypto::OVERHEAD);
    let mac = |_| format!("blob {id}: MAC verification failed");
    if uncompressed_length == 0 {
        if out.len() != n {
            return Err(format!(
                "blob {id}: {n} bytes of plaintext, index says {}",
                out.len()
            ));
        }
        key.open_to(sealed, out).map_err(mac)?;
    } else {
        if out.len() != uncompressed_length as usize {
            return Err(format!(
                "blob {id}: room for {} bytes, index says {uncompressed_length}",
                out.len()
            ));
        }
        if decrypted.len() < n {
            decrypted.resize(n, 0);
        }
        let plain = &mut decrypted[..n];
        key.open_to(sealed, plain).map_err(mac)?;
        crate::compression::decompress_to_slice(plain, out)
            .map_err(|e| format!("blob {id}: zstd: {e}"))?;
    }
    Ok(())
}
