//! The byte streams the transfer tests send and check: byte `i` of stream
//! `seed` is a fixed function of (seed, i), so the receiver verifies every
//! byte at its position (loss, duplication, reordering and corruption all
//! show up) and both sides print an FNV-1a checksum for the harness.

/// Byte `i` of stream `seed` (SplitMix64 over the 8-byte word holding it).
pub fn byte(seed: u64, i: u64) -> u8 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add((i >> 3).wrapping_mul(0xd1b5_4a32_d192_ed03));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> ((i & 7) * 8)) as u8
}

/// Fills `buf` with bytes `start..` of stream `seed`.
pub fn fill(seed: u64, start: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = byte(seed, start.wrapping_add(k as u64));
    }
}

/// Index (relative to `buf`) of the first byte that is not stream `seed`
/// from `start` on.
pub fn first_mismatch(seed: u64, start: u64, buf: &[u8]) -> Option<usize> {
    buf.iter()
        .enumerate()
        .find(|&(k, &b)| b != byte(seed, start.wrapping_add(k as u64)))
        .map(|(k, _)| k)
}

/// FNV-1a, 64 bit, continued over several chunks.
#[derive(Clone, Copy)]
pub struct Fnv(pub u64);

impl Fnv {
    pub const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
