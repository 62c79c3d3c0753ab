//! Content-defined chunking with restic's parameters (not built yet: this is the contract).

use std::io::{self, Read};

pub const MIN_SIZE: usize = 512 * 1024;
pub const MAX_SIZE: usize = 8 * 1024 * 1024;

/// An irreducible polynomial of degree 53 over GF(2), as stored (hex) in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pol(pub u64);

/// Splits a stream into content-defined chunks.
pub struct Chunker<R> {
    reader: R,
    pol: Pol,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, pol: Pol) -> Self {
        Self { reader, pol }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let _ = (&mut self.reader, self.pol);
        Err(io::Error::other("chunker not built yet"))
    }
}
