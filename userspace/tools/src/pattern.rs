//! A periodic test pattern built from [`ivc_kit::stream`] for benchmarks.
//!
//! Generating the stream byte by byte costs more than moving it through a
//! fast channel, which would make a benchmark measure the generator. So the
//! pattern is generated once, `period` bytes long, and byte `i` of a
//! transfer is byte `i % period` of it: sending is a slice, checking is a
//! memcmp. The period is odd, so a lost or repeated block of any
//! power-of-two size (a ring, a page, a chunk) shifts the data against the
//! pattern and is caught; the receiver also checks the exact byte count.

use ivc_kit::stream;

/// Default period: odd and larger than the largest packet a benchmark uses.
pub const DEFAULT_PERIOD: usize = 256 * 1024 - 1;

/// The pattern, stored twice in a row so any window of up to `period` bytes
/// starting anywhere is one contiguous slice.
pub struct Pattern {
    data: Vec<u8>,
    period: usize,
}

impl Pattern {
    /// The pattern of `seed` with period `period` (at least 1).
    pub fn new(seed: u64, period: usize) -> Self {
        let period = period.max(1);
        let mut data = vec![0u8; 2 * period];
        stream::fill(seed, 0, &mut data[..period]);
        data.copy_within(..period, period);
        Pattern { data, period }
    }

    /// The period in bytes.
    pub fn period(&self) -> usize {
        self.period
    }

    /// The `len` pattern bytes at transfer offset `offset`; `len` is cut to
    /// the period, so callers loop for longer runs.
    pub fn window(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % self.period as u64) as usize;
        &self.data[start..start + len.min(self.period)]
    }

    /// Checks `buf` against the pattern at `offset`; returns the offset of the
    /// first wrong byte.
    pub fn check(&self, offset: u64, buf: &[u8]) -> Option<u64> {
        let mut done = 0usize;
        while done < buf.len() {
            let want = self.window(offset + done as u64, buf.len() - done);
            let got = &buf[done..done + want.len()];
            if got != want {
                let k = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                return Some(offset + (done + k) as u64);
            }
            done += want.len();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_around_the_period() {
        let p = Pattern::new(3, 7);
        let mut stream_bytes = [0u8; 7];
        stream::fill(3, 0, &mut stream_bytes);
        assert_eq!(p.window(0, 7), &stream_bytes);
        assert_eq!(
            p.window(5, 4),
            &[
                stream_bytes[5],
                stream_bytes[6],
                stream_bytes[0],
                stream_bytes[1]
            ]
        );
        assert_eq!(p.window(12, 100).len(), 7);
    }

    #[test]
    fn check_finds_the_first_bad_byte_across_periods() {
        let p = Pattern::new(9, 5);
        let mut buf = Vec::new();
        let mut off = 2u64;
        while buf.len() < 23 {
            let w = p.window(off, 23 - buf.len());
            off += w.len() as u64;
            buf.extend_from_slice(w);
        }
        assert_eq!(p.check(2, &buf), None);
        buf[17] ^= 0x40;
        assert_eq!(p.check(2, &buf), Some(19));
        // A shift by a power of two does not line up with an odd period.
        assert!(p.check(2 + 4, &buf[..10]).is_some());
    }
}
