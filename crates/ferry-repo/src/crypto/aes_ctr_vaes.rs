//! AES-256-CTR, restic's cipher (a 128-bit big-endian counter starting at the IV), with
//! VAES where the CPU has it and AVX-512: four blocks per instruction, sixteen in flight.
//! The `aes` crate's AES-NI code does one block per instruction; every byte a restore reads
//! and a backup writes goes through this. Elsewhere the `aes` and `ctr` crates as before.

use aes::cipher::{KeyIvInit, StreamCipher, generic_array::GenericArray};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// The keystream of one message: XORed into data a piece at a time, pieces of any length.
pub(crate) enum Keystream {
    #[cfg(target_arch = "x86_64")]
    Vaes(vaes::Ctr),
    Crate(Aes256Ctr),
}

impl Keystream {
    pub(crate) fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if vaes::available() {
            // SAFETY: the CPU has the features the function is compiled for.
            return Keystream::Vaes(unsafe { vaes::Ctr::new(key, iv) });
        }
        Self::portable(key, iv)
    }

    /// The `ctr` and `aes` crates' keystream, whatever the CPU.
    pub(crate) fn portable(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        Keystream::Crate(Aes256Ctr::new(
            GenericArray::from_slice(key),
            GenericArray::from_slice(iv),
        ))
    }

    /// XORs the next `buf.len()` bytes of the keystream into `buf`.
    pub(crate) fn apply(&mut self, buf: &mut [u8]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Vaes keystream exists only where the CPU has the features.
            Keystream::Vaes(c) => unsafe { c.apply(buf.as_ptr(), buf.as_mut_ptr(), buf.len()) },
            Keystream::Crate(c) => c.apply_keystream(buf),
        }
    }

    /// Writes `input` XOR the next `input.len()` bytes of the keystream into `out` (as long).
    pub(crate) fn apply_to(&mut self, input: &[u8], out: &mut [u8]) {
        assert_eq!(input.len(), out.len(), "keystream: lengths differ");
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above; the lengths are equal.
            Keystream::Vaes(c) => unsafe { c.apply(input.as_ptr(), out.as_mut_ptr(), out.len()) },
            Keystream::Crate(c) => c
                .apply_keystream_b2b(input, out)
                .expect("lengths checked above"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vaes {
    use std::arch::x86_64::*;

    use zeroize::Zeroize;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("vaes")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("aes")
    }

    /// Blocks encrypted per round of the bulk loop: four registers of four.
    const WIDE: usize = 16;

    pub(crate) struct Ctr {
        /// The 15 round keys, each in all four 128-bit lanes.
        round_keys: [__m512i; 15],
        /// The counter of the next block not yet encrypted.
        counter: u128,
        /// Keystream left over from the last partial block: `spare[used..]`.
        spare: [u8; 16],
        used: usize,
    }

    impl Drop for Ctr {
        fn drop(&mut self) {
            // SAFETY: the round keys are plain bytes.
            let bytes: &mut [u8; 15 * 64] =
                unsafe { &mut *(&mut self.round_keys as *mut [__m512i; 15] as *mut [u8; 15 * 64]) };
            bytes.zeroize();
            self.spare.zeroize();
        }
    }

    impl Ctr {
        /// # Safety
        /// The CPU must have the features [`available`] checks.
        #[target_feature(enable = "vaes,avx512f,avx512bw,aes,sse2")]
        pub(super) unsafe fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
            let expanded = expand_key(key);
            Ctr {
                round_keys: expanded.map(|k| _mm512_broadcast_i32x4(k)),
                counter: u128::from_be_bytes(*iv),
                spare: [0; 16],
                used: 16,
            }
        }

        /// `out[..len]` = `input[..len]` XOR the keystream's next `len` bytes. `input` may be
        /// `out`.
        ///
        /// # Safety
        /// The CPU must have the features [`available`] checks; `len` bytes must be readable
        /// at `input` and writable at `out`.
        #[target_feature(enable = "vaes,avx512f,avx512bw,aes,sse2")]
        pub(super) unsafe fn apply(&mut self, input: *const u8, out: *mut u8, len: usize) {
            let mut done = 0;
            // First what is left of the last partial block.
            while self.used < 16 && done < len {
                // SAFETY: done < len.
                unsafe { *out.add(done) = *input.add(done) ^ self.spare[self.used] };
                self.used += 1;
                done += 1;
            }
            let swap = byte_reverse_lanes();
            let lo = self.counter as u64;
            if len - done >= WIDE * 16 && lo <= u64::MAX - (len / 16) as u64 {
                // The counter's low half does not wrap in this call: count in vectors.
                let hi = (self.counter >> 64) as u64 as i64;
                let l = lo as i64;
                let mut ctr: [__m512i; 4] = std::array::from_fn(|j| {
                    let b = |i: i64| l.wrapping_add(4 * j as i64 + i);
                    _mm512_set_epi64(hi, b(3), hi, b(2), hi, b(1), hi, b(0))
                });
                let step = _mm512_set_epi64(0, 16, 0, 16, 0, 16, 0, 16);
                while len - done >= WIDE * 16 {
                    let ks = self.encrypt4(ctr.map(|c| _mm512_shuffle_epi8(c, swap)));
                    for (j, k) in ks.iter().enumerate() {
                        // SAFETY: 256 bytes remain from `done`; unaligned loads and stores.
                        unsafe {
                            let at = done + 64 * j;
                            let x = _mm512_loadu_si512(input.add(at) as *const _);
                            _mm512_storeu_si512(out.add(at) as *mut _, _mm512_xor_si512(x, *k));
                        }
                    }
                    ctr = ctr.map(|c| _mm512_add_epi64(c, step));
                    self.counter = self.counter.wrapping_add(WIDE as u128);
                    done += WIDE * 16;
                }
            }
            // The rest (and any call whose counter's low half wraps): sixteen blocks at a
            // time, counters built one by one.
            while done < len {
                let ks = self.keystream_blocks();
                let take = (len - done).min(WIDE * 16);
                for (i, k) in ks[..take].iter().enumerate() {
                    // SAFETY: done + i < len.
                    unsafe { *out.add(done + i) = *input.add(done + i) ^ k };
                }
                let blocks = take.div_ceil(16);
                self.counter = self.counter.wrapping_add(blocks as u128);
                if !take.is_multiple_of(16) {
                    let last = (blocks - 1) * 16;
                    self.spare.copy_from_slice(&ks[last..last + 16]);
                    self.used = take % 16;
                }
                done += take;
            }
        }

        /// The keystream of the next sixteen blocks, counters computed with u128 arithmetic.
        #[target_feature(enable = "vaes,avx512f,avx512bw,aes,sse2")]
        fn keystream_blocks(&self) -> [u8; WIDE * 16] {
            let mut counters = [0u8; WIDE * 16];
            for (i, c) in counters.chunks_exact_mut(16).enumerate() {
                c.copy_from_slice(&self.counter.wrapping_add(i as u128).to_be_bytes());
            }
            // SAFETY: 256 bytes, read as four unaligned vectors.
            let blocks: [__m512i; 4] = std::array::from_fn(|j| unsafe {
                _mm512_loadu_si512(counters[64 * j..].as_ptr() as *const _)
            });
            let ks = self.encrypt4(blocks);
            let mut out = [0u8; WIDE * 16];
            for (j, k) in ks.iter().enumerate() {
                // SAFETY: 64 bytes written at 64·j < 256.
                unsafe { _mm512_storeu_si512(out[64 * j..].as_mut_ptr() as *mut _, *k) };
            }
            out
        }

        /// AES-256 of sixteen blocks.
        #[inline]
        #[target_feature(enable = "vaes,avx512f,avx512bw,aes,sse2")]
        fn encrypt4(&self, blocks: [__m512i; 4]) -> [__m512i; 4] {
            let k = &self.round_keys;
            let mut x = blocks.map(|b| _mm512_xor_si512(b, k[0]));
            for rk in &k[1..14] {
                x = x.map(|b| _mm512_aesenc_epi128(b, *rk));
            }
            x.map(|b| _mm512_aesenclast_epi128(b, k[14]))
        }
    }

    /// A shuffle that reverses the bytes of each 128-bit lane: a counter held as two
    /// little-endian 64-bit halves becomes the big-endian block AES encrypts.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn byte_reverse_lanes() -> __m512i {
        let lane = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        _mm512_broadcast_i32x4(lane)
    }

    /// AES-256's key schedule: 15 round keys.
    #[target_feature(enable = "aes,sse2")]
    fn expand_key(key: &[u8; 32]) -> [__m128i; 15] {
        /// Each word XORed with all the words before it in the register.
        #[inline]
        #[target_feature(enable = "sse2")]
        fn spread(x: __m128i, t: __m128i) -> __m128i {
            let mut s = _mm_slli_si128::<4>(x);
            let mut x = _mm_xor_si128(x, s);
            s = _mm_slli_si128::<4>(s);
            x = _mm_xor_si128(x, s);
            s = _mm_slli_si128::<4>(s);
            _mm_xor_si128(_mm_xor_si128(x, s), t)
        }
        // SAFETY: 32 bytes, read as two unaligned vectors.
        let (mut a, mut b) = unsafe {
            (
                _mm_loadu_si128(key.as_ptr() as *const __m128i),
                _mm_loadu_si128(key[16..].as_ptr() as *const __m128i),
            )
        };
        let mut rk = [a; 15];
        rk[1] = b;
        // Round keys 2i and 2i + 1 from the two before: RotWord, SubWord and the round
        // constant for the first, SubWord alone for the second.
        macro_rules! pair {
            ($i:expr, $rcon:expr) => {
                a = spread(
                    a,
                    _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(b)),
                );
                rk[$i] = a;
                b = spread(
                    b,
                    _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(a)),
                );
                rk[$i + 1] = b;
            };
        }
        pair!(2, 0x01);
        pair!(4, 0x02);
        pair!(6, 0x04);
        pair!(8, 0x08);
        pair!(10, 0x10);
        pair!(12, 0x20);
        rk[14] = spread(
            a,
            _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<0x40>(b)),
        );
        rk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        crate::test_bytes::spread(seed, len)
    }

    /// Encrypts `data` with `new` in pieces of `piece` bytes (alternating in place and
    /// into another buffer).
    fn encrypt(mut ks: Keystream, data: &[u8], piece: usize) -> Vec<u8> {
        let mut out = data.to_vec();
        for (i, chunk) in out.chunks_mut(piece.max(1)).enumerate() {
            if i % 2 == 0 {
                ks.apply(chunk);
            } else {
                let input = chunk.to_vec();
                ks.apply_to(&input, chunk);
            }
        }
        out
    }

    #[test]
    fn the_keystream_is_the_crates_for_every_length_piece_and_counter() {
        // IVs whose low 64 bits (and whole 128 bits) wrap within the message, and random ones.
        let mut ivs = vec![
            [0xff; 16],
            {
                let mut iv = [0u8; 16];
                iv[8..].copy_from_slice(&(u64::MAX - 5).to_be_bytes());
                iv
            },
            [0u8; 16],
        ];
        for s in 0..4 {
            ivs.push(bytes(16, 50 + s).try_into().unwrap());
        }
        for (n, iv) in ivs.iter().enumerate() {
            let key: [u8; 32] = bytes(32, n as u64).try_into().unwrap();
            for len in [
                0,
                1,
                15,
                16,
                17,
                255,
                256,
                257,
                511,
                512,
                1000,
                4096 + 7,
                70_000,
            ] {
                let data = bytes(len, len as u64);
                let want = encrypt(Keystream::portable(&key, iv), &data, len.max(1));
                for piece in [1, 7, 16, 100, 256, 300, 4096, len.max(1)] {
                    let got = encrypt(Keystream::new(&key, iv), &data, piece);
                    assert!(got == want, "iv {n}, {len} bytes in pieces of {piece}");
                }
            }
        }
    }

    #[test]
    fn nist_sp_800_38a_ctr_aes256_gives_its_ciphertext() {
        // SP 800-38A, F.5.5 (CTR-AES256.Encrypt), the four blocks.
        let key: [u8; 32] =
            hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
                .unwrap()
                .try_into()
                .unwrap();
        let iv: [u8; 16] = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .unwrap()
            .try_into()
            .unwrap();
        let plain = hex::decode(concat!(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
        ))
        .unwrap();
        let want = concat!(
            "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5",
            "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"
        );
        let mut buf = plain.clone();
        Keystream::new(&key, &iv).apply(&mut buf);
        assert_eq!(hex::encode(&buf), want);
    }

    #[test]
    fn vaes_is_used_where_the_cpu_has_it() {
        // So that the test above compares VAES with the crates on such a CPU, not the crates
        // with themselves.
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("vaes") && is_x86_feature_detected!("avx512bw") {
            assert!(matches!(
                Keystream::new(&[0; 32], &[0; 16]),
                Keystream::Vaes(_)
            ));
        }
    }
}
