//! scrypt for key files: restic's parameter limits, restic's calibration of new keys, and a
//! derivation that runs scrypt's p lanes on separate threads.
//!
//! scrypt(P, S, N, r, p) is PBKDF2-SHA256(P, S, 1, p·128·r) cut into p lanes of 128·r bytes,
//! each mixed by ROMix independently, then PBKDF2-SHA256(P, lanes, 1, dkLen). The lanes do not
//! depend on each other, so they can run at once: restic (Go) runs them one after another,
//! ferry on as many threads as the CPUs and a memory budget allow. PBKDF2 is the `pbkdf2`
//! crate's; ROMix and BlockMix are written here over words, with a word-level Salsa20/8
//! core (checked against the `salsa20` crate's and RFC 7914's vector). The output is the
//! scrypt crate's, checked in the tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pbkdf2::pbkdf2_hmac;
use sha2::Sha256;
use zeroize::Zeroize;

use crate::crypto::Key;

mod vector_lanes;
use vector_lanes::Simd;

/// restic's limits on scrypt parameters (its scrypt wrapper's `Check`), with its int bound.
const MAX_INT: u64 = (1 << 31) - 1;

/// Calibration of new keys, as restic does it: at most 60 MiB per lane, about 0.5 s.
pub const CALIBRATE_TARGET: Duration = Duration::from_millis(500);
pub const CALIBRATE_MEMORY: u64 = 60 << 20;
/// r is fixed for new keys (as in restic).
pub const NEW_KEY_R: u32 = 8;

/// Lanes running at once may use at most this much memory together (a key file's lane may
/// need up to 2 GiB within restic's limits; such lanes run one at a time).
const PARALLEL_MEMORY: u64 = 512 << 20;

/// Lanes mixed side by side hold a table each: all threads' together stay within this, which
/// at restic's N=2^15, r=8 means two lanes on each of two threads. Four on each (256 MiB)
/// made the restore of a 1 GiB file peak at 266 MiB of RSS instead of 97.
const SIDE_BY_SIDE_MEMORY: u64 = 128 << 20;

/// The scrypt parameters stored in a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub n: u64,
    pub r: u32,
    pub p: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KdfError {
    #[error("scrypt parameters N={n} r={r} p={p} are outside restic's limits: {why}")]
    OutOfLimits { n: u64, r: u32, p: u32, why: String },
    #[error("cannot allocate {mib} MiB for scrypt (N={n} r={r} p={p})")]
    NoMemory { mib: u64, n: u64, r: u32, p: u32 },
}

impl KdfParams {
    /// Bytes one lane's ROMix needs (its table V).
    pub fn lane_memory(&self) -> u64 {
        128 * self.r as u64 * self.n
    }

    /// restic's limits, checked before anything is allocated: N a power of two in
    /// 2..2^31, r·p < 2^30, 128·r·p and 128·r·N below 2^31 (so no buffer exceeds 2 GiB).
    pub fn check(&self) -> Result<scrypt::Params, KdfError> {
        let (n, r, p) = (self.n, self.r as u64, self.p as u64);
        let bad = |why: &str| KdfError::OutOfLimits {
            n: self.n,
            r: self.r,
            p: self.p,
            why: why.into(),
        };
        if n <= 1 || n > MAX_INT || !n.is_power_of_two() {
            return Err(bad("N must be a power of two between 2 and 2^30"));
        }
        if r < 1 || p < 1 {
            return Err(bad("r and p must be at least 1"));
        }
        if r * p >= 1 << 30 || r > MAX_INT / 128 / p || r > MAX_INT / 256 || n > MAX_INT / 128 / r {
            return Err(bad("they would need more than 2 GiB of memory"));
        }
        scrypt::Params::new(n.trailing_zeros() as u8, self.r, self.p, 64)
            .map_err(|e| bad(&e.to_string()))
    }
}

/// Derives the 64-byte key restic splits into AES and Poly1305 keys.
pub fn derive(password: &[u8], salt: &[u8], params: KdfParams) -> Result<Key, KdfError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    derive_with_threads(password, salt, params, threads)
}

static DERIVATIONS: AtomicU64 = AtomicU64::new(0);

/// How many keys this process has derived from passwords (calibration runs not counted):
/// tests check with it that a process derives a repository's key once.
pub fn derivations() -> u64 {
    DERIVATIONS.load(Ordering::Relaxed)
}

/// [`derive`] with at most `threads` lanes at once (1 = restic's order and cost).
pub fn derive_with_threads(
    password: &[u8],
    salt: &[u8],
    params: KdfParams,
    threads: usize,
) -> Result<Key, KdfError> {
    DERIVATIONS.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 64];
    scrypt_lanes(password, salt, params, threads, &mut out)?;
    let key = Key::from_kdf_output(&out);
    out.zeroize();
    Ok(key)
}

fn alloc_zeroed<T: Clone + Default>(len: usize, params: KdfParams) -> Result<Vec<T>, KdfError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| KdfError::NoMemory {
        mib: (len * std::mem::size_of::<T>()) as u64 >> 20,
        n: params.n,
        r: params.r,
        p: params.p,
    })?;
    huge_pages(&mut v);
    v.resize(len, T::default());
    Ok(v)
}

/// Asks for transparent huge pages under a table before its first touch. Each thread's
/// tables (64 MiB at restic's N=2^15, r=8, two lanes side by side) took 16,384 page faults
/// with 4 KiB pages: 0.07-0.10 s of system time in a 0.22 s key derivation on the 2-CPU VM;
/// with 2 MiB pages 0.01-0.02 s, and the derivation 0.17-0.18 s. Advice only: where the
/// kernel has huge pages off (or none free), nothing changes; a buffer holding no whole
/// 2 MiB page (the lanes' PBKDF2 output) is left alone.
fn huge_pages<T>(v: &mut Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        let start = v.as_mut_ptr() as usize;
        // Only whole 2 MiB pages inside the allocation can be huge.
        let (first, end) = (start.next_multiple_of(HUGE), (start + bytes) & !(HUGE - 1));
        if end > first {
            // SAFETY: the range lies inside this Vec's allocation; MADV_HUGEPAGE changes
            // how its pages are backed, never their contents.
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
        }
    }
}

/// scrypt into `out`, lanes spread over up to `threads` threads (and side by side in vector
/// registers on each where the CPU allows).
pub fn scrypt_lanes(
    password: &[u8],
    salt: &[u8],
    params: KdfParams,
    threads: usize,
    out: &mut [u8],
) -> Result<(), KdfError> {
    scrypt_lanes_with(Simd::detect(), password, salt, params, threads, out)
}

fn scrypt_lanes_with(
    simd: Simd,
    password: &[u8],
    salt: &[u8],
    params: KdfParams,
    threads: usize,
    out: &mut [u8],
) -> Result<(), KdfError> {
    params.check()?;
    let lane_bytes = 128 * params.r as usize;
    let n = params.n as usize;
    let p = params.p as usize;
    let mut b: Vec<u8> = alloc_zeroed(p * lane_bytes, params)?;
    pbkdf2_hmac::<Sha256>(password, salt, 1, &mut b);

    let by_memory = (PARALLEL_MEMORY / params.lane_memory()).max(1) as usize;
    let threads = threads.min(p).min(by_memory).max(1);
    // Lanes mixed side by side on each thread, within the memory budget.
    let side_by_memory = (SIDE_BY_SIDE_MEMORY / (params.lane_memory() * threads as u64)) as usize;
    let side = simd.width().min(side_by_memory).max(1);
    let mut lanes: Vec<&mut [u8]> = b.chunks_mut(lane_bytes).collect();
    let per_thread = p.div_ceil(threads);
    let results: Vec<Result<(), KdfError>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for mut group in lanes.chunks_mut(per_thread) {
            handles.push(s.spawn(move || {
                // Each thread owns one table V per lane it mixes at once, reused.
                let at_once = side.min(group.len());
                let mut v: Vec<u32> = alloc_zeroed(at_once * n * lane_bytes / 4, params)?;
                while !group.is_empty() {
                    // 4, 2 or 1 lanes: the widths the vector code has.
                    let take = 1 << at_once.min(group.len()).ilog2();
                    let (now, rest) = std::mem::take(&mut group).split_at_mut(take);
                    vector_lanes::ro_mix_lanes(simd, now, &mut v, n);
                    group = rest;
                }
                v.zeroize();
                Ok(())
            }));
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("scrypt lane panicked"))
            .collect()
    });
    let lanes_done = results.into_iter().collect::<Result<(), KdfError>>();
    if let Err(e) = lanes_done {
        b.zeroize();
        return Err(e);
    }
    pbkdf2_hmac::<Sha256>(password, &b, 1, out);
    b.zeroize();
    Ok(())
}

/// ROMix over one lane (bytes, little-endian words), with `v` as its table of N lanes.
fn ro_mix(lane: &mut [u8], v: &mut [u32], n: usize) {
    let words = lane.len() / 4;
    let mut x: Vec<u32> = lane
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let mut y = vec![0u32; words];
    for i in 0..n {
        v[i * words..(i + 1) * words].copy_from_slice(&x);
        block_mix(&x, &mut y);
        std::mem::swap(&mut x, &mut y);
    }
    for _ in 0..n {
        // Integerify: the first word of the last 64-byte block, modulo N (a power of two).
        let j = x[words - 16] as usize & (n - 1);
        for (a, b) in x.iter_mut().zip(&v[j * words..(j + 1) * words]) {
            *a ^= b;
        }
        block_mix(&x, &mut y);
        std::mem::swap(&mut x, &mut y);
    }
    for (c, w) in lane.chunks_exact_mut(4).zip(&x) {
        c.copy_from_slice(&w.to_le_bytes());
    }
    x.zeroize();
    y.zeroize();
}

/// BlockMix with Salsa20/8: chains the 2r 64-byte blocks of `input` through the core and
/// writes the even outputs to the first half of `output`, the odd ones to the second half.
fn block_mix(input: &[u32], output: &mut [u32]) {
    let blocks = input.len() / 16;
    let mut x = [0u32; 16];
    x.copy_from_slice(&input[input.len() - 16..]);
    for (i, block) in input.chunks_exact(16).enumerate() {
        for (a, b) in x.iter_mut().zip(block) {
            *a ^= b;
        }
        salsa20_8(&mut x);
        let at = if i % 2 == 0 {
            i / 2
        } else {
            blocks / 2 + i / 2
        };
        output[at * 16..at * 16 + 16].copy_from_slice(&x);
    }
}

/// The Salsa20/8 core on words, in place (RFC 7914 section 3). The `salsa20` crate's core
/// (checked against this one in the tests) goes through its stream-cipher interface and
/// bytes; on words the whole lane ran about 1.5x faster (perf: register spills and a
/// round loop kept in memory in the crate's path).
#[inline(always)]
fn salsa20_8(b: &mut [u32; 16]) {
    let mut x = *b;
    macro_rules! quarter {
        ($a:expr, $b:expr, $c:expr, $d:expr) => {
            x[$b] ^= x[$a].wrapping_add(x[$d]).rotate_left(7);
            x[$c] ^= x[$b].wrapping_add(x[$a]).rotate_left(9);
            x[$d] ^= x[$c].wrapping_add(x[$b]).rotate_left(13);
            x[$a] ^= x[$d].wrapping_add(x[$c]).rotate_left(18);
        };
    }
    for _ in 0..4 {
        // Columns, then rows.
        quarter!(0, 4, 8, 12);
        quarter!(5, 9, 13, 1);
        quarter!(10, 14, 2, 6);
        quarter!(15, 3, 7, 11);
        quarter!(0, 1, 2, 3);
        quarter!(5, 6, 7, 4);
        quarter!(10, 11, 8, 9);
        quarter!(15, 12, 13, 14);
    }
    for (o, v) in b.iter_mut().zip(x) {
        *o = o.wrapping_add(v);
    }
}

/// Parameters for a new key, calibrated as restic calibrates: r = 8, N the largest power of
/// two whose lane stays below 60 MiB (halved while one lane takes longer than 0.5 s), then
/// p = 0.5 s / (time of one lane), lowered while p lanes one after another take longer than
/// 0.5 s. The lanes are timed one after another, as restic's scrypt runs them, so a key ferry
/// makes costs restic the same half second to open as one restic makes (ferry opens it
/// faster by running the lanes at once).
pub fn calibrate() -> KdfParams {
    calibrate_with(CALIBRATE_TARGET, CALIBRATE_MEMORY)
}

/// The largest power of two N whose lane (128·r·N bytes) stays below `memory`.
pub fn n_for_memory(memory: u64, r: u32) -> u64 {
    let mut n = 2u64;
    while 128 * r as u64 * n * 2 < memory {
        n *= 2;
    }
    n
}

pub fn calibrate_with(target: Duration, memory: u64) -> KdfParams {
    let salt: [u8; 64] = rand::random();
    let time = |params: KdfParams| {
        let started = Instant::now();
        let mut out = [0u8; 64];
        // The scalar core, one lane after another: what restic's Go scrypt does.
        scrypt_lanes_with(Simd::None, b"calibration", &salt, params, 1, &mut out)
            .expect("checked parameters");
        started.elapsed()
    };
    let mut params = KdfParams {
        n: n_for_memory(memory, NEW_KEY_R),
        r: NEW_KEY_R,
        p: 1,
    };
    let mut took = time(params);
    while took > target && params.n > 2 {
        params.n /= 2;
        took = time(params);
    }
    params.p = ((target.as_nanos() / took.as_nanos().max(1)) as u32).max(1);
    took = time(params);
    while took > target && params.p > 1 {
        let per_lane = took.as_nanos() / params.p as u128;
        params.p = ((target.as_nanos() / per_lane.max(1)) as u32).clamp(1, params.p - 1);
        took = time(params);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(pw: &[u8], salt: &[u8], p: KdfParams) -> [u8; 64] {
        let params = p.check().unwrap();
        let mut out = [0u8; 64];
        scrypt::scrypt(pw, salt, &params, &mut out).unwrap();
        out
    }

    #[test]
    fn parallel_lanes_give_the_scrypt_crates_output() {
        for (n, r, p) in [
            (16, 1, 1),
            (1024, 8, 1),
            (1024, 8, 3),
            (256, 4, 5),
            (512, 8, 9),
        ] {
            let params = KdfParams { n, r, p };
            let want = reference(b"password", b"salt bytes of a key", params);
            let levels = [Simd::Avx512, Simd::Avx2, Simd::None];
            for simd in levels.into_iter().filter(|s| s.available()) {
                for threads in [1, 2, 4] {
                    let mut got = [0u8; 64];
                    scrypt_lanes_with(
                        simd,
                        b"password",
                        b"salt bytes of a key",
                        params,
                        threads,
                        &mut got,
                    )
                    .unwrap();
                    assert_eq!(got, want, "N={n} r={r} p={p} threads={threads} {simd:?}");
                }
            }
        }
    }

    #[test]
    fn salsa20_8_core_matches_the_salsa20_crate_and_rfc7914() {
        use salsa20::cipher::StreamCipherCore;
        // RFC 7914 section 8: Salsa20/8 core input and output (little-endian words).
        let words = |h: &str| -> [u32; 16] {
            let b = hex::decode(h).unwrap();
            let mut w = [0u32; 16];
            for (w, c) in w.iter_mut().zip(b.chunks_exact(4)) {
                *w = u32::from_le_bytes(c.try_into().unwrap());
            }
            w
        };
        let input = words(
            "7e879a214f3ec9867ca940e641718f26baee555b8c61c1b50df846116dcd3b1dee24f319df9b3d8514121e4b5ac5aa3276021d2909c74829edebc68db8b8c25e",
        );
        let want = words(
            "a41f859c6608cc993b81cacb020cef05044b2181a2fd337dfd7b1c6396682f29b4393168e3c9e6bcfe6bc5b7a06d96bae424cc102c91745c24ad673dc7618f81",
        );
        let mut ours = input;
        salsa20_8(&mut ours);
        assert_eq!(ours, want);
        let mut bytes = [0u8; 64];
        salsa20::SalsaCore::<salsa20::cipher::typenum::U4>::from_raw_state(input)
            .write_keystream_block((&mut bytes).into());
        assert_eq!(words(&hex::encode(bytes)), want);
    }

    #[test]
    fn rfc7914_test_vector() {
        // RFC 7914 section 12, second vector (64-byte output).
        let mut out = [0u8; 64];
        scrypt_lanes(
            b"password",
            b"NaCl",
            KdfParams {
                n: 1024,
                r: 8,
                p: 16,
            },
            2,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            hex::encode(out),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
    }

    #[test]
    fn parameters_beyond_restics_limits_are_refused_before_allocating() {
        for (n, r, p) in [
            (1 << 25, 8, 1), // 4 GiB per lane
            (1 << 40, 8, 1),
            (3000, 8, 1),
            (1, 8, 1),
            (1 << 15, 0, 1),
            (1 << 15, 8, 0),
            (1 << 15, 8, 1 << 28), // r·p ≥ 2^30
            (1 << 15, 1 << 24, 1),
        ] {
            let err = KdfParams { n, r, p }.check().unwrap_err();
            assert!(
                matches!(err, KdfError::OutOfLimits { .. }),
                "N={n} r={r} p={p}: {err}"
            );
            let mut out = [0u8; 64];
            assert_eq!(
                scrypt_lanes(b"pw", b"salt", KdfParams { n, r, p }, 2, &mut out),
                Err(err)
            );
        }
        assert!(
            KdfParams {
                n: 1 << 15,
                r: 8,
                p: 9
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn calibration_keeps_restics_memory_limit_and_r() {
        // A tiny target: N stays at the memory bound's power of two or drops, p at least 1.
        let p = calibrate_with(Duration::from_millis(20), CALIBRATE_MEMORY);
        assert_eq!(p.r, 8);
        assert!(p.n.is_power_of_two() && p.n <= 1 << 15, "{p:?}");
        assert!(p.p >= 1);
        assert!(p.check().is_ok());
        // restic's 60 MiB bound gives N = 2^15 (32 MiB lanes), what restic 0.14 writes.
        assert_eq!(n_for_memory(CALIBRATE_MEMORY, 8), 1 << 15);
        assert_eq!(n_for_memory(64 << 20, 8), 1 << 15);
        assert_eq!(n_for_memory((64 << 20) + 1, 8), 1 << 16);
    }
}
