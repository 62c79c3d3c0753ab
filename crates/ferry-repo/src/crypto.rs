//! restic's authenticated encryption: AES-256-CTR with a random 16-byte IV, then a
//! Poly1305-AES MAC over the ciphertext. Layout of a sealed message: `IV || ciphertext || MAC`.

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

pub(crate) mod aes_ctr_vaes;
pub(crate) mod poly1305_ifma;
use aes_ctr_vaes::Keystream;
use poly1305_ifma::Mac;

/// The Poly1305 tag of `data` under the one-time key `key` (r, then s; RFC 8439), as restic's
/// MAC computes it once s is AES-encrypted: with AVX-512 IFMA where the CPU has it.
pub fn poly1305(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    Mac::new(key).tag(data)
}

/// XORs AES-256-CTR's keystream for `key` and the initial counter `iv` (big-endian, 128
/// bits, as restic counts) into `buf`: with VAES where the CPU has it.
pub fn aes256_ctr(key: &[u8; 32], iv: &[u8; 16], buf: &mut [u8]) {
    Keystream::new(key, iv).apply(buf)
}

pub const IV_SIZE: usize = 16;
pub const MAC_SIZE: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = IV_SIZE + MAC_SIZE;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("ciphertext too short ({0} bytes)")]
    TooShort(usize),
    #[error("MAC verification failed (wrong key or corrupted data)")]
    BadMac,
}

/// The master key (or a key derived from a password): an AES-256 key and the Poly1305-AES
/// key pair (k for AES-128 of the nonce, r for the polynomial). Zeroed when dropped.
#[derive(Clone)]
pub struct Key {
    pub encrypt: [u8; 32],
    pub mac_k: [u8; 16],
    pub mac_r: [u8; 16],
}

impl Drop for Key {
    fn drop(&mut self) {
        self.encrypt.zeroize();
        self.mac_k.zeroize();
        self.mac_r.zeroize();
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        let a = self.encrypt.ct_eq(&other.encrypt)
            & self.mac_k.ct_eq(&other.mac_k)
            & self.mac_r.ct_eq(&other.mac_r);
        a.into()
    }
}
impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn random() -> Key {
        Key {
            encrypt: rand::random(),
            mac_k: rand::random(),
            mac_r: rand::random(),
        }
    }

    /// Splits a 64-byte KDF output as restic does: encryption key, MAC k, MAC r.
    pub fn from_kdf_output(out: &[u8; 64]) -> Key {
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        k.encrypt.copy_from_slice(&out[..32]);
        k.mac_k.copy_from_slice(&out[32..48]);
        k.mac_r.copy_from_slice(&out[48..64]);
        k
    }

    fn mac(&self, nonce: &[u8; 16], data: &[u8]) -> [u8; 16] {
        self.mac_state(nonce).tag(data)
    }

    /// The Poly1305-AES state for one message under `nonce`.
    fn mac_state(&self, nonce: &[u8; 16]) -> Mac {
        // s = AES-128_k(nonce); Mac clamps r as restic's masking does.
        let aes = aes::Aes128::new(GenericArray::from_slice(&self.mac_k));
        let mut s = GenericArray::clone_from_slice(nonce);
        aes.encrypt_block(&mut s);
        let mut pkey = [0u8; 32];
        pkey[..16].copy_from_slice(&self.mac_r);
        pkey[16..].copy_from_slice(&s);
        let mac = Mac::new(&pkey);
        pkey.zeroize();
        s.as_mut_slice().zeroize();
        mac
    }

    /// Whether `tag` is the MAC of `data`, compared in constant time.
    fn verify(&self, nonce: &[u8; 16], data: &[u8], tag: &[u8]) -> bool {
        self.mac(nonce, data).ct_eq(tag).into()
    }

    /// Encrypts `plaintext` with a fresh random IV; returns `IV || ciphertext || MAC`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        let iv: [u8; 16] = rand::random();
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
        Keystream::new(&self.encrypt, &iv).apply(&mut out[IV_SIZE..]);
        let tag = self.mac(&iv, &out[IV_SIZE..]);
        out.extend_from_slice(&tag);
        out
    }

    /// Seals in place what `buf` holds from `start` on: `buf[start..start + IV_SIZE]` is room
    /// for the IV and the plaintext follows it; the plaintext is encrypted where it lies and
    /// the MAC appended, so `buf[start..]` becomes `IV || ciphertext || MAC`, exactly what
    /// [`Key::seal`] returns. `sealed` sees those bytes in order, a segment at a time while
    /// each is still in cache (the pack's SHA-256 runs there).
    pub fn seal_in_place(&self, buf: &mut Vec<u8>, start: usize, mut sealed: impl FnMut(&[u8])) {
        /// Bytes encrypted, MACed and passed on at a time: a multiple of the MAC's block.
        const SEGMENT: usize = 32 * 1024;
        assert!(
            buf.len() >= start + IV_SIZE,
            "seal_in_place: no room for the IV"
        );
        let iv: [u8; 16] = rand::random();
        buf[start..start + IV_SIZE].copy_from_slice(&iv);
        sealed(&iv);
        let mut cipher = Keystream::new(&self.encrypt, &iv);
        let mut mac = self.mac_state(&iv);
        let body = &mut buf[start + IV_SIZE..];
        let whole = body.len() / MAC_SIZE * MAC_SIZE;
        let (blocks, tail) = body.split_at_mut(whole);
        for segment in blocks.chunks_mut(SEGMENT) {
            cipher.apply(segment);
            mac.update(segment);
            sealed(segment);
        }
        cipher.apply(tail);
        sealed(tail);
        let tag = mac.finish(tail);
        sealed(&tag);
        buf.extend_from_slice(&tag);
    }

    /// Verifies `IV || ciphertext || MAC` and decrypts it into `out`, which must be exactly
    /// as long as the ciphertext (`sealed.len() - OVERHEAD`). For sealed data that cannot be
    /// written to (a mapped file); `out` is untouched when the MAC fails.
    pub fn open_to(&self, sealed: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::TooShort(sealed.len()));
        }
        let (iv, rest) = sealed.split_at(IV_SIZE);
        let (ct, tag) = rest.split_at(rest.len() - MAC_SIZE);
        assert_eq!(out.len(), ct.len(), "open_to: output of the wrong length");
        let iv: [u8; 16] = iv.try_into().expect("16 bytes");
        if !self.verify(&iv, ct, tag) {
            return Err(CryptoError::BadMac);
        }
        Keystream::new(&self.encrypt, &iv).apply_to(ct, out);
        Ok(())
    }

    /// Verifies and decrypts `IV || ciphertext || MAC`.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::TooShort(sealed.len()));
        }
        let (iv, rest) = sealed.split_at(IV_SIZE);
        let (ct, tag) = rest.split_at(rest.len() - MAC_SIZE);
        let iv: [u8; 16] = iv.try_into().expect("16 bytes");
        if !self.verify(&iv, ct, tag) {
            return Err(CryptoError::BadMac);
        }
        let mut out = ct.to_vec();
        Keystream::new(&self.encrypt, &iv).apply(&mut out);
        Ok(out)
    }
}

/// The master key as restic stores it (encrypted) in a key file's `data`. Its base64 text
/// is key material too, zeroed when dropped.
#[derive(Serialize, Deserialize)]
pub struct MasterKeyJson {
    pub mac: MacKeyJson,
    pub encrypt: String,
}

#[derive(Serialize, Deserialize)]
pub struct MacKeyJson {
    pub k: String,
    pub r: String,
}

impl Drop for MasterKeyJson {
    fn drop(&mut self) {
        self.encrypt.zeroize();
    }
}

impl Drop for MacKeyJson {
    fn drop(&mut self) {
        self.k.zeroize();
        self.r.zeroize();
    }
}

impl MasterKeyJson {
    pub fn from_key(key: &Key) -> Self {
        MasterKeyJson {
            mac: MacKeyJson {
                k: B64.encode(key.mac_k),
                r: B64.encode(key.mac_r),
            },
            encrypt: B64.encode(key.encrypt),
        }
    }

    pub fn to_key(&self) -> Option<Key> {
        let mut key = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        decode_into(&self.encrypt, &mut key.encrypt)?;
        decode_into(&self.mac.k, &mut key.mac_k)?;
        decode_into(&self.mac.r, &mut key.mac_r)?;
        Some(key)
    }
}

/// Decodes base64 key material into `out`, which it must fill exactly; the decoded copy
/// is zeroed.
fn decode_into(b64: &str, out: &mut [u8]) -> Option<()> {
    let mut bytes = zeroize::Zeroizing::new(B64.decode(b64).ok()?);
    if bytes.len() != out.len() {
        return None;
    }
    out.copy_from_slice(&bytes);
    bytes.zeroize();
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_detects_tampering() {
        let key = Key::random();
        let msg = b"hello restic world, more than one block of data here".to_vec();
        let mut sealed = key.seal(&msg);
        assert_eq!(sealed.len(), msg.len() + OVERHEAD);
        assert_eq!(key.open(&sealed).unwrap(), msg);
        let mut out = vec![0u8; msg.len()];
        key.open_to(&sealed, &mut out).unwrap();
        assert_eq!(out, msg);
        sealed[20] ^= 1;
        assert_eq!(key.open(&sealed), Err(CryptoError::BadMac));
        let mut out = vec![7u8; msg.len()];
        assert_eq!(key.open_to(&sealed, &mut out), Err(CryptoError::BadMac));
        assert_eq!(
            out,
            vec![7u8; msg.len()],
            "nothing decrypted when the MAC fails"
        );
        assert_eq!(
            Key::random().open(&key.seal(&msg)),
            Err(CryptoError::BadMac)
        );
    }

    #[test]
    fn seal_in_place_matches_seal_and_reports_every_byte() {
        let key = Key::random();
        for len in [
            0usize,
            1,
            15,
            16,
            17,
            100,
            32 * 1024,
            32 * 1024 + 5,
            100_000,
            1 << 20,
        ] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut buf = b"prefix".to_vec();
            buf.extend_from_slice(&[0u8; IV_SIZE]);
            buf.extend_from_slice(&msg);
            let mut seen = Vec::new();
            key.seal_in_place(&mut buf, 6, |b| seen.extend_from_slice(b));
            assert_eq!(&buf[..6], b"prefix");
            assert_eq!(buf.len(), 6 + len + OVERHEAD);
            assert_eq!(seen, &buf[6..], "len {len}");
            assert_eq!(key.open(&buf[6..]).unwrap(), msg, "len {len}");
        }
    }
}
