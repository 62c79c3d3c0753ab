//! AES-256-CTR throughput: `cargo bench -p ferry-repo --bench aes` (a plain binary, no
//! harness). Encrypts 1 GiB as 1 MiB messages (a restore's blobs are about that size), each
//! with its own key schedule and counter as a sealed blob has, with ferry's keystream
//! (`crypto::aes256_ctr`: VAES, sixteen blocks in flight, where the CPU has it) and with the
//! `aes` and `ctr` crates (AES-NI), which ferry used before and still uses on CPUs without
//! VAES. Both must give the same bytes; then each runs five times and the medians of the
//! thread's CPU time are printed, with the ratio. Restore decrypts every byte it reads,
//! backup encrypts every byte it writes.

mod common;
use common::{Bytes, median, thread_cpu};

use aes::cipher::{KeyIvInit, StreamCipher, generic_array::GenericArray};

const MESSAGE: usize = 1 << 20;
const TOTAL: usize = 1 << 30;

fn crates(key: &[u8; 32], iv: &[u8; 16], buf: &mut [u8]) {
    ctr::Ctr128BE::<aes::Aes256>::new(GenericArray::from_slice(key), GenericArray::from_slice(iv))
        .apply_keystream(buf);
}

fn main() {
    let mut bytes = Bytes::new();
    let mut message = bytes.vec(MESSAGE);
    let keys: Vec<([u8; 32], [u8; 16])> = (0..TOTAL / MESSAGE)
        .map(|_| (bytes.array(), bytes.array()))
        .collect();
    for (key, iv) in &keys[..8] {
        let mut a = message.clone();
        let mut b = message.clone();
        ferry_repo::crypto::aes256_ctr(key, iv, &mut a);
        crates(key, iv, &mut b);
        assert!(a == b, "ferry's keystream differs from the crates'");
    }
    let mut time = |f: fn(&[u8; 32], &[u8; 16], &mut [u8])| {
        let started = thread_cpu();
        for (key, iv) in &keys {
            f(key, iv, &mut message);
        }
        std::hint::black_box(&message);
        thread_cpu() - started
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        ours.push(time(ferry_repo::crypto::aes256_ctr));
        theirs.push(time(crates));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("AES-256-CTR of 1 GiB in 1 MiB messages (median of 5, CPU time):");
    println!(
        "  ferry (crypto::aes256_ctr)   {ours:.3} s   {:.2} GiB/s",
        1.0 / ours
    );
    println!(
        "  aes + ctr crates             {theirs:.3} s   {:.2} GiB/s",
        1.0 / theirs
    );
    println!("  ferry / crates throughput    {:.2}x", theirs / ours);
}
