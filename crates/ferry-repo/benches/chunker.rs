//! Chunker throughput: `cargo bench -p ferry-repo --bench chunker` (a plain binary, no harness).
//! Chunks 256 MiB of pseudo-random data (incompressible, ~1 MiB chunks) three times and prints
//! MiB/s for each run.

use std::time::Instant;

use ferry_repo::chunker::{Chunker, Pol};

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
    let pol = Pol(0x3DA3358B4DC173);
    let mut chunk = Vec::new();
    for run in 1..=3 {
        let started = Instant::now();
        let mut chunker = Chunker::new(&data[..], pol);
        let (mut chunks, mut bytes) = (0usize, 0usize);
        while let Some(info) = chunker.next_chunk_into(&mut chunk).expect("in-memory read") {
            chunks += 1;
            bytes += info.len;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "run {run}: {chunks} chunks, {bytes} bytes, {:.0} MiB/s",
            bytes as f64 / seconds / (1024.0 * 1024.0)
        );
    }
}
