//! Poly1305 (RFC 8439), eight blocks at a time with AVX-512 IFMA where the CPU has it, else the
//! `poly1305` crate (its AVX2 path). Every byte a restore or backup moves is MACed, and the
//! crate's AVX2 code took 11% of a large restore's CPU (0.31 s per GiB on the project's
//! machine); IFMA's 52-bit multiply-adds do eight blocks' products in 18 instructions, 4×
//! the crate's throughput there (0.076 s per GiB; `cargo bench -p ferry-repo --bench mac`).
//!
//! Numbers mod 2^130 − 5 are three limbs of 44, 44 and 42 bits, so that every product of a
//! limb and a multiplier fits IFMA's 52-bit inputs; limbs are kept loosely (a limb may exceed
//! its width by a few bits between multiplications) and reduced fully only for the tag.
//! Eight lanes each accumulate every eighth block times r^8; the last round multiplies lane
//! j by r^(8−j) instead, so that their sum is what one block after another would give.

use poly1305::universal_hash::{KeyInit, UniversalHash};

const M44: u64 = (1 << 44) - 1;
const M42: u64 = (1 << 42) - 1;
/// The 2^128 bit every full block gets, in the top limb.
const HIBIT: u64 = 1 << 40;
/// Blocks below which the vector path is not worth its set-up (the powers of r).
const VECTOR_AT_LEAST: usize = 32;

/// A Poly1305 state for one message: full blocks with [`Mac::update`], then the tail with
/// [`Mac::finish`].
// One per message, on the stack for its length: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Mac {
    Ifma(IfmaState),
    Crate(poly1305::Poly1305),
}

impl Mac {
    /// `key` is r (clamped here) then s, as RFC 8439 and the `poly1305` crate take it.
    pub(crate) fn new(key: &[u8; 32]) -> Mac {
        if ifma_available() {
            Mac::Ifma(IfmaState::new(key))
        } else {
            Mac::Crate(poly1305::Poly1305::new(key.into()))
        }
    }

    /// MACs whole 16-byte blocks (`blocks.len()` a multiple of 16).
    pub(crate) fn update(&mut self, blocks: &[u8]) {
        debug_assert_eq!(blocks.len() % 16, 0, "Mac::update takes whole blocks");
        match self {
            Mac::Ifma(state) => state.update(blocks),
            Mac::Crate(mac) => mac.update_padded(blocks),
        }
    }

    /// MACs all of `data` (after what was updated before) and returns the tag.
    pub(crate) fn tag(mut self, data: &[u8]) -> [u8; 16] {
        let whole = data.len() / 16 * 16;
        self.update(&data[..whole]);
        self.finish(&data[whole..])
    }

    /// MACs the message's last bytes (fewer than 16, possibly none) and returns the tag.
    pub(crate) fn finish(self, tail: &[u8]) -> [u8; 16] {
        debug_assert!(tail.len() < 16);
        match self {
            Mac::Ifma(state) => state.finish(tail),
            Mac::Crate(mac) => mac.compute_unpadded(tail).into(),
        }
    }
}

fn ifma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512ifma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

type Limbs = [u64; 3];

/// The state of the IFMA path: the accumulator, r, its powers r^1…r^8 once a message is
/// long enough for the vector path, and s.
pub(crate) struct IfmaState {
    h: Limbs,
    r: Limbs,
    powers: Option<[Limbs; 8]>,
    s: u128,
}

impl Drop for IfmaState {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.h.zeroize();
        self.r.zeroize();
        if let Some(p) = &mut self.powers {
            p.as_flattened_mut().zeroize();
        }
        self.s.zeroize();
    }
}

fn block_limbs(b: &[u8; 16], hibit: u64) -> Limbs {
    let lo = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    [
        lo & M44,
        ((lo >> 44) | (hi << 20)) & M44,
        (hi >> 24) | hibit,
    ]
}

/// h·r mod 2^130 − 5, loosely reduced. Limbs of h may be up to 2^46, of r up to 2^45.
fn mul(h: Limbs, r: Limbs) -> Limbs {
    // 2^132 = 4·2^130 ≡ 20: products above the top limb fold back times 20.
    let (s1, s2) = (r[1] * 20, r[2] * 20);
    let m = |a: u64, b: u64| a as u128 * b as u128;
    let d0 = m(h[0], r[0]) + m(h[1], s2) + m(h[2], s1);
    let d1 = m(h[0], r[1]) + m(h[1], r[0]) + m(h[2], s2) + (d0 >> 44);
    let d2 = m(h[0], r[2]) + m(h[1], r[1]) + m(h[2], r[0]) + (d1 >> 44);
    let h0 = (d0 as u64 & M44) + (d2 >> 42) as u64 * 5;
    [h0 & M44, (d1 as u64 & M44) + (h0 >> 44), d2 as u64 & M42]
}

fn add(h: Limbs, m: Limbs) -> Limbs {
    [h[0] + m[0], h[1] + m[1], h[2] + m[2]]
}

/// Carries once through all limbs (the top one folding back times 5).
fn carry(mut h: Limbs) -> Limbs {
    let c = h[0] >> 44;
    h[0] &= M44;
    h[1] += c;
    let c = h[1] >> 44;
    h[1] &= M44;
    h[2] += c;
    let c = h[2] >> 42;
    h[2] &= M42;
    h[0] += c * 5;
    h
}

impl IfmaState {
    fn new(key: &[u8; 32]) -> IfmaState {
        let lo = u64::from_le_bytes(key[..8].try_into().expect("8 bytes")) & 0x0fff_fffc_0fff_ffff;
        let hi =
            u64::from_le_bytes(key[8..16].try_into().expect("8 bytes")) & 0x0fff_fffc_0fff_fffc;
        IfmaState {
            h: [0; 3],
            r: [lo & M44, ((lo >> 44) | (hi << 20)) & M44, hi >> 24],
            powers: None,
            s: u128::from_le_bytes(key[16..].try_into().expect("16 bytes")),
        }
    }

    fn update(&mut self, blocks: &[u8]) {
        let mut rest = blocks;
        let count = blocks.len() / 16;
        if count >= VECTOR_AT_LEAST && cfg!(target_arch = "x86_64") {
            let vector = count / 8 * 128;
            let r = self.r;
            let powers = self.powers.get_or_insert_with(|| {
                let mut p = [r; 8];
                for k in 1..8 {
                    p[k] = mul(p[k - 1], r);
                }
                p
            });
            // SAFETY: only reached when the CPU has AVX-512F and IFMA (`ifma_available`).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                self.h = ifma::blocks(self.h, powers, &blocks[..vector]);
            }
            rest = &blocks[vector..];
        }
        for b in rest.chunks_exact(16) {
            self.h = mul(
                add(self.h, block_limbs(b.try_into().expect("16"), HIBIT)),
                self.r,
            );
        }
    }

    fn finish(self, tail: &[u8]) -> [u8; 16] {
        let mut h = self.h;
        if !tail.is_empty() {
            let mut last = [0u8; 16];
            last[..tail.len()].copy_from_slice(tail);
            last[tail.len()] = 1;
            h = mul(add(h, block_limbs(&last, 0)), self.r);
        }
        // Limbs within their widths: h < 2^130. Then h mod p is h, or h + 5 − 2^130 when
        // that has no borrow (h ≥ p).
        h = carry(carry(h));
        h[1] += h[0] >> 44;
        h[0] &= M44;
        let g0 = h[0] + 5;
        let g1 = h[1] + (g0 >> 44);
        let g2 = h[2] + (g1 >> 44);
        let use_g = 0u64.wrapping_sub(g2 >> 42);
        let pick = |a: u64, b: u64| (a & !use_g) | (b & use_g);
        let h = [
            pick(h[0], g0 & M44),
            pick(h[1], g1 & M44),
            pick(h[2], g2 & M42),
        ];
        let value = (h[0] as u128)
            .wrapping_add((h[1] as u128) << 44)
            .wrapping_add((h[2] as u128) << 88);
        value.wrapping_add(self.s).to_le_bytes()
    }
}

#[cfg(target_arch = "x86_64")]
mod ifma {
    use super::{HIBIT, Limbs, M42, M44, carry};
    use std::arch::x86_64::*;

    /// A multiplier in lanes: its limbs and its second and third limbs times 20.
    struct Lanes {
        r0: __m512i,
        r1: __m512i,
        r2: __m512i,
        s1: __m512i,
        s2: __m512i,
    }

    impl Lanes {
        /// Lane j holds `per_lane[j]`.
        #[target_feature(enable = "avx512f")]
        fn new(per_lane: [Limbs; 8]) -> Lanes {
            let limb = |k: usize, times: u64| {
                let v: [u64; 8] = std::array::from_fn(|j| per_lane[j][k] * times);
                // SAFETY: an unaligned load of 64 bytes from an array of 64 bytes.
                unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
            };
            Lanes {
                r0: limb(0, 1),
                r1: limb(1, 1),
                r2: limb(2, 1),
                s1: limb(1, 20),
                s2: limb(2, 20),
            }
        }
    }

    /// h·k in each lane, loosely reduced (the same steps as `super::mul`, with each 104-bit
    /// product split into its low and high 52 bits).
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn mul(h: [__m512i; 3], k: &Lanes) -> [__m512i; 3] {
        let z = _mm512_setzero_si512();
        let lo = |a: [(__m512i, __m512i); 3]| {
            let acc = _mm512_madd52lo_epu64(z, a[0].0, a[0].1);
            let acc = _mm512_madd52lo_epu64(acc, a[1].0, a[1].1);
            _mm512_madd52lo_epu64(acc, a[2].0, a[2].1)
        };
        let hi = |a: [(__m512i, __m512i); 3]| {
            let acc = _mm512_madd52hi_epu64(z, a[0].0, a[0].1);
            let acc = _mm512_madd52hi_epu64(acc, a[1].0, a[1].1);
            _mm512_madd52hi_epu64(acc, a[2].0, a[2].1)
        };
        let d0 = [(h[0], k.r0), (h[1], k.s2), (h[2], k.s1)];
        let d1 = [(h[0], k.r1), (h[1], k.r0), (h[2], k.s2)];
        let d2 = [(h[0], k.r2), (h[1], k.r1), (h[2], k.r0)];
        let (lo0, hi0, lo1, hi1, lo2, hi2) = (lo(d0), hi(d0), lo(d1), hi(d1), lo(d2), hi(d2));
        let m44 = _mm512_set1_epi64(M44 as i64);
        let m42 = _mm512_set1_epi64(M42 as i64);
        // A high half is worth 2^52: 2^8 of the next limb (2^10 past the 42-bit top one).
        let h0 = _mm512_and_si512(lo0, m44);
        let c = _mm512_add_epi64(_mm512_srli_epi64::<44>(lo0), _mm512_slli_epi64::<8>(hi0));
        let t1 = _mm512_add_epi64(lo1, c);
        let h1 = _mm512_and_si512(t1, m44);
        let c = _mm512_add_epi64(_mm512_srli_epi64::<44>(t1), _mm512_slli_epi64::<8>(hi1));
        let t2 = _mm512_add_epi64(lo2, c);
        let h2 = _mm512_and_si512(t2, m42);
        let c = _mm512_add_epi64(_mm512_srli_epi64::<42>(t2), _mm512_slli_epi64::<10>(hi2));
        let h0 = _mm512_add_epi64(h0, _mm512_add_epi64(c, _mm512_slli_epi64::<2>(c)));
        let h1 = _mm512_add_epi64(h1, _mm512_srli_epi64::<44>(h0));
        [_mm512_and_si512(h0, m44), h1, h2]
    }

    /// Continues `h` over `data` (a multiple of 128 bytes: eight blocks a round) and returns
    /// it, given r^1…r^8 (`powers[k]` = r^(k+1)).
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) fn blocks(h: Limbs, powers: &[Limbs; 8], data: &[u8]) -> Limbs {
        debug_assert!(!data.is_empty() && data.len().is_multiple_of(128));
        let every = Lanes::new([powers[7]; 8]);
        let last = Lanes::new(std::array::from_fn(|j| powers[7 - j]));
        let m44 = _mm512_set1_epi64(M44 as i64);
        let hibit = _mm512_set1_epi64(HIBIT as i64);
        let even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        let odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
        let start = |k: usize| _mm512_setr_epi64(h[k] as i64, 0, 0, 0, 0, 0, 0, 0);
        let mut a = [start(0), start(1), start(2)];
        let rounds = data.len() / 128;
        for (i, round) in data.chunks_exact(128).enumerate() {
            // SAFETY: two unaligned 64-byte loads from a 128-byte chunk.
            let (x, y) = unsafe {
                (
                    _mm512_loadu_si512(round.as_ptr().cast()),
                    _mm512_loadu_si512(round[64..].as_ptr().cast()),
                )
            };
            // Lane j gets block j: its low and high 64-bit words.
            let lo = _mm512_permutex2var_epi64(x, even, y);
            let hi = _mm512_permutex2var_epi64(x, odd, y);
            let m0 = _mm512_and_si512(lo, m44);
            let m1 = _mm512_and_si512(
                _mm512_or_si512(_mm512_srli_epi64::<44>(lo), _mm512_slli_epi64::<20>(hi)),
                m44,
            );
            let m2 = _mm512_or_si512(_mm512_srli_epi64::<24>(hi), hibit);
            let sum = [
                _mm512_add_epi64(a[0], m0),
                _mm512_add_epi64(a[1], m1),
                _mm512_add_epi64(a[2], m2),
            ];
            a = mul(sum, if i + 1 == rounds { &last } else { &every });
        }
        let lanes = |v: __m512i| {
            let mut out = [0u64; 8];
            // SAFETY: an unaligned store of 64 bytes into an array of 64 bytes.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) };
            out.iter().sum::<u64>()
        };
        let mut h = carry([lanes(a[0]), lanes(a[1]), lanes(a[2])]);
        h[1] += h[0] >> 44;
        h[0] &= M44;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac_tag(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
        Mac::new(key).tag(data)
    }

    fn crate_tag(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
        poly1305::Poly1305::new(key.into())
            .compute_unpadded(data)
            .into()
    }

    use crate::test_bytes::xorshift as bytes;

    /// The tag through the vector path: `pieces` (in blocks) as updates of their own, then
    /// the rest of the whole blocks at once, then the tail.
    fn ifma_tag(key: &[u8; 32], data: &[u8], pieces: &[usize]) -> [u8; 16] {
        let mut state = IfmaState::new(key);
        let whole = data.len() / 16 * 16;
        let mut rest = &data[..whole];
        for &p in pieces {
            let (now, later) = rest.split_at((p * 16).min(rest.len()));
            state.update(now);
            rest = later;
        }
        state.update(rest);
        state.finish(&data[whole..])
    }

    #[test]
    fn the_rfc_8439_example_gives_its_tag() {
        let key: [u8; 32] = [
            0x85, 0xd6, 0xbe, 0x78, 0x57, 0x55, 0x6d, 0x33, 0x7f, 0x44, 0x52, 0xfe, 0x42, 0xd5,
            0x06, 0xa8, 0x01, 0x03, 0x80, 0x8a, 0xfb, 0x0d, 0xb2, 0xfd, 0x4a, 0xbf, 0xf6, 0xaf,
            0x41, 0x49, 0xf5, 0x1b,
        ];
        let tag = [
            0xa8, 0x06, 0x1d, 0xc1, 0x30, 0x51, 0x36, 0xc6, 0xc2, 0x2b, 0x8b, 0xaf, 0x0c, 0x01,
            0x27, 0xa9,
        ];
        let message = b"Cryptographic Forum Research Group";
        assert_eq!(mac_tag(&key, message), tag);
        if ifma_available() {
            assert_eq!(ifma_tag(&key, message, &[]), tag);
        }
    }

    /// Scalar rounds only (short messages), the vector path (IFMA, when this CPU has it) and
    /// the fallback to the crate, fed whole or in pieces, give the crate's one-shot tag:
    /// random keys and data, the largest r clamping allows with all-ones data (limbs at their
    /// widest), every tail length.
    #[test]
    fn every_path_gives_the_crates_tag() {
        if !ifma_available() {
            eprintln!("this CPU has no AVX-512 IFMA: Mac uses the poly1305 crate itself");
        }
        let mut cases: Vec<([u8; 32], Vec<u8>)> = Vec::new();
        for seed in 1..200u64 {
            let key: [u8; 32] = bytes(seed * 7919, 32).try_into().unwrap();
            let len = (seed as usize * 37) % 3000 + seed as usize % 17;
            cases.push((key, bytes(seed, len)));
        }
        for len in [0, 1, 15, 16, 17, 511, 512, 513, 4096 + 5, 100_000] {
            cases.push(([0xff; 32], vec![0xff; len]));
            cases.push(([0x00; 32], vec![0xff; len]));
            cases.push(([0xff; 32], vec![0x00; len]));
        }
        cases.push((bytes(3, 32).try_into().unwrap(), bytes(4, 1 << 20)));
        for (i, (key, data)) in cases.iter().enumerate() {
            let want = crate_tag(key, data);
            assert_eq!(
                mac_tag(key, data),
                want,
                "case {i}: Mac, {} bytes",
                data.len()
            );
            let mut scalar = IfmaState::new(key);
            let whole = data.len() / 16 * 16;
            for block in data[..whole].chunks(16 * (VECTOR_AT_LEAST - 1)) {
                scalar.update(block);
            }
            assert_eq!(scalar.finish(&data[whole..]), want, "case {i}: scalar");
            let mut crate_path = Mac::Crate(poly1305::Poly1305::new(key.into()));
            for blocks in data[..whole].chunks(16 * 33) {
                crate_path.update(blocks);
            }
            assert_eq!(
                crate_path.finish(&data[whole..]),
                want,
                "case {i}: crate path"
            );
            if ifma_available() {
                assert_eq!(ifma_tag(key, data, &[]), want, "case {i}: whole");
                let pieces = [33, 64, 1, 40, 2048, 7, 100];
                assert_eq!(ifma_tag(key, data, &pieces), want, "case {i}: pieces");
            }
        }
    }
}
