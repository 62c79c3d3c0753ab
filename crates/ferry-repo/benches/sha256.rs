//! SHA-256 throughput: `cargo bench -p ferry-repo --bench sha256` (a plain binary, no harness).
//! Hashes 1 GiB as 1 MiB messages (a restore's blobs are about that size) with
//! `Id::hash_each` (four messages interleaved with SHA-NI where the CPU has it) and one
//! message after another with the `sha2` crate (`Id::hash`, its SHA-NI code). Both must give
//! the same ids; then each runs five times and the medians of the thread's CPU time are
//! printed (so that another process on the machine does not count), with the ratio. Restore
//! checks the id of every blob it writes, backup computes the id of every chunk it reads.

mod common;
use common::{Bytes, median, thread_cpu};

use ferry_repo::id::Id;

const MESSAGE: usize = 1 << 20;
const TOTAL: usize = 1 << 30;
const BATCH: usize = 4;

fn main() {
    let mut bytes = Bytes::new();
    let messages: Vec<Vec<u8>> = (0..BATCH).map(|_| bytes.vec(MESSAGE)).collect();
    let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
    let mut ids = Vec::new();
    Id::hash_each(&refs, &mut ids);
    let one_by_one: Vec<Id> = refs.iter().map(|m| Id::hash(m)).collect();
    assert_eq!(ids, one_by_one, "hash_each differs from Id::hash");
    let rounds = TOTAL / MESSAGE / BATCH;
    let time = |f: &mut dyn FnMut()| {
        let started = thread_cpu();
        for _ in 0..rounds {
            f();
        }
        thread_cpu() - started
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        ours.push(time(&mut || {
            Id::hash_each(&refs, &mut ids);
            std::hint::black_box(&ids);
        }));
        theirs.push(time(&mut || {
            for m in &refs {
                std::hint::black_box(Id::hash(m));
            }
        }));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    let lanes = if ferry_repo::id::sha256_lanes::interleaved() {
        "interleaved with SHA-NI"
    } else {
        "no SHA-NI here: one at a time"
    };
    println!("SHA-256 of 1 GiB in 1 MiB messages (median of 5, CPU time):");
    println!("  Id::hash_each, {BATCH} at a time ({lanes})");
    println!("    {ours:.3} s   {:.2} GiB/s", 1.0 / ours);
    println!("  Id::hash (the sha2 crate), one at a time");
    println!("    {theirs:.3} s   {:.2} GiB/s", 1.0 / theirs);
    println!("  hash_each / hash throughput: {:.2}x", theirs / ours);
}
