//! SHA-256 of several messages at once. With the SHA extensions (SHA-NI) one message is
//! bound by the latency of `sha256rnds2`: each pair of rounds waits for the one before. Four
//! independent messages interleaved keep the unit busy: 0.33 s/GiB against the `sha2`
//! crate's 0.60 s/GiB for one message at a time on the AMD EPYC (Zen 4) benchmark machine
//! (`cargo bench -p ferry-repo --bench sha256`). Restore checks every blob's id, so a worker
//! decodes a few blobs and hashes them together.
//!
//! Without SHA-NI (or off x86_64) each message goes through the `sha2` crate.

use sha2::{Digest, Sha256};

use super::Id;

/// How many messages are hashed side by side.
pub const LANES: usize = 4;

/// The SHA-256 of each message, in order, into `out` (cleared first).
pub fn hash_each(msgs: &[&[u8]], out: &mut Vec<Id>) {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    if msgs.len() > 1 && interleaved() {
        out.resize(msgs.len(), Id::default());
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { shani::hash_each(msgs, out) };
        return;
    }
    out.extend(msgs.iter().map(|m| Id(Sha256::digest(m).into())));
}

/// Whether [`hash_each`] interleaves messages on this CPU.
pub fn interleaved() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        shani::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::*;

    use super::{Id, LANES};

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    const H0: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse4.1")
            && is_x86_feature_detected!("ssse3")
    }

    /// The eight words as `sha256rnds2` wants them: (a, b, e, f) and (c, d, g, h), each with
    /// its first word in the highest lane.
    #[derive(Clone, Copy)]
    struct State {
        abef: __m128i,
        cdgh: __m128i,
    }

    /// One message in a lane: its whole 64-byte blocks straight from the message, then the
    /// last partial block with the padding and the bit length (one or two blocks) from `tail`.
    struct Lane<'a> {
        index: usize,
        body: &'a [u8],
        tail: [u8; 128],
        tail_blocks: usize,
        /// Blocks compressed so far, body first.
        done: usize,
        state: State,
    }

    impl<'a> Lane<'a> {
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn new(index: usize, msg: &'a [u8]) -> Self {
            let whole = msg.len() / 64 * 64;
            let rest = &msg[whole..];
            let mut tail = [0u8; 128];
            tail[..rest.len()].copy_from_slice(rest);
            tail[rest.len()] = 0x80;
            let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
            let bits = (msg.len() as u64).wrapping_mul(8).to_be_bytes();
            tail[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits);
            Lane {
                index,
                body: &msg[..whole],
                tail,
                tail_blocks,
                done: 0,
                state: load_state(&H0),
            }
        }

        /// Where the next block is and how many follow it contiguously.
        fn next_run(&self) -> (*const u8, usize) {
            let body_blocks = self.body.len() / 64;
            if self.done < body_blocks {
                (
                    self.body[self.done * 64..].as_ptr(),
                    body_blocks - self.done,
                )
            } else {
                let t = self.done - body_blocks;
                (self.tail[t * 64..].as_ptr(), self.tail_blocks - t)
            }
        }

        fn finished(&self) -> bool {
            self.done == self.body.len() / 64 + self.tail_blocks
        }
    }

    /// Hashes `msgs` into `out` (same length), [`LANES`] at a time: whenever a message ends
    /// the next one takes its lane.
    ///
    /// # Safety
    /// The CPU must have SHA-NI, SSSE3 and SSE4.1 ([`available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn hash_each(msgs: &[&[u8]], out: &mut [Id]) {
        let mut lanes: Vec<Lane> = Vec::with_capacity(LANES);
        let mut next = msgs.iter().enumerate();
        loop {
            while lanes.len() < LANES {
                let Some((index, msg)) = next.next() else {
                    break;
                };
                lanes.push(Lane::new(index, msg));
            }
            let Some(blocks) = lanes.iter().map(|l| l.next_run().1).min() else {
                return;
            };
            // SAFETY: every lane's run holds at least `blocks` blocks.
            unsafe {
                match lanes.len() {
                    1 => compress_lanes::<1>(&mut lanes, blocks),
                    2 => compress_lanes::<2>(&mut lanes, blocks),
                    3 => compress_lanes::<3>(&mut lanes, blocks),
                    _ => compress_lanes::<4>(&mut lanes, blocks),
                }
            }
            lanes.retain(|l| {
                let finished = l.finished();
                if finished {
                    out[l.index] = Id(digest(l.state));
                }
                !finished
            });
        }
    }

    /// Compresses the next `blocks` blocks of each of the `N` lanes, interleaved.
    ///
    /// # Safety
    /// Each lane's [`Lane::next_run`] must hold at least `blocks` blocks.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn compress_lanes<const N: usize>(lanes: &mut [Lane], blocks: usize) {
        let mut states: [State; N] = std::array::from_fn(|j| lanes[j].state);
        let mut at: [*const u8; N] = std::array::from_fn(|j| lanes[j].next_run().0);
        for _ in 0..blocks {
            let saved = states;
            // SAFETY: the caller guarantees a whole block at each `at`.
            let mut w: [[__m128i; 4]; N] = std::array::from_fn(|j| unsafe { load_block(at[j]) });
            for g in 0..16 {
                for j in 0..N {
                    if g >= 4 {
                        schedule(&mut w[j], g);
                    }
                    four_rounds(&mut states[j], w[j][g % 4], g);
                }
            }
            for j in 0..N {
                states[j].abef = _mm_add_epi32(states[j].abef, saved[j].abef);
                states[j].cdgh = _mm_add_epi32(states[j].cdgh, saved[j].cdgh);
                // SAFETY: stays within (or one past) the run.
                at[j] = unsafe { at[j].add(64) };
            }
        }
        for (lane, state) in lanes.iter_mut().zip(states) {
            lane.state = state;
            lane.done += blocks;
        }
    }

    /// A block's sixteen big-endian words, four to a register.
    ///
    /// # Safety
    /// 64 bytes must be readable at `p`.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn load_block(p: *const u8) -> [__m128i; 4] {
        let swap = _mm_set_epi64x(0x0c0d0e0f08090a0b, 0x0405060700010203);
        // SAFETY: the caller guarantees 64 readable bytes; loadu needs no alignment.
        std::array::from_fn(|i| unsafe {
            _mm_shuffle_epi8(_mm_loadu_si128(p.add(16 * i) as *const __m128i), swap)
        })
    }

    /// Words 4g..4g+4 of the message schedule, from the previous sixteen (kept in `w`
    /// round-robin): W[t] = σ1(W[t−2]) + W[t−7] + σ0(W[t−15]) + W[t−16].
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(w: &mut [__m128i; 4], g: usize) {
        let (w16, w12, w8, w4) = (w[g % 4], w[(g + 1) % 4], w[(g + 2) % 4], w[(g + 3) % 4]);
        let partial = _mm_add_epi32(_mm_sha256msg1_epu32(w16, w12), _mm_alignr_epi8(w4, w8, 4));
        w[g % 4] = _mm_sha256msg2_epu32(partial, w4);
    }

    /// Rounds 4g..4g+4 with the schedule's words `w`.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn four_rounds(s: &mut State, w: __m128i, g: usize) {
        // SAFETY: K has 64 words; g < 16.
        let k = unsafe { _mm_loadu_si128(K.as_ptr().add(4 * g) as *const __m128i) };
        let wk = _mm_add_epi32(w, k);
        s.cdgh = _mm_sha256rnds2_epu32(s.cdgh, s.abef, wk);
        s.abef = _mm_sha256rnds2_epu32(s.abef, s.cdgh, _mm_shuffle_epi32(wk, 0x0e));
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load_state(h: &[u32; 8]) -> State {
        // SAFETY: h holds eight words.
        let (abcd, efgh) = unsafe {
            (
                _mm_loadu_si128(h.as_ptr() as *const __m128i),
                _mm_loadu_si128(h.as_ptr().add(4) as *const __m128i),
            )
        };
        let badc = _mm_shuffle_epi32(abcd, 0xb1);
        let hgfe = _mm_shuffle_epi32(efgh, 0x1b);
        State {
            abef: _mm_alignr_epi8(badc, hgfe, 8),
            cdgh: _mm_blend_epi16(hgfe, badc, 0xf0),
        }
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn digest(s: State) -> [u8; 32] {
        let feba = _mm_shuffle_epi32(s.abef, 0x1b);
        let dchg = _mm_shuffle_epi32(s.cdgh, 0xb1);
        let mut h = [0u32; 8];
        // SAFETY: h has room for eight words.
        unsafe {
            _mm_storeu_si128(
                h.as_mut_ptr() as *mut __m128i,
                _mm_blend_epi16(feba, dchg, 0xf0),
            );
            _mm_storeu_si128(
                h.as_mut_ptr().add(4) as *mut __m128i,
                _mm_alignr_epi8(dchg, feba, 8),
            );
        }
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(h) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize, seed: u64) -> Vec<u8> {
        crate::test_bytes::spread(seed, len)
    }

    fn check(msgs: &[Vec<u8>]) {
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let mut got = Vec::new();
        hash_each(&refs, &mut got);
        let want: Vec<Id> = msgs.iter().map(|m| Id(Sha256::digest(m).into())).collect();
        let lens: Vec<usize> = msgs.iter().map(|m| m.len()).collect();
        assert_eq!(got, want, "lengths {lens:?}");
        // The interleaved code itself, whatever the dispatch above chose (it leaves one
        // message to the sha2 crate).
        #[cfg(target_arch = "x86_64")]
        if shani::available() {
            let mut direct = vec![Id::default(); msgs.len()];
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { shani::hash_each(&refs, &mut direct) };
            assert_eq!(direct, want, "interleaved, lengths {lens:?}");
        }
    }

    #[test]
    fn sha_ni_is_used_where_the_cpu_has_it() {
        // `hash_each` dispatches on `interleaved()`: on such a CPU restores hash four blobs
        // at once.
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse4.1")
            && is_x86_feature_detected!("ssse3")
        {
            assert!(interleaved());
        }
    }

    #[test]
    fn every_length_around_the_block_and_padding_boundaries_in_every_lane() {
        // Lengths 0..=200 cover empty messages, one- and two-block tails and bodies of up
        // to three blocks; each group of five puts each length in a different lane, beside
        // messages that end earlier and later.
        let msgs: Vec<Vec<u8>> = (0..=200).map(|n| message(n, n as u64)).collect();
        for group in msgs.chunks(5) {
            check(group);
        }
        check(&msgs);
    }

    #[test]
    fn lanes_refill_as_messages_of_different_lengths_end() {
        let lens = [
            1 << 20,
            4096,
            0,
            65_536 + 63,
            55,
            300_001,
            1 << 16,
            56,
            64,
            9_999,
        ];
        let msgs: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| message(n, 100 + i as u64))
            .collect();
        for count in 0..=msgs.len() {
            check(&msgs[..count]);
        }
        // The same message several times: the lanes must not share anything.
        check(&vec![message(5_000, 7); 6]);
    }
}
