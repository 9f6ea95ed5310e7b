//! The deterministic, seekable byte stream every transfer test sends and
//! checks.
//!
//! Sender and receiver agree on a seed; byte `i` of the stream is a pure
//! function of `(seed, i)`, so the receiver verifies every byte at its
//! position however the transfer was chunked (loss, duplication, reordering
//! and corruption all show up) and reports the exact offset of the first bad
//! byte. Both sides also print an FNV-1a checksum of what they sent and
//! received, which the host compares.

/// Word `index` of stream `seed`: SplitMix64's finaliser over
/// `seed ^ index * golden`, so neighbouring words and seeds are unrelated.
pub fn word(seed: u64, index: u64) -> u64 {
    let mut z =
        (seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Byte `offset` of stream `seed` (little-endian within its word).
pub fn byte(seed: u64, offset: u64) -> u8 {
    word(seed, offset / 8).to_le_bytes()[(offset % 8) as usize]
}

/// Fills `buf` with the stream's bytes starting at stream offset `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut rest = buf;
    while !rest.is_empty() {
        let w = word(seed, pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&w[start..start + n]);
        rest = tail;
        pos = pos.wrapping_add(n as u64);
    }
}

/// The index within `buf` of the first byte that is not the stream at
/// `offset`, if any.
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<usize> {
    let mut expected = [0u8; 512];
    let mut done = 0usize;
    for chunk in buf.chunks(expected.len()) {
        let want = &mut expected[..chunk.len()];
        fill(seed, offset.wrapping_add(done as u64), want);
        if let Some(k) = chunk.iter().zip(want.iter()).position(|(a, b)| a != b) {
            return Some(done + k);
        }
        done += chunk.len();
    }
    None
}

/// The stream offset of the first byte of `buf` that is not the stream at
/// `offset`, if any.
pub fn verify(seed: u64, offset: u64, buf: &[u8]) -> Option<u64> {
    first_mismatch(seed, offset, buf).map(|k| offset.wrapping_add(k as u64))
}

/// The stream's words one after another: a deterministic generator for
/// randomized tests, so that a failure reproduces from its seed.
#[derive(Clone, Debug)]
pub struct Rng {
    seed: u64,
    index: u64,
}

impl Rng {
    /// A generator for `seed`; equal seeds give equal sequences.
    pub fn new(seed: u64) -> Self {
        Self { seed, index: 0 }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let w = word(self.seed, self.index);
        self.index += 1;
        w
    }

    /// A number below `n` (`n` > 0; the slight modulo bias does not matter
    /// for choosing test cases).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// FNV-1a (64 bit) over a byte stream, fed incrementally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv64(u64);

impl Fnv64 {
    /// The checksum of nothing (the FNV offset basis).
    pub const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The checksum so far.
    pub const fn value(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_does_not_change_the_stream() {
        let mut whole = [0u8; 1000];
        fill(7, 3, &mut whole);
        let mut pieces = [0u8; 1000];
        let mut off = 0;
        for len in [1usize, 5, 8, 13, 64, 909] {
            fill(7, 3 + off as u64, &mut pieces[off..off + len]);
            off += len;
        }
        assert_eq!(whole, pieces);
        assert_eq!(verify(7, 3, &whole), None);
        for (i, &b) in whole.iter().enumerate() {
            assert_eq!(byte(7, 3 + i as u64), b);
        }
    }

    #[test]
    fn the_first_bad_byte_is_reported_where_it_is() {
        let mut buf = [0u8; 1500];
        fill(1, 50, &mut buf);
        buf[1042] ^= 1;
        assert_eq!(first_mismatch(1, 50, &buf), Some(1042));
        assert_eq!(verify(1, 50, &buf), Some(1092));
        assert!(verify(2, 50, &buf[..100]).is_some());
        assert_eq!(first_mismatch(1, 50, &buf[..1042]), None);
    }

    #[test]
    fn the_stream_is_pinned() {
        // Programs built at different times must agree on the stream: a
        // change of formula would only show when two builds meet.
        let mut b = [0u8; 8];
        fill(0, 0, &mut b);
        assert_eq!(u64::from_le_bytes(b), word(0, 0));
        assert_eq!(word(0, 0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn rng_follows_the_stream_and_its_seed() {
        let mut a = Rng::new(9);
        let mut bytes = [0u8; 32];
        fill(9, 0, &mut bytes);
        for chunk in bytes.chunks(8) {
            assert_eq!(a.next_u64().to_le_bytes(), chunk);
        }
        assert_ne!(Rng::new(10).next_u64(), Rng::new(9).next_u64());
        assert!((0..100).all(|_| a.below(3) < 3));
    }

    #[test]
    fn fnv_is_incremental() {
        let mut a = Fnv64::new();
        a.update(b"hello world");
        let mut b = Fnv64::default();
        b.update(b"hello");
        b.update(b" world");
        assert_eq!(a, b);
        assert_ne!(a.value(), Fnv64::new().value());
        // The published FNV-1a 64 test vector.
        let mut v = Fnv64::new();
        v.update(b"a");
        assert_eq!(v.value(), 0xaf63_dc4c_8601_ec8c);
    }
}
