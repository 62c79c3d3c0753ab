//! Entry points for fuzzing the parsers of repository files, shared by the cargo-fuzz
//! targets (`fuzz/`) and the seeded property test (`tests/repo/fuzz_smoke.rs`) that runs in every
//! test run. Each takes arbitrary bytes: it must never panic, and it asserts what must hold
//! for any input the parser accepts.

use crate::crypto::Key;
use crate::index::{IndexJson, MasterIndex};
use crate::keyfile::KeyFile;
use crate::snapshot::Snapshot;
use crate::tree::{self, Tree};

/// A fixed key, so sealed fuzz inputs stay reproducible.
pub fn fixed_key() -> Key {
    let mut out = [0u8; 64];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    Key::from_kdf_output(&out)
}

/// Poly1305: ferry's MAC (AVX-512 IFMA eight blocks at a time where this CPU has it) gives the
/// `poly1305` crate's tag, however the message is cut into updates. Input: a 32-byte key,
/// one byte for the updates' length (in blocks), the message.
pub fn poly1305(data: &[u8]) {
    use poly1305::universal_hash::KeyInit;
    let Some((key, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((&cut, message)) = rest.split_first() else {
        return;
    };
    let want: [u8; 16] = poly1305::Poly1305::new(key.into())
        .compute_unpadded(message)
        .into();
    assert_eq!(crate::crypto::poly1305(key, message), want, "one update");
    let piece = (cut as usize + 1) * 16;
    let whole = message.len() / 16 * 16;
    let mut mac = crate::crypto::poly1305_ifma::Mac::new(key);
    for blocks in message[..whole].chunks(piece) {
        mac.update(blocks);
    }
    assert_eq!(
        mac.finish(&message[whole..]),
        want,
        "updates of {piece} bytes"
    );
}

/// AES-256-CTR: ferry's keystream (VAES where this CPU has it) gives the `aes` and `ctr`
/// crates' ciphertext, however the message is cut into pieces. Input: a 32-byte key, a
/// 16-byte initial counter, one byte for the pieces' length, the message.
pub fn aes_ctr(data: &[u8]) {
    let Some((key, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((iv, rest)) = rest.split_first_chunk::<16>() else {
        return;
    };
    let Some((&cut, message)) = rest.split_first() else {
        return;
    };
    let mut want = message.to_vec();
    crate::crypto::aes_ctr_vaes::Keystream::portable(key, iv).apply(&mut want);
    let mut got = message.to_vec();
    crate::crypto::aes256_ctr(key, iv, &mut got);
    assert!(got == want, "one piece");
    let mut ks = crate::crypto::aes_ctr_vaes::Keystream::new(key, iv);
    let mut pieces = message.to_vec();
    for (i, piece) in pieces.chunks_mut(cut as usize + 1).enumerate() {
        if i % 2 == 0 {
            ks.apply(piece);
        } else {
            let input = piece.to_vec();
            ks.apply_to(&input, piece);
        }
    }
    assert!(pieces == want, "pieces of {} bytes", cut as usize + 1);
}

/// SHA-256 of several messages at once (four interleaved with SHA-NI where this CPU has it)
/// gives the `sha2` crate's digest of each. Input: one byte per message for its length
/// (times 7, so that lengths reach past a few blocks), then the bytes the messages are cut
/// from, reused from the start when they run out.
pub fn sha256_lanes(data: &[u8]) {
    use sha2::Digest;
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = (count % 9) as usize;
    if rest.len() < count {
        return;
    }
    let (lens, bytes) = rest.split_at(count);
    let msgs: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let n = l as usize * 7 + i;
            if bytes.is_empty() {
                vec![0; n]
            } else {
                bytes.iter().copied().cycle().skip(i).take(n).collect()
            }
        })
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let mut got = Vec::new();
    crate::id::Id::hash_each(&refs, &mut got);
    for (m, id) in msgs.iter().zip(&got) {
        let want: [u8; 32] = sha2::Sha256::digest(m).into();
        assert_eq!(id.0, want, "message of {} bytes", m.len());
    }
    assert_eq!(got.len(), msgs.len());
}

/// A tree blob: parsed, checked for unsafe names, and written back to the same tree.
pub fn tree(data: &[u8]) {
    let Ok(t) = serde_json::from_slice::<Tree>(data) else {
        return;
    };
    let _ = tree::entry_problems(&t.nodes);
    for n in &t.nodes {
        let _ = n.name_lossy();
        let quoted = crate::gostr::quote(&n.name);
        assert_eq!(crate::gostr::unquote(&quoted).as_deref(), Ok(&n.name[..]));
    }
    let again: Tree = serde_json::from_slice(&t.to_bytes()).expect("a written tree parses");
    assert_eq!(again.nodes, t.nodes, "a tree survives writing and reading");
}

/// An index file: parsed and merged into a master index, every blob looked up.
pub fn index(data: &[u8]) {
    let Ok(idx) = serde_json::from_slice::<IndexJson>(data) else {
        return;
    };
    let mut mi = MasterIndex::default();
    mi.add(&idx);
    for (kind, id, loc) in mi.iter() {
        assert_eq!(mi.get(kind, id), Some(*loc));
        let _ = loc.plain_len();
        let _ = mi.pack_id(loc.pack);
    }
    let _ = serde_json::to_vec(&idx).expect("an index serializes");
}

/// A snapshot file.
pub fn snapshot(data: &[u8]) {
    let Ok(s) = serde_json::from_slice::<Snapshot>(data) else {
        return;
    };
    let _ = s.unix_time();
    let again: Snapshot =
        serde_json::from_slice(&serde_json::to_vec(&s).expect("serializes")).expect("parses");
    assert_eq!(again, s);
}

/// Largest scrypt cost a key file may ask of the fuzzer (bounding the parameters themselves
/// is the key-derivation code's business).
const FUZZ_MAX_N: u64 = 1 << 10;

/// A key file: parsed and, when its scrypt cost is small, opened with a password.
pub fn key(data: &[u8]) {
    let Ok(kf) = serde_json::from_slice::<KeyFile>(data) else {
        return;
    };
    if kf.n <= FUZZ_MAX_N && kf.r <= 16 && kf.p <= 4 {
        let _ = kf.open("password");
    }
}

/// A pack's tail. The first byte chooses: the rest as raw bytes (lengths, MAC), or the rest
/// as a header's plaintext sealed with [`fixed_key`] behind some blob bytes (entries).
pub fn pack_header(data: &[u8]) {
    let key = fixed_key();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (pack, len) = if mode & 1 == 0 {
        (rest.to_vec(), rest.len() as u64)
    } else {
        let blob_bytes = (mode as usize) * 7;
        let mut pack = vec![0u8; blob_bytes];
        let sealed = key.seal(rest);
        pack.extend_from_slice(&sealed);
        pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let len = pack.len() as u64;
        (pack, len)
    };
    if let Ok(blobs) = crate::pack::parse_header(&key, &pack, len) {
        let mut end = 0u64;
        for b in &blobs {
            assert_eq!(b.offset, end, "blobs follow each other");
            end += b.length as u64;
        }
        assert!(end <= len);
    }
}

/// A deterministic input mutator for running the entry points without a fuzzer (seeded, so
/// a failure reproduces): bit flips, interesting bytes and tokens, deletions, duplications
/// and truncations, a few at a time.
pub struct Mutator(u64);

/// Tokens that tend to break parsers: escapes, multi-byte characters, huge and negative
/// numbers, JSON structure, path pieces.
const TOKENS: &[&str] = &[
    "\\u0000",
    "\\xff",
    "\\",
    "\"",
    "é",
    "€",
    "😀",
    "\u{200b}",
    "18446744073709551616",
    "4294967296",
    "-1",
    "1e999",
    "null",
    "[]",
    "{}",
    "..",
    "/",
    "\n",
    "\"nodes\":",
    "\"type\":\"dir\"",
    "\"N\":1024",
    "0000000000000000000000000000000000000000000000000000000000000000",
];

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `input` with one to four random edits.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len() + 1);
            match self.below(7) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = [0u8, 0xff, 0x80, 0xc3, 0xe2, b'"', b'\\', b'{', b'9'][self.below(9)];
                }
                2 => {
                    let t = TOKENS[self.below(TOKENS.len())].as_bytes();
                    v.splice(at..at, t.iter().copied());
                }
                3 => {
                    let end = (at + self.below(16)).min(v.len());
                    v.drain(at..end);
                }
                4 => {
                    let end = (at + self.below(64)).min(v.len());
                    let piece = v[at..end].to_vec();
                    v.splice(at..at, piece);
                }
                5 => v.truncate(at),
                _ => {
                    let n = self.below(8);
                    for _ in 0..n {
                        let b = self.next() as u8;
                        v.insert(at.min(v.len()), b);
                    }
                }
            }
        }
        v
    }
}
