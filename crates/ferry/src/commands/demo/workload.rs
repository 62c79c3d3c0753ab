//! The sample stateful workload's data: a deterministic plan of volumes and files (a mix of
//! sizes, about half of the bytes compressible) and a fast writer for it. The same seed always
//! gives the same bytes, so a run can be reproduced and verified.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::verify::HashTree;

/// One file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePlan {
    /// Relative to the volume root, `/`-separated.
    pub path: String,
    pub size: u64,
    pub seed: u64,
    /// Text-like bytes that compress well, or random bytes that don't.
    pub compressible: bool,
}

/// One volume of the workload: the PVC a StatefulSet pod would claim.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumePlan {
    /// The PVC name, as a StatefulSet names it: `<claim>-<statefulset>-<ordinal>`.
    pub pvc: String,
    /// The pod that uses it.
    pub pod: String,
    pub files: Vec<FilePlan>,
}

impl VolumePlan {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The name of the sample StatefulSet.
pub const STATEFULSET: &str = "ledger";

/// Plans `volumes` volumes holding `total` bytes together. Volumes differ in size (within
/// about ±40% of the mean) so that restores take different times, as in life.
pub fn plan_workload(volumes: usize, total: u64, seed: u64) -> Vec<VolumePlan> {
    let mut rng = WyRand::new(seed ^ 0x5eed_f00d);
    let weights: Vec<f64> = (0..volumes).map(|_| 0.6 + 0.8 * rng.unit()).collect();
    let weight_sum: f64 = weights.iter().sum();
    let mut remaining = total;
    (0..volumes)
        .map(|ordinal| {
            let bytes = if ordinal + 1 == volumes {
                remaining
            } else {
                ((total as f64 * weights[ordinal] / weight_sum) as u64).min(remaining)
            };
            remaining -= bytes;
            VolumePlan {
                pvc: format!("data-{STATEFULSET}-{ordinal}"),
                pod: format!("{STATEFULSET}-{ordinal}"),
                files: plan_files(bytes, rng.next()),
            }
        })
        .collect()
}

/// A database-like layout: a large base file, an index, write-ahead-log segments, logs and
/// many small files. About half of the bytes are compressible.
fn plan_files(bytes: u64, seed: u64) -> Vec<FilePlan> {
    let mut rng = WyRand::new(seed);
    let mut files = Vec::new();
    let part = |percent: u64| bytes * percent / 100;
    let mut push = |path: String, size: u64, compressible: bool, rng: &mut WyRand| {
        if size > 0 {
            files.push(FilePlan {
                path,
                size,
                seed: rng.next(),
                compressible,
            });
        }
    };
    push("db/base.dat".into(), part(35), false, &mut rng);
    push("db/index.dat".into(), part(15), true, &mut rng);
    for segment in 0..4 {
        push(
            format!("db/wal/{segment:08}"),
            part(5),
            segment % 2 == 0,
            &mut rng,
        );
    }
    for log in 0..3 {
        push(format!("logs/app-{log}.log"), part(20) / 3, true, &mut rng);
    }
    // Small files: 4 KiB to 64 KiB each, until the rest of the volume is used.
    let planned: u64 = files.iter().map(|f| f.size).sum();
    let mut small_budget = bytes - planned;
    let mut index = 0;
    while small_budget > 0 {
        let size = (4096 + rng.next() % (60 * 1024)).min(small_budget);
        let compressible = index % 2 == 0;
        let path = format!("static/{:02}/asset-{index:05}.bin", index % 16);
        files.push(FilePlan {
            path,
            size,
            seed: rng.next(),
            compressible,
        });
        small_budget -= size;
        index += 1;
    }
    files
}

/// Writes a volume's files under `root` and returns their hash tree, computed while writing
/// so the source is read only once.
pub fn write_volume(root: &Path, plan: &VolumePlan) -> io::Result<HashTree> {
    let mut tree = HashTree::default();
    let mut buffer = vec![0u8; 1 << 20];
    for file in &plan.files {
        let path = root.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut out = io::BufWriter::with_capacity(1 << 20, fs::File::create(&path)?);
        let mut hasher = Sha256::new();
        let mut generator = ByteGenerator::new(file.seed, file.compressible);
        let mut left = file.size;
        while left > 0 {
            let n = left.min(buffer.len() as u64) as usize;
            generator.fill(&mut buffer[..n]);
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n])?;
            left -= n as u64;
        }
        out.flush()?;
        tree.insert(file.path.clone(), file.size, hasher.finalize().into());
    }
    Ok(tree)
}

/// wyrand: a tiny, fast, seedable PRNG; plenty for test data (not for secrets).
#[derive(Debug, Clone)]
pub struct WyRand(u64);

impl WyRand {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Words the compressible (log-like) content is made of.
const WORDS: [&str; 32] = [
    "INFO ",
    "WARN ",
    "request ",
    "id=",
    "user=",
    "path=/api/v1/items ",
    "status=200 ",
    "bytes=",
    "latency_ms=",
    "commit ",
    "txn ",
    "ledger ",
    "balance ",
    "account ",
    "transfer ",
    "ok\n",
    "retry ",
    "shard=",
    "replica ",
    "checkpoint ",
    "2026-11-25T",
    "Z ",
    "GET ",
    "PUT ",
    "0",
    "1",
    "2",
    "3",
    "7",
    "9",
    ", ",
    "\n",
];

/// Produces a file's bytes: random, or log-like text of random words (compresses several-fold).
struct ByteGenerator {
    rng: WyRand,
    compressible: bool,
    /// Text that did not fit in the previous buffer.
    carry: Vec<u8>,
    bits: u64,
    bits_left: u32,
}

impl ByteGenerator {
    fn new(seed: u64, compressible: bool) -> Self {
        Self {
            rng: WyRand::new(seed),
            compressible,
            carry: Vec::new(),
            bits: 0,
            bits_left: 0,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        if !self.compressible {
            let mut chunks = buf.chunks_exact_mut(8);
            for chunk in &mut chunks {
                chunk.copy_from_slice(&self.rng.next().to_le_bytes());
            }
            let rest = chunks.into_remainder();
            let last = self.rng.next().to_le_bytes();
            rest.copy_from_slice(&last[..rest.len()]);
            return;
        }
        let mut pos = 0;
        let take = self.carry.len().min(buf.len());
        buf[..take].copy_from_slice(&self.carry[..take]);
        self.carry.drain(..take);
        pos += take;
        while pos < buf.len() {
            let word = self.next_word();
            let n = word.len().min(buf.len() - pos);
            buf[pos..pos + n].copy_from_slice(&word[..n]);
            pos += n;
            if n < word.len() {
                self.carry.extend_from_slice(&word[n..]);
            }
        }
    }

    /// The next random word: twelve 5-bit choices per random number.
    fn next_word(&mut self) -> &'static [u8] {
        if self.bits_left == 0 {
            self.bits = self.rng.next();
            self.bits_left = 12;
        }
        let word = WORDS[(self.bits & 31) as usize].as_bytes();
        self.bits >>= 5;
        self.bits_left -= 1;
        word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_deterministic_and_sums_to_the_total() {
        let total = 64 << 20;
        let a = plan_workload(8, total, 7);
        assert_eq!(a, plan_workload(8, total, 7));
        assert_ne!(a, plan_workload(8, total, 8));
        assert_eq!(a.iter().map(VolumePlan::bytes).sum::<u64>(), total);
        assert_eq!(a[3].pvc, "data-ledger-3");
        assert_eq!(a[3].pod, "ledger-3");
    }

    #[test]
    fn plan_mixes_file_sizes_and_compressibility() {
        let plan = plan_workload(4, 32 << 20, 1);
        let files: Vec<&FilePlan> = plan.iter().flat_map(|v| v.files.iter()).collect();
        assert!(files.iter().any(|f| f.size >= 2 << 20), "large files");
        assert!(
            files.iter().filter(|f| f.size <= 64 << 10).count() > 20,
            "small files"
        );
        let total: u64 = files.iter().map(|f| f.size).sum();
        let compressible: u64 = files
            .iter()
            .filter(|f| f.compressible)
            .map(|f| f.size)
            .sum();
        let share = compressible as f64 / total as f64;
        assert!((0.4..0.6).contains(&share), "compressible share {share}");
    }

    #[test]
    fn compressible_content_compresses_and_random_does_not() {
        let mut text = vec![0u8; 1 << 20];
        ByteGenerator::new(3, true).fill(&mut text);
        let mut random = vec![0u8; 1 << 20];
        ByteGenerator::new(3, false).fill(&mut random);
        let distinct = |data: &[u8]| {
            let mut seen = [false; 256];
            data.iter().for_each(|&b| seen[b as usize] = true);
            seen.iter().filter(|&&s| s).count()
        };
        assert!(distinct(&text) < 64, "text uses a small alphabet");
        assert_eq!(distinct(&random), 256);
    }

    #[test]
    fn generated_bytes_do_not_depend_on_buffer_boundaries() {
        let mut whole = vec![0u8; 10_000];
        ByteGenerator::new(9, true).fill(&mut whole);
        let mut pieces = vec![0u8; 10_000];
        let mut generator = ByteGenerator::new(9, true);
        for chunk in pieces.chunks_mut(333) {
            generator.fill(chunk);
        }
        assert!(whole == pieces, "the same bytes whatever the buffer size");
    }

    #[test]
    fn written_volume_matches_its_plan_and_hash_tree() {
        let dir = tempfile::tempdir().unwrap();
        let plan = &plan_workload(2, 4 << 20, 5)[0];
        let tree = write_volume(dir.path(), plan).unwrap();
        for file in &plan.files {
            let len = std::fs::metadata(dir.path().join(&file.path))
                .unwrap()
                .len();
            assert_eq!(len, file.size, "{}", file.path);
        }
        assert_eq!(HashTree::of_directory(dir.path()).unwrap(), tree);
    }
}
