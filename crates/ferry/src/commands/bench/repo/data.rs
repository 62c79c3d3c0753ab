//! The data shapes `ferry bench repo` measures, and their generators: deterministic data of
//! a requested size, about half of it compressible.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One kind of data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::commands::bench) enum Shape {
    /// Many 4–64 KiB files in directories of 500.
    Small,
    /// Half of the bytes in small files, half in 4 large files.
    Mixed,
    /// The whole size in one file.
    Large,
    /// One file (a disk image) of data runs between all-zero holes of several MiB.
    Sparse,
}

impl Shape {
    pub(super) const ALL: [Shape; 4] = [Shape::Small, Shape::Mixed, Shape::Large, Shape::Sparse];

    pub(super) fn name(self) -> &'static str {
        match self {
            Shape::Small => "small",
            Shape::Mixed => "mixed",
            Shape::Large => "large",
            Shape::Sparse => "sparse",
        }
    }
}

/// The shapes to measure, in the order given (`--shapes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::commands::bench) struct Shapes(pub(super) Vec<Shape>);

/// Parses `--shapes`: comma-separated names (`small`, `mixed`, `large`, `sparse`, or `all`),
/// each measured once, in the order given.
pub(in crate::commands::bench) fn parse_shapes(text: &str) -> Result<Shapes, String> {
    let mut shapes = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let found: &[Shape] = match word.to_ascii_lowercase().as_str() {
            "all" => &Shape::ALL,
            name => match Shape::ALL.iter().find(|s| s.name() == name) {
                Some(s) => std::slice::from_ref(s),
                None => {
                    return Err(format!(
                        "unknown shape `{word}`: use small, mixed, large, sparse (comma-separated) or all"
                    ));
                }
            },
        };
        for s in found {
            if !shapes.contains(s) {
                shapes.push(*s);
            }
        }
    }
    if shapes.is_empty() {
        return Err("no shape given: use small, mixed, large, sparse (comma-separated)".into());
    }
    Ok(Shapes(shapes))
}

/// What a generator wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DataSet {
    pub(super) files: u64,
    /// Sum of the file lengths (holes included).
    pub(super) bytes: u64,
    /// Bytes written as data (the file lengths without the holes).
    pub(super) data_bytes: u64,
}

/// What the shape's data set holds, for the heading of its table.
pub(super) fn describe(shape: Shape, set: &DataSet) -> String {
    use ferry_text::human_bytes;
    match shape {
        Shape::Small => format!(
            "{} files of 4-64 KiB, 500 to a directory, every other compressible",
            set.files
        ),
        Shape::Mixed => format!(
            "{} files: half of the bytes in 4-64 KiB files, half in 4 large files; half compressible",
            set.files
        ),
        Shape::Large => {
            "one file, alternately 4 MiB compressible and 4 MiB incompressible".to_string()
        }
        Shape::Sparse => {
            let q = sparse_quantum(set.bytes);
            format!(
                "one {} disk image: {} of data in runs of {} to {} between all-zero holes of the same lengths; tar -S",
                human_bytes(set.bytes),
                human_bytes(set.data_bytes),
                human_bytes(q),
                human_bytes(4 * q)
            )
        }
    }
}

/// Fast deterministic pseudo-random bytes.
struct XorShift(u64);
impl XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
    fn next(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

const WORDS: &[&str] = &[
    "volume", "restore", "snapshot", "ferry", "node", "claim", "backup", "data", "pod", "bind",
    "cluster", "storage", "class", "topology", "mover", "velero", "chunk", "pack", "index",
];

/// Random (incompressible) or text-like (compressible) content; never all zero.
fn content(rng: &mut XorShift, len: usize, compressible: bool) -> Vec<u8> {
    let mut v = vec![0u8; len];
    if compressible {
        let mut pos = 0;
        while pos < len {
            let w = WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes();
            let n = w.len().min(len - pos);
            v[pos..pos + n].copy_from_slice(&w[..n]);
            pos += n;
            if pos < len {
                v[pos] = if rng.next().is_multiple_of(9) {
                    b'\n'
                } else {
                    b' '
                };
                pos += 1;
            }
        }
    } else {
        rng.fill(&mut v);
    }
    v
}

/// Generates the shape's data set of `size` bytes below `root`.
pub(super) fn generate(shape: Shape, root: &Path, size: u64) -> std::io::Result<DataSet> {
    let mut rng = XorShift(0x5eed_f0e5_1234_5678);
    std::fs::create_dir_all(root)?;
    match shape {
        Shape::Small => {
            let (files, bytes) = small_files(&mut rng, root, size)?;
            Ok(DataSet {
                files,
                bytes,
                data_bytes: bytes,
            })
        }
        Shape::Mixed => mixed(&mut rng, root, size),
        Shape::Large => {
            std::fs::create_dir_all(root.join("large"))?;
            large_file(&mut rng, &root.join("large/big.bin"), size, None)?;
            Ok(DataSet {
                files: 1,
                bytes: size,
                data_bytes: size,
            })
        }
        Shape::Sparse => {
            std::fs::create_dir_all(root.join("images"))?;
            let data_bytes = sparse_file(&mut rng, &root.join("images/disk.img"), size)?;
            Ok(DataSet {
                files: 1,
                bytes: size,
                data_bytes,
            })
        }
    }
}

/// The one-file data set whose restore measures a tool's fixed start-up cost.
pub(super) fn generate_tiny(root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    std::fs::write(
        root.join("hello.txt"),
        content(&mut XorShift(7), 4096, true),
    )
}

/// Files of 4–64 KiB, 500 to a directory, every other compressible, until `budget` bytes
/// (the last file is cut to fit). Returns (files, bytes).
fn small_files(rng: &mut XorShift, root: &Path, budget: u64) -> std::io::Result<(u64, u64)> {
    let (mut files, mut total) = (0u64, 0u64);
    while total < budget {
        let dir = root.join(format!("small/d{:03}", files / 500));
        if files.is_multiple_of(500) {
            std::fs::create_dir_all(&dir)?;
        }
        let len = (4096 + rng.next() % (60 * 1024)).min(budget - total) as usize;
        std::fs::write(
            dir.join(format!("f{files:06}")),
            content(rng, len, files.is_multiple_of(2)),
        )?;
        total += len as u64;
        files += 1;
    }
    Ok((files, total))
}

/// Half of the bytes in small files, half in 4 large files, the even ones compressible.
fn mixed(rng: &mut XorShift, root: &Path, size: u64) -> std::io::Result<DataSet> {
    let (mut files, mut total) = small_files(rng, root, size / 2)?;
    std::fs::create_dir_all(root.join("large"))?;
    let large_count = 4u64;
    let rest = size - total;
    for j in 0..large_count {
        // The last file takes the division's remainder: the set is exactly `size` bytes.
        let len = if j + 1 == large_count {
            rest - rest / large_count * (large_count - 1)
        } else {
            rest / large_count
        };
        large_file(
            rng,
            &root.join(format!("large/big{j}.bin")),
            len,
            Some(j.is_multiple_of(2)),
        )?;
        total += len;
        files += 1;
    }
    Ok(DataSet {
        files,
        bytes: total,
        data_bytes: total,
    })
}

/// One file of `len` bytes written in 4 MiB pieces: all compressible, all random, or (None)
/// alternating.
fn large_file(
    rng: &mut XorShift,
    path: &Path,
    len: u64,
    compressible: Option<bool>,
) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (mut left, mut piece) = (len, 0u64);
    while left > 0 {
        let n = left.min(4 << 20) as usize;
        let c = compressible.unwrap_or(piece.is_multiple_of(2));
        f.write_all(&content(rng, n, c))?;
        left -= n as u64;
        piece += 1;
    }
    f.flush()
}

/// The granularity of the sparse image's runs: a 64th of the size, between 64 KiB and
/// 2 MiB, in whole 64 KiB (so every hole covers whole file-system blocks).
pub(super) fn sparse_quantum(size: u64) -> u64 {
    (size / 64).clamp(64 << 10, 2 << 20) / (64 << 10) * (64 << 10)
}

/// A disk-image-like file of `len` bytes: data runs and all-zero holes alternate (data
/// first), each 1–4 quanta long (2–8 MiB from 128 MiB up); the holes are never written.
/// Returns the bytes of data written.
fn sparse_file(rng: &mut XorShift, path: &Path, len: u64) -> std::io::Result<u64> {
    let f = std::fs::File::create(path)?;
    let quantum = sparse_quantum(len);
    let (mut pos, mut data, mut is_data) = (0u64, 0u64, true);
    while pos < len {
        let run = ((1 + rng.next() % 4) * quantum).min(len - pos);
        if is_data {
            let mut at = pos;
            while at < pos + run {
                let n = (pos + run - at).min(4 << 20) as usize;
                f.write_all_at(&content(rng, n, (at / (4 << 20)).is_multiple_of(2)), at)?;
                at += n as u64;
            }
            data += run;
        }
        pos += run;
        is_data = !is_data;
    }
    f.set_len(len)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn files(root: &Path) -> Vec<(std::path::PathBuf, u64)> {
        let mut out = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    dirs.push(e.path());
                } else {
                    out.push((e.path(), m.len()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn shapes_parse_in_order_without_duplicates() {
        assert_eq!(
            parse_shapes("small,mixed,large,sparse").unwrap().0,
            Shape::ALL.to_vec()
        );
        assert_eq!(
            parse_shapes(" sparse , Small,sparse").unwrap().0,
            vec![Shape::Sparse, Shape::Small]
        );
        assert_eq!(
            parse_shapes("large,all").unwrap().0,
            vec![Shape::Large, Shape::Small, Shape::Mixed, Shape::Sparse]
        );
        let e = parse_shapes("small,huge").unwrap_err();
        assert!(e.contains("`huge`"), "{e}");
        assert!(parse_shapes(" , ").is_err());
    }

    #[test]
    fn small_files_are_4_to_64_kib_500_per_directory_and_exactly_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let size = 3 << 20;
        let set = generate(Shape::Small, dir.path(), size).unwrap();
        let fs = files(dir.path());
        assert_eq!(set.bytes, size);
        assert_eq!(set.data_bytes, size);
        assert_eq!(set.files, fs.len() as u64);
        assert_eq!(fs.iter().map(|f| f.1).sum::<u64>(), size);
        // All but the last (cut to fit) are 4–64 KiB.
        let mut lens: Vec<u64> = fs.iter().map(|f| f.1).collect();
        lens.sort();
        assert!(lens[1..].iter().all(|&l| (4096..64 * 1024).contains(&l)));
        assert!(fs.len() > 50);
        assert!(
            fs.iter()
                .all(|(p, _)| p.parent().unwrap().parent().unwrap() == dir.path().join("small"))
        );
    }

    #[test]
    fn mixed_is_half_small_files_half_four_large_ones() {
        let dir = tempfile::tempdir().unwrap();
        let size = (4 << 20) + 3;
        let set = generate(Shape::Mixed, dir.path(), size).unwrap();
        let fs = files(dir.path());
        assert_eq!(set.bytes, size);
        assert_eq!(fs.iter().map(|f| f.1).sum::<u64>(), size);
        let large: Vec<_> = fs
            .iter()
            .filter(|(p, _)| p.starts_with(dir.path().join("large")))
            .collect();
        assert_eq!(large.len(), 4);
        let large_bytes: u64 = large.iter().map(|f| f.1).sum();
        assert_eq!(large_bytes, size - size / 2);
        assert_eq!(set.files, fs.len() as u64);
    }

    #[test]
    fn large_is_one_file_of_the_whole_size() {
        let dir = tempfile::tempdir().unwrap();
        let size = (9 << 20) + 5;
        let set = generate(Shape::Large, dir.path(), size).unwrap();
        let fs = files(dir.path());
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].1, size);
        assert_eq!(
            set,
            DataSet {
                files: 1,
                bytes: size,
                data_bytes: size
            }
        );
    }

    #[test]
    fn sparse_has_holes_of_whole_quanta_between_data_runs() {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 << 20;
        let set = generate(Shape::Sparse, dir.path(), size).unwrap();
        let fs = files(dir.path());
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].1, size);
        assert_eq!(set.bytes, size);
        // Roughly half data, half holes.
        assert!(
            set.data_bytes > size / 5 && set.data_bytes < size * 4 / 5,
            "{set:?}"
        );
        let quantum = sparse_quantum(size);
        assert_eq!(quantum, 1 << 20);
        // The holes are holes: only the data runs take blocks.
        let allocated = std::fs::metadata(&fs[0].0).unwrap().blocks() * 512;
        assert!(
            allocated < set.data_bytes + (1 << 20),
            "{allocated} allocated"
        );
        // Read back: runs of whole quanta, data first, alternating with zero runs.
        let bytes = std::fs::read(&fs[0].0).unwrap();
        let zero_at = |q: usize| {
            bytes[q * quantum as usize..(q + 1) * quantum as usize]
                .iter()
                .all(|&b| b == 0)
        };
        let quanta = (size / quantum) as usize;
        let kinds: Vec<bool> = (0..quanta).map(zero_at).collect();
        assert!(!kinds[0], "starts with data");
        let zero_quanta = kinds.iter().filter(|&&z| z).count() as u64;
        assert_eq!(zero_quanta * quantum, size - set.data_bytes);
        let runs = 1 + kinds.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(runs >= 8, "{runs} runs");
    }

    #[test]
    fn sparse_runs_are_several_mib_at_benchmark_sizes() {
        assert_eq!(sparse_quantum(1 << 30), 2 << 20);
        assert_eq!(sparse_quantum(64 << 20), 1 << 20);
        assert_eq!(sparse_quantum(1 << 20), 64 << 10);
        assert_eq!(sparse_quantum(100 << 20) % (64 << 10), 0);
    }

    #[test]
    fn generators_are_deterministic() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(Shape::Mixed, a.path(), 1 << 20).unwrap();
        generate(Shape::Mixed, b.path(), 1 << 20).unwrap();
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert_eq!(fa.len(), fb.len());
        for ((pa, _), (pb, _)) in fa.iter().zip(&fb) {
            assert_eq!(std::fs::read(pa).unwrap(), std::fs::read(pb).unwrap());
        }
    }
}
