//! Deterministic test input for the unit tests: a failure names its seed.

/// `len` bytes of xorshift64 from the state `seed | 1`.
pub(crate) fn xorshift(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// [`xorshift`] from a seed spread over the state, so that small seeds differ at once.
pub(crate) fn spread(seed: u64, len: usize) -> Vec<u8> {
    xorshift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), len)
}
