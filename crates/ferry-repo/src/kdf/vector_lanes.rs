//! ROMix of several scrypt lanes side by side in vector registers.
//!
//! Salsa20/8 is latency-bound: each step of a quarter round waits for the one before, so one
//! lane in one vector register gains little over the scalar core (1.1× with SSE2, 1.29× with
//! AVX-512's rotates, measured on one lane of N=2^15, r=8). Independent lanes side by side
//! fill the vector's width with the same instructions: two lanes in 256-bit registers took
//! 98 ms with AVX2 and 73 ms with AVX-512VL against 136 ms for two scalar lanes.
//!
//! The layout is the classic diagonal one: a 64-byte block's 16 words become four rows
//! A = (x0, x5, x10, x15), B = (x4, x9, x14, x3), C = (x8, x13, x2, x7), D = (x12, x1, x6, x11),
//! so the column round is four row operations and the row round the same after rotating the
//! words within B, C and D. A row of `W` words holds that row for `W / 4` lanes. The code is
//! plain Rust over arrays, compiled per instruction set with `#[target_feature]`; the compiler
//! turns the array operations into vector instructions.

/// How many lanes the CPU mixes at once, and with which instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Simd {
    /// Four lanes in 512-bit registers (two in 256-bit, one in 128-bit), rotates in one
    /// instruction.
    Avx512,
    /// Two lanes in 256-bit registers.
    Avx2,
    /// One lane at a time, the scalar core.
    None,
}

impl Simd {
    pub(super) fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Simd::Avx2;
            }
        }
        Simd::None
    }

    /// The most lanes mixed at once.
    pub(super) fn width(self) -> usize {
        match self {
            Simd::Avx512 => 4,
            Simd::Avx2 => 2,
            Simd::None => 1,
        }
    }

    /// Whether this CPU has these instructions.
    #[cfg(test)]
    pub(super) fn available(self) -> bool {
        let have = Simd::detect();
        self == Simd::None || have == self || (self == Simd::Avx2 && have == Simd::Avx512)
    }
}

/// ROMix of `lanes` (at most [`Simd::width`] of them) with `v` as their tables (at least
/// `lanes.len()` lane tables of N lanes' words). `simd` must be what the CPU has.
pub(super) fn ro_mix_lanes(simd: Simd, lanes: &mut [&mut [u8]], v: &mut [u32], n: usize) {
    debug_assert!(lanes.len() <= simd.width());
    #[cfg(target_arch = "x86_64")]
    match (simd, lanes.len()) {
        // SAFETY: `simd` is what `Simd::detect` found, so the CPU has these instructions.
        (Simd::Avx512, 4) => return unsafe { avx512::<16>(lanes, v, n) },
        (Simd::Avx512, 2) => return unsafe { avx512::<8>(lanes, v, n) },
        (Simd::Avx512, 1) => return unsafe { avx512::<4>(lanes, v, n) },
        (Simd::Avx2, 2) => return unsafe { avx2::<8>(lanes, v, n) },
        _ => {}
    }
    for lane in lanes.iter_mut() {
        super::ro_mix(lane, v, n);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
fn avx512<const W: usize>(lanes: &mut [&mut [u8]], v: &mut [u32], n: usize) {
    ro_mix_rows::<W>(lanes, v, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2<const W: usize>(lanes: &mut [&mut [u8]], v: &mut [u32], n: usize) {
    ro_mix_rows::<W>(lanes, v, n)
}

/// Word `i` of a block goes to position `TO_ROWS[i]` of its four rows (A, B, C, D, 4 words each).
const TO_ROWS: [usize; 16] = [0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3];

type Row<const W: usize> = [u32; W];

#[inline(always)]
fn add<const W: usize>(a: Row<W>, b: Row<W>) -> Row<W> {
    std::array::from_fn(|i| a[i].wrapping_add(b[i]))
}

#[inline(always)]
fn xor_rotated<const W: usize>(x: &mut Row<W>, s: Row<W>, k: u32) {
    for i in 0..W {
        x[i] ^= s[i].rotate_left(k);
    }
}

/// Rotates the words within each lane's four by `k` places (word i takes word i + k).
#[inline(always)]
fn turn<const W: usize>(a: Row<W>, k: usize) -> Row<W> {
    std::array::from_fn(|i| a[(i & !3) | ((i + k) & 3)])
}

/// Salsa20/8 core on one block of each lane, in rows.
#[inline(always)]
fn salsa20_8_rows<const W: usize>(s: &mut [Row<W>; 4]) {
    let [mut a, mut b, mut c, mut d] = *s;
    for _ in 0..4 {
        // Columns: (x0, x4, x8, x12), (x5, x9, x13, x1), (x10, x14, x2, x6), (x15, x3, x7, x11).
        xor_rotated(&mut b, add(a, d), 7);
        xor_rotated(&mut c, add(b, a), 9);
        xor_rotated(&mut d, add(c, b), 13);
        xor_rotated(&mut a, add(d, c), 18);
        // Rows: the same operations once B, C, D are turned to line up (x0, x1, x2, x3), ...
        let mut b2 = turn(d, 1);
        let mut c2 = turn(c, 2);
        let mut d2 = turn(b, 3);
        xor_rotated(&mut b2, add(a, d2), 7);
        xor_rotated(&mut c2, add(b2, a), 9);
        xor_rotated(&mut d2, add(c2, b2), 13);
        xor_rotated(&mut a, add(d2, c2), 18);
        d = turn(b2, 3);
        c = turn(c2, 2);
        b = turn(d2, 1);
    }
    for (o, x) in s.iter_mut().zip([a, b, c, d]) {
        *o = add(*o, x);
    }
}

/// BlockMix over all lanes at once (input and output: 4 rows per block).
#[inline(always)]
fn block_mix_rows<const W: usize>(input: &[Row<W>], output: &mut [Row<W>]) {
    let blocks = input.len() / 4;
    let mut x: [Row<W>; 4] = std::array::from_fn(|k| input[input.len() - 4 + k]);
    for (i, block) in input.chunks_exact(4).enumerate() {
        for (row, b) in x.iter_mut().zip(block) {
            for (w, b) in row.iter_mut().zip(b) {
                *w ^= b;
            }
        }
        salsa20_8_rows(&mut x);
        let at = if i % 2 == 0 {
            i / 2
        } else {
            blocks / 2 + i / 2
        };
        output[at * 4..at * 4 + 4].copy_from_slice(&x);
    }
}

#[inline(always)]
fn ro_mix_rows<const W: usize>(lanes: &mut [&mut [u8]], v: &mut [u32], n: usize) {
    use zeroize::Zeroize;
    let count = W / 4;
    assert_eq!(lanes.len(), count, "one lane per four words of a row");
    let lane_words = lanes[0].len() / 4;
    let rows = lane_words / 4;
    // Lane l's table: N copies of its rows, 4 words each, kept apart from the other lanes'
    // so that the second loop's reads at random indices fetch only that lane's words.
    let mut tables: Vec<&mut [[u32; 4]]> = v[..count * n * lane_words]
        .chunks_exact_mut(n * lane_words)
        .map(|t| t.as_chunks_mut::<4>().0)
        .collect();
    let mut x: Vec<Row<W>> = vec![[0u32; W]; rows];
    for (l, lane) in lanes.iter().enumerate() {
        for (i, word) in lane.chunks_exact(4).enumerate() {
            let at = (i / 16) * 16 + TO_ROWS[i % 16];
            x[at / 4][l * 4 + at % 4] = u32::from_le_bytes(word.try_into().expect("4 bytes"));
        }
    }
    let mut y: Vec<Row<W>> = vec![[0u32; W]; rows];
    for i in 0..n {
        for (l, table) in tables.iter_mut().enumerate() {
            for (t, row) in table[i * rows..(i + 1) * rows].iter_mut().zip(&x) {
                t.copy_from_slice(&row[l * 4..l * 4 + 4]);
            }
        }
        block_mix_rows(&x, &mut y);
        std::mem::swap(&mut x, &mut y);
    }
    for _ in 0..n {
        // Integerify: word 0 of each lane's last block, which is the first word of row A.
        let js: [usize; 4] = std::array::from_fn(|l| {
            if l < count {
                x[rows - 4][l * 4] as usize & (n - 1)
            } else {
                0
            }
        });
        for (l, table) in tables.iter().enumerate() {
            for (row, t) in x.iter_mut().zip(&table[js[l] * rows..(js[l] + 1) * rows]) {
                for (w, t) in row[l * 4..l * 4 + 4].iter_mut().zip(t) {
                    *w ^= t;
                }
            }
        }
        block_mix_rows(&x, &mut y);
        std::mem::swap(&mut x, &mut y);
    }
    for (l, lane) in lanes.iter_mut().enumerate() {
        for (i, word) in lane.chunks_exact_mut(4).enumerate() {
            let at = (i / 16) * 16 + TO_ROWS[i % 16];
            word.copy_from_slice(&x[at / 4][l * 4 + at % 4].to_le_bytes());
        }
    }
    x.zeroize();
    y.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set this CPU has, at every width it mixes, gives each lane what the
    /// scalar ROMix gives it.
    #[test]
    fn lanes_side_by_side_mix_as_the_scalar_core_does() {
        let (n, r) = (64usize, 4usize);
        let lane_bytes = 128 * r;
        let levels: Vec<Simd> = [Simd::Avx512, Simd::Avx2, Simd::None]
            .into_iter()
            .filter(|s| s.available())
            .collect();
        eprintln!("instruction sets checked: {levels:?}");
        for simd in levels {
            let mut count = 1;
            while count <= simd.width() {
                let original: Vec<Vec<u8>> = (0..count)
                    .map(|l| {
                        (0..lane_bytes)
                            .map(|i| (i * 31 + l * 97 + i / 7) as u8)
                            .collect()
                    })
                    .collect();
                let mut want = original.clone();
                let mut v = vec![0u32; n * lane_bytes / 4];
                for lane in want.iter_mut() {
                    crate::kdf::ro_mix(lane, &mut v, n);
                }
                let mut got = original.clone();
                let mut lanes: Vec<&mut [u8]> = got.iter_mut().map(|l| &mut l[..]).collect();
                let mut v = vec![0u32; count * n * lane_bytes / 4];
                ro_mix_lanes(simd, &mut lanes, &mut v, n);
                assert!(got == want, "{simd:?} with {count} lanes differs");
                count *= 2;
            }
        }
    }
}
