//! `--verify`: after a batch of files is written, each one is read back and every blob's
//! SHA-256 is compared with the id the snapshot lists for that place in the file (a few
//! blobs hashed together, [`Id::hash_each`]).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::target::TargetDir;
use crate::id::Id;
use crate::id::sha256_lanes::LANES;
use crate::restore_report::DamagedEntry;

/// A restored file and the content it must have.
pub(crate) struct ToVerify {
    /// Relative to the target (absolute for a device).
    pub rel: PathBuf,
    pub display: PathBuf,
    pub device: bool,
    /// Each blob's id and plaintext length, in file order.
    pub content: Vec<(Id, u64)>,
}

/// Reads every file back on `workers` threads; returns the files that differ.
pub(crate) fn verify(
    target: Option<&TargetDir>,
    files: &[ToVerify],
    workers: usize,
) -> Vec<DamagedEntry> {
    let next = AtomicUsize::new(0);
    let bad = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1).min(files.len().max(1)) {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    if let Err(e) = verify_one(target, f, &mut buf) {
                        bad.lock().unwrap().push(e);
                    }
                }
            });
        }
    });
    let mut bad = bad.into_inner().unwrap();
    bad.sort_by(|a, b| a.path.cmp(&b.path));
    bad
}

fn verify_one(
    target: Option<&TargetDir>,
    f: &ToVerify,
    buf: &mut Vec<u8>,
) -> Result<(), DamagedEntry> {
    let fail = |blob: Option<&Id>, reason: String| DamagedEntry {
        path: f.display.display().to_string(),
        pack: None,
        blob: blob.map(|b| b.to_hex()),
        reason,
    };
    let opened = match (f.device, target) {
        (false, Some(t)) => t.open_read(&f.rel),
        _ => std::fs::File::open(&f.rel),
    };
    let mut file = opened.map_err(|e| fail(None, format!("cannot read it back: {e}")))?;
    // Read a few blobs, then hash them together (Id::hash_each).
    let mut offset = 0u64;
    let mut ids = Vec::new();
    for group in f.content.chunks(LANES) {
        let total: usize = group.iter().map(|(_, len)| *len as usize).sum();
        buf.resize(total, 0);
        let mut at = offset;
        let mut rest = &mut buf[..];
        for (id, len) in group {
            let (piece, after) = rest.split_at_mut(*len as usize);
            file.read_exact(piece).map_err(|e| {
                fail(
                    Some(id),
                    format!("cannot read {len} bytes at offset {at}: {e}"),
                )
            })?;
            rest = after;
            at += len;
        }
        let mut msgs: [&[u8]; LANES] = [&[]; LANES];
        let mut rest = &buf[..];
        for (m, (_, len)) in msgs.iter_mut().zip(group) {
            (*m, rest) = rest.split_at(*len as usize);
        }
        Id::hash_each(&msgs[..group.len()], &mut ids);
        let mut at = offset;
        for ((want, len), got) in group.iter().zip(&ids) {
            if got != want {
                return Err(fail(
                    Some(want),
                    format!("the {len} bytes at offset {at} differ from the snapshot's"),
                ));
            }
            at += len;
        }
        offset += total as u64;
    }
    // A device may be larger than the volume; a file must end where its content ends.
    if !f.device {
        let mut extra = [0u8; 1];
        match file.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => {
                return Err(fail(
                    None,
                    format!("longer than the snapshot's {offset} bytes"),
                ));
            }
            Err(e) => return Err(fail(None, format!("cannot read it back: {e}"))),
        }
    }
    Ok(())
}
