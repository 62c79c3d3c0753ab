//! Key files (`keys/<id>`): plain JSON holding the master key sealed with a key derived from
//! the password by scrypt.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::crypto::{Key, MasterKeyJson};

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
    #[error("unsupported KDF {0:?}")]
    UnsupportedKdf(String),
    #[error("invalid scrypt parameters N={n} r={r} p={p}")]
    BadParams { n: u64, r: u32, p: u32 },
    #[error("malformed key file: {0}")]
    Malformed(String),
    #[error("wrong password")]
    WrongPassword,
}

/// scrypt parameters ferry uses for new keys: N=2^15, r=8, p=1 (restic calibrates; any
/// valid parameters interoperate because they are stored in the key file).
pub const NEW_KEY_LOG_N: u8 = 15;
pub const NEW_KEY_R: u32 = 8;
pub const NEW_KEY_P: u32 = 1;

pub fn derive(password: &str, salt: &[u8], n: u64, r: u32, p: u32) -> Result<Key, KeyFileError> {
    if n < 2 || !n.is_power_of_two() {
        return Err(KeyFileError::BadParams { n, r, p });
    }
    let log_n = n.trailing_zeros() as u8;
    let params =
        scrypt::Params::new(log_n, r, p, 64).map_err(|_| KeyFileError::BadParams { n, r, p })?;
    let mut out = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out)
        .map_err(|_| KeyFileError::BadParams { n, r, p })?;
    Ok(Key::from_kdf_output(&out))
}

impl KeyFile {
    /// Opens the master key with `password` (slow: runs scrypt).
    pub fn open(&self, password: &str) -> Result<Key, KeyFileError> {
        if self.kdf != "scrypt" {
            return Err(KeyFileError::UnsupportedKdf(self.kdf.clone()));
        }
        let salt = B64
            .decode(&self.salt)
            .map_err(|e| KeyFileError::Malformed(format!("salt: {e}")))?;
        let data = B64
            .decode(&self.data)
            .map_err(|e| KeyFileError::Malformed(format!("data: {e}")))?;
        let user_key = derive(password, &salt, self.n, self.r, self.p)?;
        let plain = user_key
            .open(&data)
            .map_err(|_| KeyFileError::WrongPassword)?;
        let master: MasterKeyJson = serde_json::from_slice(&plain)
            .map_err(|e| KeyFileError::Malformed(format!("master key: {e}")))?;
        master
            .to_key()
            .ok_or_else(|| KeyFileError::Malformed("master key has wrong lengths".into()))
    }

    /// A new key file sealing `master` with `password`.
    pub fn create(password: &str, master: &Key) -> KeyFile {
        let salt: [u8; 64] = rand::random();
        let n = 1u64 << NEW_KEY_LOG_N;
        let user_key =
            derive(password, &salt, n, NEW_KEY_R, NEW_KEY_P).expect("fixed scrypt params valid");
        let plain = serde_json::to_vec(&MasterKeyJson::from_key(master)).expect("serialize");
        KeyFile {
            created: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
            username: crate::sys::username(),
            hostname: crate::sys::hostname(),
            kdf: "scrypt".into(),
            n,
            r: NEW_KEY_R,
            p: NEW_KEY_P,
            salt: B64.encode(salt),
            data: B64.encode(user_key.seal(&plain)),
        }
    }
}
