//! zstd for blobs, with one compression and one decompression context per thread: creating
//! a context per blob (what `zstd::bulk::compress`/`decompress` do) costs more than
//! decompressing a small blob.

use std::cell::RefCell;

/// The zstd level of new blobs. restic's "auto" mode is klauspost/compress's SpeedDefault,
/// which stores about what zstd's level 2 stores: on 2026-12-05, restic 0.14's repository of
/// 512 MiB of half text, half random data took 359 MiB, ferry's 357 MiB at level 3 and 359
/// MiB at level 2 (2.2 s and 1.7 s); of Go 1.26's source tree (239 MiB), 69, 68 and 70 MiB.
/// Level 3 would spend a fifth more CPU on text to store 1–2% less than restic does.
pub const LEVEL: i32 = 2;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `data` at [`LEVEL`] with this thread's context.
pub fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(LEVEL)?);
        }
        c.as_mut().expect("just set").compress(data)
    })
}

/// Compresses `data` at [`LEVEL`] onto the end of `out` (no intermediate buffer); returns
/// the frame's length.
pub fn compress_append(data: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    let at = out.len();
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(LEVEL)?);
        }
        let mut cursor = std::io::Cursor::new(&mut *out);
        cursor.set_position(at as u64);
        c.as_mut()
            .expect("just set")
            .compress_to_buffer(data, &mut cursor)
    })
}

/// Decompresses one frame that holds at most `capacity` bytes with this thread's context.
pub fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("just set").decompress(data, capacity)
    })
}

/// Decompresses one frame into exactly `out`: an error unless the frame holds `out.len()`
/// bytes. Lets a caller decompress straight into its place in a larger buffer.
pub fn decompress_to_slice(data: &[u8], out: &mut [u8]) -> std::io::Result<()> {
    let want = out.len();
    let n = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut()
            .expect("just set")
            .decompress_to_buffer(data, out)
    })?;
    if n != want {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decompressed to {n} bytes, expected {want}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_rejects_garbage() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        let c = super::compress(&data).unwrap();
        assert!(c.len() < data.len() / 4);
        assert_eq!(super::decompress(&c, data.len()).unwrap(), data);
        // Reusing the thread's contexts gives the same result.
        assert_eq!(super::compress(&data).unwrap(), c);
        assert!(super::decompress(b"not zstd at all", 100).is_err());
        assert!(super::decompress(&c, data.len() - 1).is_err());
        // Into a slice of exactly the frame's length, and not into one byte less or more.
        let mut out = vec![1u8; data.len() + 1];
        super::decompress_to_slice(&c, &mut out[..data.len()]).unwrap();
        assert_eq!(&out[..data.len()], &data[..]);
        assert!(super::decompress_to_slice(&c, &mut out[..data.len() - 1]).is_err());
        assert!(super::decompress_to_slice(&c, &mut out).is_err());
        let mut appended = b"before".to_vec();
        assert_eq!(
            super::compress_append(&data, &mut appended).unwrap(),
            c.len()
        );
        assert_eq!(&appended[..6], b"before");
        assert_eq!(&appended[6..], &c[..]);
    }
}
