//! Chunker throughput: `cargo bench -p ferry-repo --bench chunker` (a plain binary, no harness).
//! Chunks 256 MiB of pseudo-random data (incompressible, ~1 MiB chunks) with ferry's chunker
//! and with rustic_cdc's `Rabin64` configured like restic (and like rustic_core): the same
//! polynomial, 64-byte window, 512 KiB min / 8 MiB max, split mask 2^20 - 1 (1 MiB average).
//! Both must cut at the same boundaries; then each runs three times and the medians are
//! printed, with the ratio ferry / rustic_cdc. Both copy every chunk into a reused buffer.

use std::time::Instant;

use ferry_repo::chunker::{Chunker, MAX_SIZE, MIN_SIZE, Pol};
use rustic_cdc::{Rabin64, RollingHash64};

const WINDOW_SIZE: usize = 64;
const SPLIT_MASK: u64 = (1 << 20) - 1;

/// Chunk lengths from ferry's chunker.
fn ferry(data: &[u8], pol: Pol, chunk: &mut Vec<u8>) -> Vec<usize> {
    let mut chunker = Chunker::new(data, pol);
    let mut lengths = Vec::new();
    while let Some(info) = chunker.next_chunk_into(chunk).expect("in-memory read") {
        lengths.push(info.len);
    }
    lengths
}

/// Chunk lengths from rustic_cdc's Rabin64 driven the way restic's chunker is: reset at each
/// chunk start, the fingerprint rolled over the last 64 bytes before `MIN_SIZE` and a cut
/// wherever `hash & SPLIT_MASK == 0` from `MIN_SIZE` bytes on, or at `MAX_SIZE`.
fn rustic(data: &[u8], rabin: &mut Rabin64, chunk: &mut Vec<u8>) -> Vec<usize> {
    let mut lengths = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let mut len = rest.len();
        if len > MIN_SIZE {
            rabin.reset();
            for &byte in &rest[MIN_SIZE - WINDOW_SIZE..MIN_SIZE - 1] {
                rabin.slide(byte);
            }
            let end = len.min(MAX_SIZE);
            len = end;
            for (i, &byte) in rest[MIN_SIZE - 1..end].iter().enumerate() {
                rabin.slide(byte);
                if rabin.hash & SPLIT_MASK == 0 {
                    len = MIN_SIZE + i;
                    break;
                }
            }
        }
        chunk.clear();
        chunk.extend_from_slice(&rest[..len]);
        lengths.push(len);
        rest = &rest[len..];
    }
    lengths
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let size = 256 * 1024 * 1024;
    let mut data = vec![0u8; size];
    // xorshift64: fast, deterministic, no boundaries of its own.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for word in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
    // restic's tests' polynomial; the bench measures speed, any valid one would do.
    let pol = Pol(0x3DA3358B4DC173);
    let mut rabin = Rabin64::new_with_polynom(WINDOW_SIZE.trailing_zeros(), &pol.0);
    let mut chunk = Vec::new();

    let expected = ferry(&data, pol, &mut chunk);
    let theirs = rustic(&data, &mut rabin, &mut chunk);
    assert_eq!(
        expected, theirs,
        "ferry and rustic_cdc cut at different boundaries"
    );
    println!(
        "{} MiB, {} chunks, identical boundaries in ferry and rustic_cdc",
        size >> 20,
        expected.len()
    );

    let mib_per_s = |seconds: f64| size as f64 / seconds / (1024.0 * 1024.0);
    let (mut ours, mut rustic_cdc) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(ferry(&data, pol, &mut chunk), expected);
        ours.push(mib_per_s(started.elapsed().as_secs_f64()));
        let started = Instant::now();
        assert_eq!(rustic(&data, &mut rabin, &mut chunk), expected);
        rustic_cdc.push(mib_per_s(started.elapsed().as_secs_f64()));
    }
    let fmt = |runs: &[f64]| {
        let runs: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
        runs.join(", ")
    };
    println!(
        "ferry      {:>5.0} MiB/s (runs {})",
        median(ours.clone()),
        fmt(&ours)
    );
    println!(
        "rustic_cdc {:>5.0} MiB/s (runs {})",
        median(rustic_cdc.clone()),
        fmt(&rustic_cdc)
    );
    println!(
        "ferry / rustic_cdc: {:.2}x (medians of 3)",
        median(ours) / median(rustic_cdc)
    );
}
