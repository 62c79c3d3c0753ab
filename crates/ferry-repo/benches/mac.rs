//! Poly1305 throughput: `cargo bench -p ferry-repo --bench mac` (a plain binary, no harness).
//! MACs 1 GiB as 1 MiB messages (a restore's blobs are about that size) with ferry's Poly1305
//! (`crypto::poly1305`: AVX-512 IFMA where the CPU has it) and with the `poly1305` crate
//! (its AVX2 code), which ferry used before and still uses on CPUs without IFMA. Both must
//! give the same tags; then each runs five times and the medians are printed, with the
//! ratio. Restore MACs every byte it reads, backup every byte it writes.

mod common;
use common::{Bytes, median};

use std::time::Instant;

use poly1305::universal_hash::KeyInit;

const MESSAGE: usize = 1 << 20;
const TOTAL: usize = 1 << 30;

fn main() {
    let mut bytes = Bytes::new();
    let message = bytes.vec(MESSAGE);
    let keys: Vec<[u8; 32]> = (0..TOTAL / MESSAGE).map(|_| bytes.array()).collect();
    let ferry = |key: &[u8; 32]| ferry_repo::crypto::poly1305(key, &message);
    let crate_tag = |key: &[u8; 32]| -> [u8; 16] {
        poly1305::Poly1305::new(key.into())
            .compute_unpadded(&message)
            .into()
    };
    for key in &keys[..8] {
        assert_eq!(
            ferry(key),
            crate_tag(key),
            "ferry's tag differs from the crate's"
        );
    }
    let time = |mac: &dyn Fn(&[u8; 32]) -> [u8; 16]| {
        let started = Instant::now();
        let mut fold = 0u8;
        for key in &keys {
            fold ^= mac(key)[0];
        }
        std::hint::black_box(fold);
        started.elapsed().as_secs_f64()
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        ours.push(time(&ferry));
        theirs.push(time(&crate_tag));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("Poly1305 over 1 GiB in 1 MiB messages (median of 5):");
    println!(
        "  ferry (crypto::poly1305)   {ours:.3} s   {:.2} GiB/s",
        1.0 / ours
    );
    println!(
        "  poly1305 crate             {theirs:.3} s   {:.2} GiB/s",
        1.0 / theirs
    );
    println!("  ferry / crate throughput   {:.2}x", theirs / ours);
}
