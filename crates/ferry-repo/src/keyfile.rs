//! Key files (`keys/<id>`): plain JSON holding the master key sealed with a key derived from
//! the password by scrypt.

use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{Key, MasterKeyJson};
use crate::id::Id;
use crate::kdf::{self, KdfError, KdfParams};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub hostname: String,
    pub kdf: String,
    #[serde(rename = "N")]
    pub n: u64,
    pub r: u32,
    pub p: u32,
    pub salt: String,
    pub data: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be a key: not JSON, not base64, wrong lengths, parameters beyond
    /// restic's limits. No password would open it.
    #[error("{0}")]
    Corrupt(String),
    #[error("wrong password")]
    WrongPassword,
    #[error("{0}")]
    Kdf(KdfError),
}

/// restic's salt length for new keys.
const SALT_LEN: usize = 64;

impl KeyFile {
    /// Parses a key file's bytes, checking everything that can be checked without the
    /// password: the JSON, the KDF name, scrypt's parameters against restic's limits, the
    /// base64 fields and the sealed master key's length.
    pub fn parse(raw: &[u8]) -> Result<KeyFile, KeyFileError> {
        let kf: KeyFile = serde_json::from_slice(raw)
            .map_err(|e| KeyFileError::Corrupt(format!("not a key file's JSON: {e}")))?;
        if kf.kdf != "scrypt" {
            return Err(KeyFileError::Corrupt(format!(
                "unsupported KDF {:?} (restic uses scrypt)",
                kf.kdf
            )));
        }
        kf.params()
            .check()
            .map_err(|e| KeyFileError::Corrupt(e.to_string()))?;
        let salt = kf.salt_bytes()?;
        if salt.is_empty() {
            return Err(KeyFileError::Corrupt("empty salt".into()));
        }
        let data = kf.data_bytes()?;
        if data.len() <= crate::crypto::OVERHEAD {
            return Err(KeyFileError::Corrupt(format!(
                "sealed master key is {} bytes, too short to hold one",
                data.len()
            )));
        }
        Ok(kf)
    }

    pub fn params(&self) -> KdfParams {
        KdfParams {
            n: self.n,
            r: self.r,
            p: self.p,
        }
    }

    fn salt_bytes(&self) -> Result<Vec<u8>, KeyFileError> {
        B64.decode(&self.salt)
            .map_err(|e| KeyFileError::Corrupt(format!("salt is not base64: {e}")))
    }

    fn data_bytes(&self) -> Result<Vec<u8>, KeyFileError> {
        B64.decode(&self.data)
            .map_err(|e| KeyFileError::Corrupt(format!("data is not base64: {e}")))
    }

    /// Opens the master key with `password` (slow: runs scrypt).
    pub fn open(&self, password: &str) -> Result<Key, KeyFileError> {
        let salt = self.salt_bytes()?;
        let data = self.data_bytes()?;
        let user_key =
            kdf::derive(password.as_bytes(), &salt, self.params()).map_err(|e| match e {
                KdfError::OutOfLimits { .. } => KeyFileError::Corrupt(e.to_string()),
                KdfError::NoMemory { .. } => KeyFileError::Kdf(e),
            })?;
        // A MAC failure here is a wrong password (or a damaged key file: the two cannot be
        // told apart, restic says the same).
        let plain = Zeroizing::new(
            user_key
                .open(&data)
                .map_err(|_| KeyFileError::WrongPassword)?,
        );
        let master: MasterKeyJson = serde_json::from_slice(&plain).map_err(|e| {
            KeyFileError::Corrupt(format!("the decrypted master key is not JSON: {e}"))
        })?;
        master.to_key().ok_or_else(|| {
            KeyFileError::Corrupt("the master key's fields have wrong lengths".into())
        })
    }

    /// A new key file sealing `master` with `password`, with scrypt parameters calibrated as
    /// restic calibrates them.
    pub fn create(password: &str, master: &Key) -> Result<KeyFile, KeyFileError> {
        KeyFile::create_with(password, master, kdf::calibrate())
    }

    /// A new key file with the given scrypt parameters.
    pub fn create_with(
        password: &str,
        master: &Key,
        params: KdfParams,
    ) -> Result<KeyFile, KeyFileError> {
        let salt: [u8; SALT_LEN] = rand::random();
        let user_key = kdf::derive(password.as_bytes(), &salt, params).map_err(|e| match e {
            KdfError::OutOfLimits { .. } => KeyFileError::Corrupt(e.to_string()),
            KdfError::NoMemory { .. } => KeyFileError::Kdf(e),
        })?;
        let mut plain = serde_json::to_vec(&MasterKeyJson::from_key(master)).expect("serialize");
        let sealed = user_key.seal(&plain);
        plain.zeroize();
        Ok(KeyFile {
            created: jiff::Zoned::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.9f%:z")
                .to_string(),
            username: crate::sys::username(),
            hostname: crate::sys::hostname(),
            kdf: "scrypt".into(),
            n: params.n,
            r: params.r,
            p: params.p,
            salt: B64.encode(salt),
            data: B64.encode(sealed),
        })
    }
}

/// Master keys this process has opened, by a keyed hash of (key file, password): a process
/// that opens the same repository again (the data mover per volume, a test, a second
/// command in one run) derives each key once. The hash is keyed with a per-process secret,
/// so what it stores says nothing about the password outside this process.
struct OpenedKeys {
    secret: [u8; 32],
    keys: Vec<(Id, Key)>,
}

static OPENED: Mutex<Option<OpenedKeys>> = Mutex::new(None);
const OPENED_MAX: usize = 16;

fn opened_id(secret: &[u8; 32], key_file: &[u8], password: &str) -> Id {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(secret);
    h.update((key_file.len() as u64).to_le_bytes());
    h.update(key_file);
    h.update(password.as_bytes());
    Id(h.finalize().into())
}

/// Opens a key file's raw bytes with `password`, deriving at most once per process for the
/// same file and password.
pub fn open_cached(raw: &[u8], password: &str) -> Result<Key, KeyFileError> {
    let id = {
        let mut guard = OPENED.lock().unwrap();
        let opened = guard.get_or_insert_with(|| OpenedKeys {
            secret: rand::random(),
            keys: Vec::new(),
        });
        let id = opened_id(&opened.secret, raw, password);
        if let Some((_, k)) = opened.keys.iter().find(|(i, _)| *i == id) {
            return Ok(k.clone());
        }
        id
    };
    let key = KeyFile::parse(raw)?.open(password)?;
    let mut guard = OPENED.lock().unwrap();
    if let Some(opened) = guard.as_mut() {
        if opened.keys.len() >= OPENED_MAX {
            opened.keys.remove(0);
        }
        opened.keys.push((id, key.clone()));
    }
    Ok(key)
}

impl Drop for OpenedKeys {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn low() -> KdfParams {
        KdfParams {
            n: 1024,
            r: 8,
            p: 3,
        }
    }

    #[test]
    fn a_key_file_opens_with_its_password_only() {
        let master = Key::random();
        let kf = KeyFile::create_with("pw", &master, low()).unwrap();
        let raw = serde_json::to_vec(&kf).unwrap();
        let parsed = KeyFile::parse(&raw).unwrap();
        assert_eq!(parsed.open("pw").unwrap(), master);
        assert!(matches!(
            parsed.open("other"),
            Err(KeyFileError::WrongPassword)
        ));
    }

    #[test]
    fn corrupt_key_files_are_named_corrupt_not_a_wrong_password() {
        let kf = KeyFile::create_with("pw", &Key::random(), low()).unwrap();
        let good = serde_json::to_value(&kf).unwrap();
        let with = |field: &str, v: serde_json::Value| {
            let mut j = good.clone();
            j[field] = v;
            serde_json::to_vec(&j).unwrap()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "JSON"),
            (with("salt", "%%%".into()), "salt is not base64"),
            (with("data", "@@@@".into()), "data is not base64"),
            (with("data", B64.encode([1u8; 20]).into()), "too short"),
            (with("kdf", "argon2".into()), "unsupported KDF"),
            (with("N", (1u64 << 25).into()), "outside restic's limits"),
            (with("N", 1000.into()), "outside restic's limits"),
            (with("p", 0.into()), "outside restic's limits"),
        ];
        for (raw, want) in cases {
            match open_cached(&raw, "pw") {
                Err(KeyFileError::Corrupt(m)) => assert!(m.contains(want), "{m} / {want}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_master_key_of_wrong_lengths_is_corrupt() {
        let user = KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        };
        let salt = [7u8; 64];
        let user_key = kdf::derive(b"pw", &salt, user).unwrap();
        let bad = br#"{"mac":{"k":"AAAA","r":"AAAA"},"encrypt":"AAAA"}"#;
        let kf = KeyFile {
            created: String::new(),
            username: String::new(),
            hostname: String::new(),
            kdf: "scrypt".into(),
            n: user.n,
            r: user.r,
            p: user.p,
            salt: B64.encode(salt),
            data: B64.encode(user_key.seal(bad)),
        };
        let raw = serde_json::to_vec(&kf).unwrap();
        match open_cached(&raw, "pw") {
            Err(KeyFileError::Corrupt(m)) => assert!(m.contains("wrong lengths"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wrong_password_is_not_remembered() {
        let master = Key::random();
        let kf = KeyFile::create_with("right", &master, low()).unwrap();
        let raw = serde_json::to_vec(&kf).unwrap();
        assert!(matches!(
            open_cached(&raw, "wrong"),
            Err(KeyFileError::WrongPassword)
        ));
        assert_eq!(open_cached(&raw, "right").unwrap(), master);
        assert_eq!(open_cached(&raw, "right").unwrap(), master);
        assert!(matches!(
            open_cached(&raw, "wrong"),
            Err(KeyFileError::WrongPassword)
        ));
    }
}
