//! A deterministic, seekable pseudo-random byte stream.
//!
//! Sender and receiver agree on a seed; byte `i` of the stream is a pure
//! function of `(seed, i)`, so the receiver can verify data however the
//! transfer was chunked, and report the exact offset of the first bad byte.

/// One 64-bit word of the stream (splitmix64 finaliser of `seed ^ index`).
fn word(seed: u64, index: u64) -> u64 {
    let mut z =
        (seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the stream's bytes starting at stream offset `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < buf.len() {
        let w = word(seed, pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&w[start..start + n]);
        i += n;
        pos += n as u64;
    }
}

/// Checks `buf` against the stream at `offset`; returns the stream offset of
/// the first mismatching byte, if any.
pub fn verify(seed: u64, offset: u64, buf: &[u8]) -> Option<u64> {
    let mut expected = [0u8; 4096];
    let mut done = 0usize;
    while done < buf.len() {
        let n = (buf.len() - done).min(expected.len());
        fill(seed, offset + done as u64, &mut expected[..n]);
        if let Some(k) = buf[done..done + n]
            .iter()
            .zip(&expected[..n])
            .position(|(a, b)| a != b)
        {
            return Some(offset + (done + k) as u64);
        }
        done += n;
    }
    None
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

/// FNV-1a over a byte stream, fed incrementally; printed by both sides so a
/// test can compare the checksums of what was sent and what arrived.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The checksum so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_does_not_change_the_stream() {
        let mut whole = vec![0u8; 1000];
        fill(7, 3, &mut whole);
        let mut pieces = vec![0u8; 1000];
        let mut off = 0;
        for len in [1usize, 5, 8, 13, 64, 909] {
            fill(7, 3 + off as u64, &mut pieces[off..off + len]);
            off += len;
        }
        assert_eq!(whole, pieces);
        assert_eq!(verify(7, 3, &whole), None);
    }

    #[test]
    fn verify_reports_first_bad_offset() {
        let mut buf = vec![0u8; 100];
        fill(1, 50, &mut buf);
        buf[42] ^= 1;
        assert_eq!(verify(1, 50, &buf), Some(92));
        assert!(verify(2, 50, &buf).is_some());
    }

    #[test]
    fn rng_follows_the_stream_and_its_seed() {
        let mut a = Rng::new(9);
        let words: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let mut bytes = [0u8; 32];
        fill(9, 0, &mut bytes);
        for (w, chunk) in words.iter().zip(bytes.chunks(8)) {
            assert_eq!(w.to_le_bytes(), chunk);
        }
        assert_ne!(Rng::new(10).next_u64(), words[0]);
        assert!((0..100).all(|_| a.below(3) < 3));
    }

    #[test]
    fn fnv_is_incremental() {
        let mut a = Fnv64::default();
        a.update(b"hello world");
        let mut b = Fnv64::default();
        b.update(b"hello");
        b.update(b" world");
        assert_eq!(a.value(), b.value());
        assert_ne!(a.value(), Fnv64::default().value());
    }
}
