//! Content-defined chunking, bit-for-bit compatible with restic's chunker.
//!
//! A Rabin fingerprint is rolled over a 64-byte window of the stream; a chunk ends where the
//! low 20 bits of the fingerprint are zero (1 MiB chunks on average), but never before
//! [`MIN_SIZE`] bytes and never after [`MAX_SIZE`]. The polynomial is the repository's own
//! (stored as hex in its config), so two tools that chunk with the same polynomial cut the same
//! data at the same places and deduplicate against each other.
//!
//! Like restic, the fingerprint is only computed from `MIN_SIZE - 64` bytes into a chunk on: the
//! bytes before cannot end it, so hashing them would be wasted work.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, OnceLock};

/// No chunk is shorter than this, except the last one of a stream.
pub const MIN_SIZE: usize = 512 * 1024;
/// No chunk is longer than this.
pub const MAX_SIZE: usize = 8 * 1024 * 1024;

/// Bytes in the sliding window the fingerprint covers.
const WINDOW_SIZE: usize = 64;
/// A boundary is where these fingerprint bits are all zero: 2^20 bytes between cuts on average.
const SPLIT_MASK: u64 = (1 << 20) - 1;
/// Where in a chunk the fingerprint starts rolling: the window is full exactly at `MIN_SIZE`.
const HASH_START: usize = MIN_SIZE - WINDOW_SIZE;
/// How much is read from the source at a time.
const READ_BUFFER_SIZE: usize = 512 * 1024;
/// How much of the read buffer is appended to a chunk before it is scanned; small enough that
/// bytes copied past a cut (and moved back) cost little.
const SCAN_STEP: usize = 128 * 1024;
/// The fingerprint right after a chunk starts: restic seeds the window with a single 1 byte.
const INITIAL_DIGEST: u64 = 1;

/// A polynomial over GF(2), one bit per coefficient. The chunker uses an irreducible one of
/// degree 53, stored (hex) in the repository config as `chunker_polynomial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pol(pub u64);

/// A polynomial that cannot drive the chunker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolError {
    #[error(
        "chunker polynomial {0:?} is not a hexadecimal number: the repository config's \
         chunker_polynomial must be a hex string such as \"3da3358b4dc173\""
    )]
    NotHex(String),
    #[error(
        "chunker polynomial {0} has degree {1}; it must be between 16 and 56 (restic uses 53): \
         the repository config's chunker_polynomial is damaged"
    )]
    BadDegree(Pol, i32),
    #[error(
        "chunker polynomial {0} is reducible over GF(2): the repository config's \
         chunker_polynomial is damaged"
    )]
    Reducible(Pol),
}

impl Pol {
    /// The degree (index of the highest set coefficient), or -1 for the zero polynomial.
    pub fn deg(self) -> i32 {
        63 - self.0.leading_zeros() as i32
    }

    /// The remainder of `self` divided by `m` (`m` must not be zero).
    pub fn modulo(self, m: Pol) -> Pol {
        assert!(m.0 != 0, "division by the zero polynomial");
        let dm = m.deg();
        let mut x = self.0;
        loop {
            let dx = 63 - x.leading_zeros() as i32;
            if dx < dm {
                return Pol(x);
            }
            x ^= m.0 << (dx - dm);
        }
    }

    /// `self * other mod m`, without overflowing 64 bits (both factors are reduced first).
    pub fn mul_mod(self, other: Pol, m: Pol) -> Pol {
        let dm = m.deg();
        let mut a = self.modulo(m).0;
        let mut b = other.modulo(m).0;
        let mut acc = 0u64;
        while b != 0 {
            if b & 1 == 1 {
                acc ^= a;
            }
            b >>= 1;
            a <<= 1;
            // a had degree < dm, so after the shift it is at most dm: one subtraction reduces it.
            if dm < 63 && a >> dm & 1 == 1 {
                a ^= m.0;
            }
        }
        Pol(acc)
    }

    /// The greatest common divisor.
    pub fn gcd(self, other: Pol) -> Pol {
        let (mut a, mut b) = (self, other);
        while b.0 != 0 {
            (a, b) = (b, a.modulo(b));
        }
        a
    }

    /// Ben-Or's irreducibility test: `self` has no factor of degree `i` for any
    /// `1 <= i <= deg/2` exactly when `gcd(self, x^(2^i) - x mod self) = 1` for each of them.
    pub fn is_irreducible(self) -> bool {
        let d = self.deg();
        if d < 1 {
            return false;
        }
        // x^(2^i) mod self, by repeated squaring, starting from x.
        let mut power = Pol(2).modulo(self);
        for _ in 1..=d / 2 {
            power = power.mul_mod(power, self);
            let q = Pol(power.0 ^ 2).modulo(self);
            if self.gcd(q).0 != 1 {
                return false;
            }
        }
        true
    }

    /// A fresh random irreducible polynomial of degree 53, as `restic init` picks one: 51
    /// random bits plus the top (degree 53) and bottom (not divisible by x) coefficients.
    pub fn random_irreducible() -> Pol {
        Self::random_irreducible_from(&mut rand::rng())
    }

    /// Like [`Pol::random_irreducible`], from a given random source.
    pub fn random_irreducible_from<G: rand::RngCore + ?Sized>(rng: &mut G) -> Pol {
        // About one candidate in 37 is irreducible: this ends after a few dozen tries.
        loop {
            let candidate = Pol((rng.next_u64() & ((1 << 54) - 1)) | (1 << 53) | 1);
            if candidate.is_irreducible() {
                return candidate;
            }
        }
    }

    /// Lower-case hex without leading zeros, as restic writes `chunker_polynomial`.
    pub fn to_hex(self) -> String {
        format!("{:x}", self.0)
    }

    /// Parses the hex form (either case). It does not check the polynomial: see [`Pol::validate`].
    pub fn from_hex(s: &str) -> Result<Pol, PolError> {
        let digits = s.trim();
        if digits.is_empty() || digits.len() > 16 || digits.starts_with(['+', '-']) {
            return Err(PolError::NotHex(s.to_string()));
        }
        u64::from_str_radix(digits, 16)
            .map(Pol)
            .map_err(|_| PolError::NotHex(s.to_string()))
    }

    /// Whether this polynomial can drive the chunker: irreducible, and of a degree the
    /// table-driven fingerprint supports. Check it when loading a repository config.
    pub fn validate(self) -> Result<(), PolError> {
        let d = self.deg();
        if !SUPPORTED_DEGREES.contains(&d) {
            return Err(PolError::BadDegree(self, d));
        }
        if !self.is_irreducible() {
            return Err(PolError::Reducible(self));
        }
        Ok(())
    }
}

impl fmt::Display for Pol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl serde::Serialize for Pol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Pol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Pol::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Lookup tables for one polynomial, shared by every chunker that uses it.
///
/// restic rolls one byte as `d' = ((d + out(o)) * x^8 + b) mod pol`, where `o` leaves the window
/// and `b` enters it. Multiplication distributes, so this is also
/// `d' = (d * x^8 mod pol) + drop1(o) + b` with `drop1(o) = o * x^(8*64) mod pol`: the same
/// (canonical, fully reduced) fingerprints, but `d * x^8 mod pol` no longer waits for `out(o)`.
/// Two bytes at once, `d'' = (d * x^16 mod pol) + drop2(o1) + drop1(o2) + b1 * x^8 + b2`, needs
/// one dependent table round per two bytes instead of per byte: the hot loop's speed.
struct Tables {
    /// `o * x^(8*64) mod pol`.
    drop1: [u64; 256],
    /// `o * x^(8*65) mod pol`.
    drop2: [u64; 256],
    /// `(t * x^deg mod pol) + t * x^deg`: XORed into `d << 8` it clears the byte `t` that rose
    /// above the degree and adds its remainder.
    reduce1: [u64; 256],
    /// The same for the byte `t` that `d << 16` pushes to `x^(deg+8)` (bits past 64 are dropped
    /// by the shift and by this table alike).
    reduce2: [u64; 256],
    /// Degree - 8: `d >> shift` is the byte that `d << 8` pushes above the degree.
    shift: u32,
}

/// Degrees the table-driven fingerprint supports: the two-byte step needs 16 bits below the
/// degree, and `t * x^deg` must fit in 64 bits. restic always uses 53.
const SUPPORTED_DEGREES: std::ops::RangeInclusive<i32> = 16..=56;

impl Tables {
    fn for_polynomial(pol: Pol) -> Arc<Tables> {
        static CACHE: OnceLock<Mutex<HashMap<u64, Arc<Tables>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .entry(pol.0)
            .or_insert_with(|| Arc::new(Tables::compute(pol)))
            .clone()
    }

    fn compute(pol: Pol) -> Tables {
        let degree = pol.deg();
        assert!(
            SUPPORTED_DEGREES.contains(&degree),
            "chunker polynomial {pol} has degree {degree}, outside {SUPPORTED_DEGREES:?} \
             (check it with Pol::validate)"
        );
        // h * x^8 mod pol, for reduced h.
        let times_x8 = |h: u64| Pol(h << 8).modulo(pol).0;
        let mut drop1 = [0u64; 256];
        let mut drop2 = [0u64; 256];
        let mut reduce1 = [0u64; 256];
        let mut reduce2 = [0u64; 256];
        for t in 0..256usize {
            let mut h = t as u64;
            for _ in 0..WINDOW_SIZE {
                h = times_x8(h);
            }
            drop1[t] = h;
            drop2[t] = times_x8(h);
            let high = (t as u64) << degree;
            let remainder = Pol(high).modulo(pol).0;
            reduce1[t] = remainder | high;
            reduce2[t] =
                times_x8(remainder) | (t as u64).checked_shl(degree as u32 + 8).unwrap_or(0);
        }
        Tables {
            drop1,
            drop2,
            reduce1,
            reduce2,
            shift: (degree - 8) as u32,
        }
    }

    /// Rolls `byte_in` into the window and `byte_out` (the byte 64 positions earlier) out.
    #[inline(always)]
    fn roll(&self, digest: u64, byte_out: u8, byte_in: u8) -> u64 {
        let top = (digest >> self.shift) as u8;
        (digest << 8)
            ^ self.reduce1[top as usize]
            ^ self.drop1[byte_out as usize]
            ^ u64::from(byte_in)
    }

    /// Rolls two bytes: `ins[0]` then `ins[1]` in, `outs[0]` then `outs[1]` out. Returns the
    /// fingerprints after the first and after the second.
    #[inline(always)]
    fn roll2(&self, digest: u64, outs: [u8; 2], ins: [u8; 2]) -> (u64, u64) {
        let after_first = self.roll(digest, outs[0], ins[0]);
        let top = (digest >> self.shift) as u8;
        let next = (digest >> (self.shift - 8)) as u8;
        let data = self.drop2[outs[0] as usize]
            ^ self.drop1[outs[1] as usize]
            ^ (u64::from(ins[0]) << 8)
            ^ u64::from(ins[1]);
        let after_second =
            (digest << 16) ^ self.reduce2[top as usize] ^ self.reduce1[next as usize] ^ data;
        (after_first, after_second)
    }
}

/// Where a chunk lies in the stream and the fingerprint it was cut at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Offset of the chunk's first byte in the stream.
    pub start: u64,
    /// Length in bytes.
    pub len: usize,
    /// The fingerprint at the cut (restic's `Chunk.Cut`); for a final chunk shorter than
    /// [`MIN_SIZE`] it is the initial fingerprint.
    pub fingerprint: u64,
}

/// Splits a stream into content-defined chunks.
pub struct Chunker<R> {
    reader: R,
    pol: Pol,
    tables: Arc<Tables>,
    /// Page-aligned so that a reader opened with `O_DIRECT` can read straight into it.
    buf: crate::sys::PageAligned,
    /// Unconsumed bytes are `buf[bpos..bmax]`.
    bpos: usize,
    bmax: usize,
    eof: bool,
    /// Stream offset of the next chunk.
    pos: u64,
}

impl<R> fmt::Debug for Chunker<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunker")
            .field("pol", &self.pol)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader` with the repository's polynomial.
    ///
    /// # Panics
    /// If the polynomial's degree is outside 9..=56; check untrusted ones with [`Pol::validate`].
    pub fn new(reader: R, pol: Pol) -> Self {
        Self {
            reader,
            pol,
            tables: Tables::for_polynomial(pol),
            buf: crate::sys::PageAligned::zeroed(READ_BUFFER_SIZE),
            bpos: 0,
            bmax: 0,
            eof: false,
            pos: 0,
        }
    }

    /// The polynomial this chunker cuts with.
    pub fn polynomial(&self) -> Pol {
        self.pol
    }

    /// Gives back the reader (bytes already buffered are lost).
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut data = Vec::with_capacity(2 * MIN_SIZE);
        Ok(self.next_chunk_into(&mut data)?.map(|_| data))
    }

    /// The next chunk into `data` (cleared first; reuse it across calls to avoid allocating),
    /// with its position and cut fingerprint; `None` (and `data` empty) at the end of the stream.
    pub fn next_chunk_into(&mut self, data: &mut Vec<u8>) -> io::Result<Option<ChunkInfo>> {
        data.clear();
        let mut digest = INITIAL_DIGEST;
        let cut = loop {
            if self.bpos == self.bmax && !self.fill()? {
                if data.is_empty() {
                    return Ok(None);
                }
                break digest;
            }
            let available = &self.buf[self.bpos..self.bmax];
            let len = data.len();
            if len < HASH_START {
                // Bytes this early cannot end the chunk: copy them without hashing.
                let take = available.len().min(HASH_START - len);
                data.extend_from_slice(&available[..take]);
                self.bpos += take;
                continue;
            }
            let take = available.len().min(SCAN_STEP).min(MAX_SIZE - len);
            data.extend_from_slice(&available[..take]);
            match scan(&self.tables, data, len, &mut digest) {
                Some(end) => {
                    // Hand back what was copied past the cut.
                    self.bpos += take - (data.len() - end);
                    data.truncate(end);
                    break digest;
                }
                None => {
                    self.bpos += take;
                    if data.len() == MAX_SIZE {
                        break digest;
                    }
                }
            }
        };
        let info = ChunkInfo {
            start: self.pos,
            len: data.len(),
            fingerprint: cut,
        };
        self.pos += data.len() as u64;
        Ok(Some(info))
    }

    /// Refills the read buffer; false at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        self.bpos = 0;
        self.bmax = 0;
        // Read until the buffer is full so that small reads (pipes) don't mean small scans.
        while !self.eof && self.bmax < self.buf.len() {
            match self.reader.read(&mut self.buf[self.bmax..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.bmax += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.bmax > 0)
    }
}

/// Rolls the fingerprint over `data[from..]` (`from >= HASH_START`; `digest` holds it after
/// `data[..from]`) and returns the chunk length at the first boundary, if there is one.
/// On return `digest` is the fingerprint at the boundary, or after all of `data`.
fn scan(tables: &Tables, data: &[u8], from: usize, digest: &mut u64) -> Option<usize> {
    debug_assert!(from >= HASH_START && data.len() <= MAX_SIZE);
    let mut d = *digest;
    let mut pos = from;
    // Filling the window: restic's window starts as one 1 byte (which drops out when the 64th
    // byte comes in) and zeros (which drop out as nothing).
    while pos < MIN_SIZE && pos < data.len() {
        let byte_out = u8::from(pos == MIN_SIZE - 1);
        d = tables.roll(d, byte_out, data[pos]);
        pos += 1;
        if pos == MIN_SIZE && d & SPLIT_MASK == 0 {
            *digest = d;
            return Some(pos);
        }
    }
    if pos < data.len() {
        // The window is full of chunk bytes: the byte leaving is the one 64 positions back.
        let incoming = &data[pos..];
        let outgoing = &data[pos - WINDOW_SIZE..data.len() - WINDOW_SIZE];
        let (in_pairs, in_rest) = incoming.as_chunks::<2>();
        let (out_pairs, out_rest) = outgoing.as_chunks::<2>();
        for (i, (&ins, &outs)) in in_pairs.iter().zip(out_pairs).enumerate() {
            let (first, second) = tables.roll2(d, outs, ins);
            if (first & SPLIT_MASK == 0) | (second & SPLIT_MASK == 0) {
                if first & SPLIT_MASK == 0 {
                    *digest = first;
                    return Some(pos + 2 * i + 1);
                }
                *digest = second;
                return Some(pos + 2 * i + 2);
            }
            d = second;
        }
        if let (Some(&byte_in), Some(&byte_out)) = (in_rest.first(), out_rest.first()) {
            d = tables.roll(d, byte_out, byte_in);
            if d & SPLIT_MASK == 0 {
                *digest = d;
                return Some(data.len());
            }
        }
    }
    *digest = d;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The polynomial of restic's chunker test vectors.
    const TEST_POL: Pol = Pol(0x3DA3358B4DC173);

    /// restic's vectors: 32 MiB from Go's `math/rand` seeded with 23, chunked with `TEST_POL`:
    /// (length, cut fingerprint, SHA-256 of the chunk).
    const RANDOM_STREAM_CHUNKS: [(usize, u64, &str); 23] = [
        (
            2163460,
            0x000b98d4cdf00000,
            "4b94cb2cf293855ea43bf766731c74969b91aa6bf3c078719aabdd19860d590d",
        ),
        (
            643703,
            0x000d4e8364d00000,
            "5727a63c0964f365ab8ed2ccf604912f2ea7be29759a2b53ede4d6841e397407",
        ),
        (
            1528956,
            0x0015a25c2ef00000,
            "a73759636a1e7a2758767791c69e81b69fb49236c6929e5d1b654e06e37674ba",
        ),
        (
            1955808,
            0x00102a8242e00000,
            "c955fb059409b25f07e5ae09defbbc2aadf117c97a3724e06ad4abd2787e6824",
        ),
        (
            2222372,
            0x00045da878000000,
            "6ba5e9f7e1b310722be3627716cf469be941f7f3e39a4c3bcefea492ec31ee56",
        ),
        (
            2538687,
            0x00198a8179900000,
            "8687937412f654b5cfe4a82b08f28393a0c040f77c6f95e26742c2fc4254bfde",
        ),
        (
            609606,
            0x001d4e8d17100000,
            "5da820742ff5feb3369112938d3095785487456f65a8efc4b96dac4be7ebb259",
        ),
        (
            1205738,
            0x000a7204dd600000,
            "cc70d8fad5472beb031b1aca356bcab86c7368f40faa24fe5f8922c6c268c299",
        ),
        (
            959742,
            0x00183e71e1400000,
            "4065bdd778f95676c92b38ac265d361f81bff17d76e5d9452cf985a2ea5a4e39",
        ),
        (
            4036109,
            0x001fec043c700000,
            "b9cf166e75200eb4993fc9b6e22300a6790c75e6b0fc8f3f29b68a752d42f275",
        ),
        (
            1525894,
            0x000b1574b1500000,
            "2f238180e4ca1f7520a05f3d6059233926341090f9236ce677690c1823eccab3",
        ),
        (
            1352720,
            0x00018965f2e00000,
            "afd12f13286a3901430de816e62b85cc62468c059295ce5888b76b3af9028d84",
        ),
        (
            811884,
            0x00155628aa100000,
            "42d0cdb1ee7c48e552705d18e061abb70ae7957027db8ae8db37ec756472a70a",
        ),
        (
            1282314,
            0x001909a0a1400000,
            "819721c2457426eb4f4c7565050c44c32076a56fa9b4515a1c7796441730eb58",
        ),
        (
            1318021,
            0x001cceb980000000,
            "842eb53543db55bacac5e25cb91e43cc2e310fe5f9acc1aee86bdf5e91389374",
        ),
        (
            948640,
            0x0011f7a470a00000,
            "b8e36bf7019bb96ac3fb7867659d2167d9d3b3148c09fe0de45850b8fe577185",
        ),
        (
            645464,
            0x00030ce2d9400000,
            "5584bd27982191c3329f01ed846bfd266e96548dfa87018f745c33cfc240211d",
        ),
        (
            533758,
            0x0004435c53c00000,
            "4da778a25b72a9a0d53529eccfe2e5865a789116cb1800f470d8df685a8ab05d",
        ),
        (
            1128303,
            0x0000c48517800000,
            "08c6b0b38095b348d80300f0be4c5184d2744a17147c2cba5cc4315abf4c048f",
        ),
        (
            800374,
            0x000968473f900000,
            "820284d2c8fd243429674c996d8eb8d3450cbc32421f43113e980f516282c7bf",
        ),
        (
            2453512,
            0x001e197c92600000,
            "5fa870ed107c67704258e5e50abe67509fb73562caf77caa843b5f243425d853",
        ),
        (
            2651975,
            0x000ae6c868000000,
            "181347d2bbec32bef77ad5e9001e6af80f6abcf3576549384d334ee00c1988d8",
        ),
        (
            237392,
            0x0000000000000001,
            "fcd567f5d866357a8e299fd5b2359bb2c8157c30395229c4e9b0a353944a7978",
        ),
    ];

    /// SHA-256 of `MIN_SIZE` zero bytes (restic's zero-stream vector).
    const ZERO_CHUNK_SHA256: &str =
        "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541";

    /// Go's `math/rand` (the additive lagged Fibonacci generator behind `rand.NewSource`),
    /// reimplemented to regenerate the stream restic's vectors were computed from.
    struct GoMathRand {
        vec: [i64; GO_RNG_LEN],
        tap: usize,
        feed: usize,
    }

    const GO_RNG_LEN: usize = 607;
    const GO_RNG_TAP: usize = 273;
    const GO_INT32_MAX: i64 = (1 << 31) - 1;

    impl GoMathRand {
        fn new(seed: i64) -> Self {
            // x[n+1] = 48271 * x[n] mod (2^31 - 1)
            fn next_seed(x: i64) -> i64 {
                (48271 * x) % GO_INT32_MAX
            }
            let mut seed = seed % GO_INT32_MAX;
            if seed < 0 {
                seed += GO_INT32_MAX;
            }
            if seed == 0 {
                seed = 89482311;
            }
            let mut x = seed;
            let mut vec = [0i64; GO_RNG_LEN];
            for i in -20..GO_RNG_LEN as i64 {
                x = next_seed(x);
                if i >= 0 {
                    let mut u = x << 40;
                    x = next_seed(x);
                    u ^= x << 20;
                    x = next_seed(x);
                    u ^= x;
                    u ^= GO_RNG_COOKED[i as usize];
                    vec[i as usize] = u & i64::MAX;
                }
            }
            Self {
                vec,
                tap: 0,
                feed: GO_RNG_LEN - GO_RNG_TAP,
            }
        }

        fn int63(&mut self) -> i64 {
            self.tap = (self.tap + GO_RNG_LEN - 1) % GO_RNG_LEN;
            self.feed = (self.feed + GO_RNG_LEN - 1) % GO_RNG_LEN;
            let x = self.vec[self.feed].wrapping_add(self.vec[self.tap]) & i64::MAX;
            self.vec[self.feed] = x;
            x
        }

        fn uint32(&mut self) -> u32 {
            (self.int63() >> 31) as u32
        }
    }

    /// restic's test stream: little-endian `Uint32()`s of `math/rand` seeded with 23.
    fn restic_test_stream(len: usize) -> Vec<u8> {
        let mut rng = GoMathRand::new(23);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            out.extend_from_slice(&rng.uint32().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// A reader that hands out at most `step` bytes per read, to exercise buffer refills.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn go_math_rand_reproduces_gos_first_outputs() {
        // The first Int63() of rand.NewSource(1), a value Go's own tests and examples pin.
        let mut rng = GoMathRand::new(1);
        assert_eq!(rng.int63(), 5577006791947779410);
        assert_eq!(rng.int63(), 8674665223082153551);
    }

    #[test]
    fn random_stream_matches_restic_vectors() {
        let stream = restic_test_stream(32 * 1024 * 1024);
        let mut chunker = Chunker::new(&stream[..], TEST_POL);
        let mut data = Vec::new();
        let mut start = 0u64;
        for (i, &(len, cut, sha)) in RANDOM_STREAM_CHUNKS.iter().enumerate() {
            let info = chunker
                .next_chunk_into(&mut data)
                .unwrap()
                .unwrap_or_else(|| panic!("stream ended before chunk {i}"));
            assert_eq!(info.start, start, "start of chunk {i}");
            assert_eq!(info.len, len, "length of chunk {i}");
            assert_eq!(data.len(), len, "data of chunk {i}");
            assert_eq!(info.fingerprint, cut, "cut fingerprint of chunk {i}");
            assert_eq!(sha256_hex(&data), sha, "SHA-256 of chunk {i}");
            start += len as u64;
        }
        assert_eq!(chunker.next_chunk_into(&mut data).unwrap(), None);
        assert!(data.is_empty());
        assert_eq!(chunker.next_chunk().unwrap(), None, "stays at the end");
    }

    #[test]
    fn small_reads_cut_at_the_same_places() {
        let stream = restic_test_stream(12 * 1024 * 1024);
        let whole: Vec<usize> = std::iter::from_fn({
            let mut c = Chunker::new(&stream[..], TEST_POL);
            move || c.next_chunk().unwrap().map(|d| d.len())
        })
        .collect();
        let mut trickled = Vec::new();
        let mut c = Chunker::new(
            Trickle {
                data: &stream,
                step: 4093,
            },
            TEST_POL,
        );
        let mut reassembled = Vec::new();
        while let Some(chunk) = c.next_chunk().unwrap() {
            trickled.push(chunk.len());
            reassembled.extend_from_slice(&chunk);
        }
        assert_eq!(whole, trickled);
        assert_eq!(
            &whole[..5],
            &RANDOM_STREAM_CHUNKS[..5]
                .iter()
                .map(|c| c.0)
                .collect::<Vec<_>>()[..]
        );
        assert!(reassembled == stream, "chunks concatenate to the stream");
    }

    #[test]
    fn zero_stream_cuts_at_min_size() {
        // All-zero windows have fingerprint 0, so every chunk ends at MIN_SIZE, also the last one
        // of a stream that is an exact multiple of it.
        let zeros = vec![0u8; 4 * MIN_SIZE];
        let mut chunker = Chunker::new(&zeros[..], TEST_POL);
        for i in 0..4 {
            let mut data = Vec::new();
            let info = chunker.next_chunk_into(&mut data).unwrap().unwrap();
            assert_eq!((info.len, info.fingerprint), (MIN_SIZE, 0), "chunk {i}");
            assert_eq!(sha256_hex(&data), ZERO_CHUNK_SHA256);
        }
        assert_eq!(chunker.next_chunk().unwrap(), None);
    }

    #[test]
    fn chunks_never_exceed_max_size() {
        // A constant stream has one window fingerprint: it either cuts at MIN_SIZE every time
        // or at MAX_SIZE every time. Either way every chunk is in bounds and nothing is lost.
        let ones = vec![0xffu8; MAX_SIZE + MIN_SIZE + 10];
        let mut chunker = Chunker::new(&ones[..], TEST_POL);
        let mut total = 0;
        while let Some(chunk) = chunker.next_chunk().unwrap() {
            assert!(chunk.len() <= MAX_SIZE);
            total += chunk.len();
        }
        assert_eq!(total, ones.len());
    }

    #[test]
    fn max_size_cut_when_no_boundary() {
        // A stream repeating a 64-byte pattern has only 64 distinct windows; this pattern was
        // chosen so none of them ends a chunk (checked first), so only MAX_SIZE can cut it.
        let tables = Tables::for_polynomial(TEST_POL);
        let pattern: Vec<u8> = (0..64u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let mut d = INITIAL_DIGEST;
        let mut hits = 0;
        for round in 0..3 {
            for (i, &b) in pattern.iter().enumerate() {
                let out = if round == 0 {
                    u8::from(i == 63)
                } else {
                    pattern[i]
                };
                d = tables.roll(d, out, b);
                if round > 0 && d & SPLIT_MASK == 0 {
                    hits += 1;
                }
            }
        }
        assert_eq!(hits, 0, "pattern chosen so no window ends a chunk");
        let stream: Vec<u8> = pattern
            .iter()
            .copied()
            .cycle()
            .take(2 * MAX_SIZE + 5)
            .collect();
        let lens: Vec<usize> = std::iter::from_fn({
            let mut c = Chunker::new(&stream[..], TEST_POL);
            move || c.next_chunk().unwrap().map(|d| d.len())
        })
        .collect();
        assert_eq!(lens, vec![MAX_SIZE, MAX_SIZE, 5]);
    }

    #[test]
    fn short_and_empty_streams() {
        let mut empty = Chunker::new(&[][..], TEST_POL);
        assert_eq!(empty.next_chunk().unwrap(), None);
        let short = restic_test_stream(1000);
        let mut c = Chunker::new(&short[..], TEST_POL);
        let mut data = Vec::new();
        let info = c.next_chunk_into(&mut data).unwrap().unwrap();
        assert_eq!(
            (info.start, info.len, info.fingerprint),
            (0, 1000, INITIAL_DIGEST)
        );
        assert_eq!(data, short);
        assert_eq!(c.next_chunk().unwrap(), None);
    }

    #[test]
    fn read_errors_are_returned() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = Chunker::new(Failing, TEST_POL).next_chunk().unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn another_polynomial_cuts_elsewhere() {
        let stream = restic_test_stream(4 * 1024 * 1024);
        let pol = Pol::random_irreducible();
        assert_ne!(pol, TEST_POL);
        let mut data = Vec::new();
        let info = Chunker::new(&stream[..], pol)
            .next_chunk_into(&mut data)
            .unwrap()
            .unwrap();
        assert_ne!(info.fingerprint, RANDOM_STREAM_CHUNKS[0].1);
        assert_ne!(info.len, RANDOM_STREAM_CHUNKS[0].0);
    }

    #[test]
    fn irreducibility() {
        assert!(TEST_POL.is_irreducible());
        // x^2 + x + 1 and x^3 + x + 1 are irreducible; x^2 + 1 = (x + 1)^2 is not.
        assert!(Pol(0b111).is_irreducible());
        assert!(Pol(0b1011).is_irreducible());
        assert!(!Pol(0b101).is_irreducible());
        // The product of two irreducible polynomials is reducible.
        let product = {
            let (a, b) = (0b1011u64, TEST_POL.0 >> 3 | 1);
            let mut acc = 0u64;
            for bit in 0..4 {
                if a >> bit & 1 == 1 {
                    acc ^= b << bit;
                }
            }
            Pol(acc)
        };
        assert!(!product.is_irreducible());
        // Divisible by x.
        assert!(!Pol(TEST_POL.0 << 1).is_irreducible());
        assert!(!Pol(0).is_irreducible());
        assert!(!Pol(1).is_irreducible());
    }

    #[test]
    fn random_polynomials_are_irreducible_of_degree_53() {
        for _ in 0..5 {
            let pol = Pol::random_irreducible();
            assert_eq!(pol.deg(), 53);
            assert!(pol.is_irreducible());
            assert_eq!(pol.validate(), Ok(()));
        }
    }

    #[test]
    fn validate_rejects_unusable_polynomials() {
        assert_eq!(
            Pol(0b1011).validate(),
            Err(PolError::BadDegree(Pol(0b1011), 3))
        );
        let reducible = Pol(TEST_POL.0 ^ 1);
        assert_eq!(reducible.validate(), Err(PolError::Reducible(reducible)));
        assert_eq!(TEST_POL.validate(), Ok(()));
    }

    #[test]
    fn polynomial_arithmetic() {
        assert_eq!(Pol(0).deg(), -1);
        assert_eq!(Pol(1).deg(), 0);
        assert_eq!(TEST_POL.deg(), 53);
        // (x^3 + x + 1) divides x^7 - 1 over GF(2).
        assert_eq!(Pol(0b1000_0001).modulo(Pol(0b1011)), Pol(0));
        // x^3 mod (x^3 + x + 1) = x + 1.
        assert_eq!(Pol(0b1000).modulo(Pol(0b1011)), Pol(0b11));
        // (x + 1)^2 = x^2 + 1, reduced mod x^3 + x + 1 it stays.
        assert_eq!(Pol(0b11).mul_mod(Pol(0b11), Pol(0b1011)), Pol(0b101));
        // x^2 * x^2 = x^4 = x^2 + x mod x^3 + x + 1.
        assert_eq!(Pol(0b100).mul_mod(Pol(0b100), Pol(0b1011)), Pol(0b110));
        assert_eq!(Pol(0b101).gcd(Pol(0b11)), Pol(0b11));
    }

    #[test]
    fn hex_round_trip_matches_restic_config() {
        assert_eq!(TEST_POL.to_hex(), "3da3358b4dc173");
        assert_eq!(Pol::from_hex("3DA3358B4DC173"), Ok(TEST_POL));
        assert_eq!(Pol::from_hex("3da3358b4dc173"), Ok(TEST_POL));
        for bad in ["", "xyz", "-1", "+1", "12345678901234567"] {
            assert_eq!(Pol::from_hex(bad), Err(PolError::NotHex(bad.to_string())));
        }
        let json = serde_json::to_string(&TEST_POL).unwrap();
        assert_eq!(json, "\"3da3358b4dc173\"");
        assert_eq!(serde_json::from_str::<Pol>(&json).unwrap(), TEST_POL);
        assert!(serde_json::from_str::<Pol>("\"nope\"").is_err());
    }

    /// `rngCooked` of Go's `math/rand`: the generator's state after 780e10 steps (low 63 bits).
    #[rustfmt::skip]
    const GO_RNG_COOKED: [i64; GO_RNG_LEN] = [
        5041579894721019882, 4646389086726545243, 1395769623340756751, 5333664234075297259,
        2875692520355975054, 9033628115061424579, 7143218595135194537, 4812947590706362721,
        7937252194349799378, 5307299880338848416, 8209348851763925077, 2115741599318814044,
        4593015457530856296, 8140875735541888011, 3319429241265089026, 8619815648190321034,
        1727074043483619500, 113108499721038619, 4569519971459345583, 5062833859075314731,
        2387618771259064424, 2716131344356686112, 6559392774825876886, 7650093201692370310,
        7684323884043752161, 257867835996031390, 6593456519409015164, 271327514973697897,
        2789386447340118284, 1065192797246149621, 3344507881999356393, 4459797941780066633,
        7465081662728599889, 1014950805555097187, 4449440729345990775, 3481109366438502643,
        2418672789110888383, 5796562887576294778, 4484266064449540171, 3738982361971787048,
        4523597184512354423, 10530508058128498, 8633833783282346118, 2625309929628791628,
        8660405965245884302, 10162832508971942, 6540714680961817391, 7031802312784620857,
        6240911277345944669, 831864355460801054, 8004434137542152891, 2116287251661052151,
        2202309800992166967, 9161020366945053561, 4069299552407763864, 4936383537992622449,
        457351505131524928, 342195045928179354, 2847771682816600509, 2068020115986376518,
        4368649989588021065, 887231587095185257, 5563591506886576496, 6816225200251950296,
        5616972787034086048, 8471809303394836566, 1686575021641186857, 4045484338074262002,
        4244156215201778923, 7848217333783577387, 5632136521049761902, 833283142057835272,
        9029726508369077193, 3243583134664087292, 4316371101804477087, 8937849979965997980,
        6446940406810434101, 1679342092332374735, 6050638460742422078, 6993520719509581582,
        7640877852514293609, 5881353426285907985, 812786550756860885, 4541845584483343330,
        2725470216277009086, 4980675660146853729, 5210769080603236061, 8894283318990530821,
        6326442804750084282, 1495812843684243920, 7069751578799128019, 7370257291860230865,
        6756929275356942261, 4706794511633873654, 7824520467827898663, 8549875090542453214,
        33650829478596156, 1328918435751322643, 7297902601803624459, 1011190183918857495,
        2238025036817854944, 5147159997473910359, 896512091560522982, 2659470849286379941,
        6097729358393448602, 1731725986304753684, 4106255841983812711, 8327155210721535508,
        8477511620686074402, 5803876044675762232, 8435417780860221662, 5988852856651071244,
        4715837297103951910, 7566171971264485114, 505808562678895611, 5070098180695063370,
        842110666775871513, 572156825025677802, 1791881013492340891, 3393267094866038768,
        3778721850472236509, 2352769483186201278, 1292459583847367458, 8897907043675088419,
        5781809037144163536, 2733958794029492513, 5092019688680754699, 8996124554772526841,
        4234737173186232084, 5027558287275472836, 4635198586344772304, 8687338893267139351,
        5907508150730407386, 784756255473944452, 972392927514829904, 5422057694808175112,
        5158420642969283891, 9048531678558643225, 2407211146698877100, 7583282216521099569,
        3940796514530962282, 3341174631045206375, 3095313889586102949, 7405321895688238710,
        5832080132947175283, 7890064875145919662, 8184139210799583195, 1149859861409226130,
        1464597243840211302, 4641648007187991873, 3516491885471466898, 956288521791657692,
        6657089965014657519, 5220884358887979358, 1796677326474620641, 5340761970648932916,
        1147977171614181568, 5066037465548252321, 2574765911837859848, 1085848279845204775,
        3350107529868390359, 6116438694366558490, 2107701075971293812, 1803294065921269267,
        2469478054175558874, 7368243281019965984, 3791908367843677526, 185046971116456637,
        2257095756513439648, 7217693971077460129, 909049953079504259, 7196649268545224266,
        5637660345400869599, 3955544945427965183, 8057528650917418961, 4139268440301127643,
        6621926588513568059, 1373361136802681441, 6527366231383600011, 3507654575162700890,
        9202058512774729859, 1954818376891585542, 6640380907130175705, 8299563319178235687,
        3901867355218954373, 7046310742295574065, 6847195391333990232, 1572638100518868053,
        8850422670118399721, 3631909142291992901, 5158881091950831288, 2882958317343121593,
        4763258931815816403, 6280052734341785344, 4243789408204964850, 2043464728020827976,
        6545300466022085465, 4562580375758598164, 5495451168795427352, 1738312861590151095,
        553004618757816492, 6895160632757959823, 8233623922264685171, 7139506338801360852,
        8550891222387991669, 5535668688139305547, 2430933853350256242, 5401941257863201076,
        8159640039107728799, 6157493831600770366, 7632066283658143750, 6308328381617103346,
        3681878764086140361, 3289686137190109749, 6587997200611086848, 244714774258135476,
        4079788377417136100, 8090302575944624335, 2945117363431356361, 864324395848741045,
        3009039260312620700, 8430027460082534031, 401084700045993341, 7254622446438694921,
        4707864159563588614, 5640248530963493951, 5982507712689997893, 3315098242282210105,
        5503847578771918426, 3941971367175193882, 8118566580304798074, 3839261274019871296,
        7062410411742090847, 741381002980207668, 6027994129690250817, 2497829994150063930,
        6251390334426228834, 1368930247903518833, 8809096399316380241, 6492004350391900708,
        2462145737463489636, 404828418920299174, 4153026434231690595, 261785715255475940,
        5464715384600071357, 592710404378763017, 6764129236657751224, 8513655718539357449,
        5820343663801914208, 385298524683789911, 5224135003438199467, 6303131641338802145,
        7150122561309371392, 368107899140673753, 3115186834558311558, 2915636353584281051,
        4782583894627718279, 6718292300699989587, 8387085186914375220, 3387513132024756289,
        4654329375432538231, 8930667561363381602, 5374373436876319273, 7623042350483453954,
        7725442901813263321, 9186225467561587250, 4091027289597503355, 2357631606492579800,
        2530936820058611833, 1636551876240043639, 5564664674334965799, 1452244145334316253,
        2061642381019690829, 1279580266495294036, 9108481583171221009, 6023278686734049809,
        5007630032676973346, 2153168792952589781, 6720334534964750538, 6041546491134794105,
        3433922409283786309, 2285479922797300912, 3110614940896576130, 6366559590722842893,
        5418791419666136509, 7163298419643543757, 4891138053923696990, 580618510277907015,
        1684034065251686769, 4429514767357295841, 330346578555450005, 1119637995812174675,
        7177515271653460134, 4589042248470800257, 7693288629059004563, 143607045258444228,
        246994305896273627, 866417324803099287, 6473547110565816071, 3092379936208876896,
        2058427839513754051, 5133784708526867938, 8785882556301281247, 6149332666841167611,
        8585842181454472135, 6137678347805511274, 2070447184436970006, 5708223427705576541,
        5999657892458244504, 4358391411789012426, 325123008708389849, 6837621693887290924,
        4843721905315627004, 6010651222149276415, 5398352198963874652, 4602025990114250980,
        1044646352569048800, 9106614159853161675, 829256115228593269, 4919284369102997000,
        2681532557646850893, 3681559472488511871, 5307999518958214035, 6334130388442829274,
        2658708232916537604, 1163313865052186287, 581945337509520675, 3648778920718647903,
        4423673246306544414, 1620799783996955743, 220828013409515943, 8150384699999389761,
        4287360518296753003, 4590000184845883843, 5513660857261085186, 6964829100392774275,
        478991688350776035, 8746140185685648781, 228500091334420247, 1356187007457302238,
        3019253992034194581, 3152601605678500003, 430152752706002213, 5559581553696971176,
        4916432985369275664, 663574931734554391, 3420773838927732076, 2868348622579915573,
        1999319134044418520, 3328689518636282723, 2587672709781371173, 1517255313529399333,
        3092343956317362483, 3662252519007064108, 972445599196498113, 7664865435875959367,
        1708913533482282562, 6917817162668868494, 3217629022545312900, 2570043027221707107,
        8739788839543624613, 2488075924621352812, 4694002395387436668, 4559628481798514356,
        2997203966153298104, 1282559373026354493, 240113143146674385, 8665713329246516443,
        628141331766346752, 4571950817186770476, 1472811188152235408, 7596648026010355826,
        6091219417754424743, 7834161864828164065, 7103445518877254909, 4390861237357459201,
        4442653864240571734, 8903482404847331368, 622261699494173647, 6037261250297213248,
        504404948065709118, 7275215526217113061, 1011176780856001400, 2194750105623461063,
        2623071828615234808, 5157313728073836108, 3738405111966602044, 2539767524076729570,
        2467284396349269342, 5256026990536851868, 7841086888628396109, 6640857538655893162,
        1202087339038317498, 2113514992440715978, 7534350895342931403, 4925284734898484745,
        5145623771477493805, 8225140880134972332, 2719520354384050532, 9132346697815513771,
        4332154495710163773, 7137789594094346916, 6994721091344268833, 6667228574869048934,
        655440045726677499, 59934747298466858, 6124974028078036405, 8957774780655365418,
        2332206071942466437, 1701056712286369627, 3154897383618636503, 1637766181387607527,
        2460521277767576533, 197309393502684135, 643677854385267315, 2543179307861934850,
        4350769010207485119, 4754652089410667672, 2015595502641514512, 7999059458976458608,
        4287946071480840813, 8362686366770308971, 6486469209321732151, 3617727845841796026,
        7554353525834302244, 4450022655153542367, 1605195740213535749, 5327014565305508387,
        4626575813550328320, 2692222020597705149, 241045573717249868, 5098046974627094010,
        7916882295460730264, 884817090297530579, 5329160409530630596, 7790979528857726136,
        4955070238059373407, 4918537275422674302, 3008076183950404629, 3007769226071157901,
        2470346235617803020, 8928702772696731736, 7856187920214445904, 4474874585391974885,
        7900176660600710914, 2140571127916226672, 2425445057265199971, 2486055153341847830,
        4186670094382025798, 1883939007446035042, 8808666044074867985, 3734134241178479257,
        4065968871360089196, 6953124200385847784, 1305686814738899057, 1637739099014457647,
        3656125660947993209, 3966759634633167020, 3106378204088556331, 6328899822778449810,
        4565385105440252958, 1979884289539493806, 2331793186920865425, 3783206694208922581,
        8464961209802336085, 2843963751609577687, 3030678195484896323, 4793717574095772604,
        4459239494808162889, 402587895800087237, 8057891408711167515, 4541888170938985079,
        1042662272908816815, 5557303057122568958, 2647678726283249984, 2144477441549833761,
        5806352215355387087, 7117771003473903623, 5916597177708541638, 462597715452321361,
        8833658097025758785, 5970273481425315300, 563813119381731307, 2768349550652697015,
        1598828206250873866, 5206393647403558110, 6235043485709261823, 3152217402014639496,
        8469693267274066490, 125672920241807416, 5311079624024060938, 6663754932310491587,
        8736848295048751716, 4488039774992061878, 5923302823487327109, 140891791083103236,
        7414942793393574290, 7990420780896957397, 4317817392807076702, 3625184369705367340,
        2740722765288122703, 5743100009702758344, 5997898640509039159, 8854493341352484163,
        5242208035432907801, 701338899890987198, 7609280429197514109, 3020985755112334161,
        6651322707055512866, 2635195723621160615, 5144520864246028816, 1035086515727829828,
        1567242097116389047, 8172389260191636581, 6337820351429292273, 2163012566996458925,
        2743190902890262681, 1906367633221323427, 6011544915663598137, 5932255307352610768,
        2241128460406315459, 895504896216695588, 3094483003111372717, 4583857460292963101,
        9079887171656594975, 8839289181930711403, 5762740387243057873, 4225072055348026230,
        1838220598389033063, 3801620336801580414, 8823526620080073856, 1776617605585100335,
        7899055018877642622, 5421679761463003041, 5521102963086275121, 4248279443559365898,
        8735487530905098534, 1760527091573692978, 7142485049657745894, 8222656872927218123,
        4969531564923704323, 3394475942196872480, 6424174453260338141, 359248545074932887,
        3273651282831730598, 6797106199797138596, 3030918217665093212, 145600834617314036,
        6036575856065626233, 740416251634527158, 7080427635449935582, 6951781370868335478,
        399922722363687927, 294902314447253185, 7844950936339178523, 880320858634709042,
        6192655680808675579, 411604686384710388, 9026808440365124461, 6440783557497587732,
        4615674634722404292, 539897290441580544, 2096238225866883852, 8751955639408182687,
        1907224908052289603, 7381039757301768559, 6157238513393239656, 7749994231914157575,
        8629571604380892756, 5280433031239081479, 7101611890139813254, 2479018537985767835,
        7169176924412769570, 7942066497793203302, 1357759729055557688, 2278447439451174845,
        3625338785743880657, 6477479539006708521, 8976185375579272206, 5511371554711836120,
        1326024180520890843, 7537449876596048829, 5464680203499696154, 3189671183162196045,
        6346751753565857109, 241159987320630307, 3095793449658682053, 8978332846736310159,
        2902794662273147216, 7208698530190629697, 7276901792339343736, 1732385229314443140,
        4133292154170828382, 2918308698224194548, 1519461397937144458, 5293934712616591764,
        4922828954023452664, 2879211533496425641, 5896236396443472108, 8465043815351752425,
        7329020396871624740, 8915471717014488588, 2944902635677463047, 7052079073493465134,
        8382142935188824023, 9103922860780351547, 4152330101494654406,
    ];
}
