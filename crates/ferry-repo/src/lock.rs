//! Repository locks (`locks/<id>`), compatible with restic: shared locks for backup, restore
//! and check, exclusive ones for maintenance. A lock is stale when it is older than 30
//! minutes, or when it was made on this host by a process that no longer exists. Held locks
//! are refreshed every 5 minutes by writing a new lock file and removing the old one.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, FileType, Handle};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::repository::Repository;
use crate::tree::parse_time;

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockFile {
    pub time: String,
    #[serde(default)]
    pub exclusive: bool,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

impl LockFile {
    fn new(exclusive: bool) -> LockFile {
        LockFile {
            time: crate::tree::format_now(),
            exclusive,
            hostname: crate::sys::hostname(),
            username: crate::sys::username(),
            pid: crate::sys::pid(),
            uid: crate::sys::uid(),
            gid: crate::sys::gid(),
        }
    }

    /// restic's staleness rule.
    pub fn is_stale(&self) -> bool {
        let age = match parse_time(&self.time) {
            Some((secs, _)) => jiff::Timestamp::now().as_second() - secs,
            None => return true,
        };
        if age > STALE_AFTER.as_secs() as i64 {
            return true;
        }
        self.hostname == crate::sys::hostname() && !crate::sys::process_exists(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "{}@{} (pid {}, since {})",
            self.username, self.hostname, self.pid, self.time
        )
    }
}

/// A held lock. Release it with [`RepoLock::release`]; dropping it stops the refresh and
/// removes the file in the background.
pub struct RepoLock {
    repo: Repository,
    current: Arc<std::sync::Mutex<Id>>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl RepoLock {
    pub async fn release(mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let id = *self.current.lock().unwrap();
        let _ = self
            .repo
            .backend()
            .remove(&Handle::new(FileType::Lock, id.to_hex()))
            .await;
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
            let id = *self.current.lock().unwrap();
            let backend = self.repo.backend().clone();
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    let _ = backend
                        .remove(&Handle::new(FileType::Lock, id.to_hex()))
                        .await;
                });
            }
        }
    }
}

impl Repository {
    /// All lock files with their contents (unreadable ones are skipped).
    pub async fn list_locks(&self) -> Result<Vec<(Id, LockFile)>> {
        let mut out = Vec::new();
        for id in self.list_ids(FileType::Lock).await? {
            match self.load_unpacked(FileType::Lock, &id).await {
                Ok(plain) => {
                    if let Ok(l) = serde_json::from_slice::<LockFile>(&plain) {
                        out.push((id, l));
                    }
                }
                Err(e) => tracing::debug!(lock = %id, error = %e, "unreadable lock"),
            }
        }
        Ok(out)
    }

    /// Takes a shared (`exclusive = false`) or exclusive lock.
    pub async fn lock(&self, exclusive: bool) -> Result<RepoLock> {
        self.check_conflicts(exclusive, None).await?;
        let me = LockFile::new(exclusive);
        let id = self
            .save_unpacked(
                FileType::Lock,
                serde_json::to_vec(&me).expect("lock serializes"),
            )
            .await
            .map_err(|e| match e {
                RepoError::Backend(BackendError::ReadOnly { what, message }) => {
                    RepoError::LockNotWritable {
                        location: self.location(),
                        reason: format!("{what}: {message}"),
                    }
                }
                e => e,
            })?;
        // Someone may have locked between our check and our write: check again.
        if let Err(e) = self.check_conflicts(exclusive, Some(id)).await {
            let _ = self
                .backend()
                .remove(&Handle::new(FileType::Lock, id.to_hex()))
                .await;
            return Err(e);
        }
        let current = Arc::new(std::sync::Mutex::new(id));
        let repo = self.clone();
        let cur = current.clone();
        let refresher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let fresh = LockFile::new(exclusive);
                let json = serde_json::to_vec(&fresh).expect("lock serializes");
                match repo.save_unpacked(FileType::Lock, json).await {
                    Ok(new_id) => {
                        let old = std::mem::replace(&mut *cur.lock().unwrap(), new_id);
                        let _ = repo
                            .backend()
                            .remove(&Handle::new(FileType::Lock, old.to_hex()))
                            .await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot refresh repository lock"),
                }
            }
        });
        Ok(RepoLock {
            repo: self.clone(),
            current,
            refresher: Some(refresher),
        })
    }

    async fn check_conflicts(&self, exclusive: bool, own: Option<Id>) -> Result<()> {
        for (id, l) in self.list_locks().await? {
            if Some(id) == own || l.is_stale() {
                continue;
            }
            if exclusive || l.exclusive {
                return Err(RepoError::Locked {
                    location: self.location(),
                    kind: if l.exclusive { "exclusively" } else { "shared" },
                    holder: l.describe(),
                });
            }
        }
        Ok(())
    }

    /// Removes every lock file, held or stale, readable or not (restic's
    /// `unlock --remove-all`); returns how many.
    pub async fn remove_all_locks(&self) -> Result<usize> {
        let ids = self.list_ids(FileType::Lock).await?;
        for id in &ids {
            self.backend()
                .remove(&Handle::new(FileType::Lock, id.to_hex()))
                .await?;
        }
        Ok(ids.len())
    }

    /// Removes stale locks; returns how many.
    pub async fn unlock_stale(&self) -> Result<usize> {
        let mut n = 0;
        for (id, l) in self.list_locks().await? {
            if l.is_stale() {
                self.backend()
                    .remove(&Handle::new(FileType::Lock, id.to_hex()))
                    .await?;
                n += 1;
            }
        }
        Ok(n)
    }
}
