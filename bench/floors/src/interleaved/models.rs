//! Lean models of ring formats, side by side in the interleaved
//! measurement: only the data path (no handshake, no wake-up flags, no
//! validation beyond what keeps a model from running off its memory), so
//! that the difference between two models is the format alone.
//!
//! * [`IndexRing`]: layout version 1 as `ivc-abi` implemented it: a byte
//!   ring, a producer index on the producer's line and a consumer index on
//!   the consumer's line; the reader polls the producer index and then
//!   fetches the data, the writer reads the consumer index only when its
//!   cached free space runs out.
//! * [`RecordRing`]: the candidate for version 2: records with an inline
//!   length word written last (release) in front of the payload, the next
//!   record's length word cleared before (the "terminator", so the reader
//!   never takes a stale word of an earlier lap for a record); the reader
//!   polls the length word, i.e. the line that carries the data. Records
//!   start 8-byte aligned (`packed`) or at a cache-line boundary
//!   (`line_aligned`: a 64-byte message then fills exactly two lines of one
//!   128-byte pair).
//!
//! Every model is a pair of sides, one per process, over memory both map;
//! `send` and `recv` move one whole message or nothing (the callers spin).

use ivc_abi::{AtomicMem, SharedMemory};

/// Where one direction's ring lives in the mapping.
#[derive(Clone, Copy, Debug)]
pub struct RingAt {
    /// The producer's control line.
    pub prod_line: usize,
    /// The consumer's control line.
    pub cons_line: usize,
    /// Data area.
    pub data: usize,
    /// Data size, a power of two.
    pub size: u32,
}

impl RingAt {
    fn mask(&self) -> u32 {
        self.size - 1
    }
}

/// Copies `src` into the ring at free-running position `pos`, in two pieces
/// at the wrap.
fn put(mem: &AtomicMem<'_>, r: &RingAt, pos: u32, src: &[u8]) -> Option<()> {
    let at = (pos & r.mask()) as usize;
    let first = src.len().min(r.size as usize - at);
    mem.write_bytes(r.data + at, &src[..first]).ok()?;
    if first < src.len() {
        mem.write_bytes(r.data, &src[first..]).ok()?;
    }
    Some(())
}

/// Copies out of the ring at free-running position `pos` (two pieces at the
/// wrap).
fn get(mem: &AtomicMem<'_>, r: &RingAt, pos: u32, dst: &mut [u8]) -> Option<()> {
    let at = (pos & r.mask()) as usize;
    let first = dst.len().min(r.size as usize - at);
    mem.read_bytes(r.data + at, &mut dst[..first]).ok()?;
    if first < dst.len() {
        mem.read_bytes(r.data, &mut dst[first..]).ok()?;
    }
    Some(())
}

/// One side's view of the version 1 ring: producer of `tx`, consumer of
/// `rx`.
#[derive(Clone, Copy, Debug)]
pub struct IndexRing {
    tx: RingAt,
    rx: RingAt,
    prod: u32,
    cons_seen: u32,
    cons: u32,
    prod_seen: u32,
}

impl IndexRing {
    /// A side writing `tx` and reading `rx` (indices start at 0: the
    /// mapping is zero-filled).
    pub fn new(tx: RingAt, rx: RingAt) -> Self {
        IndexRing {
            tx,
            rx,
            prod: 0,
            cons_seen: 0,
            cons: 0,
            prod_seen: 0,
        }
    }

    /// Writes `msg` if it fits; `false` when full (or on a memory error).
    pub fn send(&mut self, mem: &AtomicMem<'_>, msg: &[u8]) -> bool {
        let len = msg.len() as u32;
        if self.tx.size - self.prod.wrapping_sub(self.cons_seen) < len {
            // The consumer's line: read only when the cached space is short.
            match mem.load_u32_acquire(self.tx.cons_line) {
                Ok(c) => self.cons_seen = c,
                Err(_) => return false,
            }
            if self.tx.size - self.prod.wrapping_sub(self.cons_seen) < len {
                return false;
            }
        }
        if put(mem, &self.tx, self.prod, msg).is_none() {
            return false;
        }
        self.prod = self.prod.wrapping_add(len);
        mem.store_u32_release(self.tx.prod_line, self.prod).is_ok()
    }

    /// Reads a whole `buf` if that much is there; `false` otherwise.
    pub fn recv(&mut self, mem: &AtomicMem<'_>, buf: &mut [u8]) -> bool {
        let len = buf.len() as u32;
        if self.prod_seen.wrapping_sub(self.cons) < len {
            // The producer's line: the signal, on a line of its own.
            match mem.load_u32_acquire(self.rx.prod_line) {
                Ok(p) => self.prod_seen = p,
                Err(_) => return false,
            }
            if self.prod_seen.wrapping_sub(self.cons) < len {
                return false;
            }
        }
        if get(mem, &self.rx, self.cons, buf).is_none() {
            return false;
        }
        self.cons = self.cons.wrapping_add(len);
        mem.store_u32_release(self.rx.cons_line, self.cons).is_ok()
    }
}

/// Bytes of a record header (the length word and a reserved word).
pub const HEADER: u32 = 8;
/// Length-word flag of a pad record: skip the given bytes (to the ring's
/// end), the next record starts at the ring's beginning.
const PAD: u32 = 1 << 31;
/// The window of [`RecordRing::windowed`].
pub const WINDOW: u32 = 4096;

/// One side's view of the record ring (the version 2 candidate).
#[derive(Clone, Copy, Debug)]
pub struct RecordRing {
    tx: RingAt,
    rx: RingAt,
    /// Record starts are multiples of this (8 or 64).
    align: u32,
    /// Pad to the ring's end once past this many bytes of it, if the
    /// reader keeps up (`u32::MAX`: never).
    window: u32,
    /// The reader was found lagging in this lap: no padding until the
    /// ring's end.
    lagging: bool,
    prod: u32,
    cons_seen: u32,
    cons: u32,
}

impl RecordRing {
    /// Records 8-byte aligned.
    pub fn packed(tx: RingAt, rx: RingAt) -> Self {
        Self::with_align(tx, rx, 8)
    }

    /// Records start on a cache-line boundary.
    pub fn line_aligned(tx: RingAt, rx: RingAt) -> Self {
        Self::with_align(tx, rx, 64)
    }

    /// Packed records in a window of [`WINDOW`] bytes while the reader keeps
    /// up.
    pub fn windowed(tx: RingAt, rx: RingAt) -> Self {
        RecordRing {
            window: WINDOW,
            ..Self::with_align(tx, rx, 8)
        }
    }

    fn with_align(tx: RingAt, rx: RingAt, align: u32) -> Self {
        RecordRing {
            tx,
            rx,
            align,
            window: u32::MAX,
            lagging: false,
            prod: 0,
            cons_seen: 0,
            cons: 0,
        }
    }

    fn record_len(&self, payload: u32) -> u32 {
        (HEADER + payload + self.align - 1) & !(self.align - 1)
    }

    /// Free bytes from the cached consumer index.
    fn free(&self) -> u32 {
        self.tx.size - self.prod.wrapping_sub(self.cons_seen)
    }

    /// Past the window and the reader keeps up: a pad record to the ring's
    /// end, so the next record goes to its beginning. Reads the consumer's
    /// line once per lap of the window (or of the ring, if it lags).
    fn maybe_pad(&mut self, mem: &AtomicMem<'_>, rec: u32) -> Option<()> {
        let at = self.prod & self.tx.mask();
        if at < self.window {
            self.lagging = false;
            return Some(());
        }
        if self.lagging {
            return Some(());
        }
        // One look at the consumer's line per lap of the window.
        self.cons_seen = mem.load_u32_acquire(self.tx.cons_line).ok()?;
        if self.prod.wrapping_sub(self.cons_seen) > self.window {
            self.lagging = true;
            return Some(());
        }
        let pad = self.tx.size - at;
        if self.free() < pad + rec + HEADER {
            self.lagging = true;
            return Some(());
        }
        let hdr = self.tx.data + at as usize;
        mem.store_u32_relaxed(self.tx.data, 0).ok()?;
        mem.store_u32_release(hdr, PAD | pad).ok()?;
        self.prod = self.prod.wrapping_add(pad);
        Some(())
    }

    /// Writes `msg` as one record if it (and the next record's cleared
    /// length word) fits.
    pub fn send(&mut self, mem: &AtomicMem<'_>, msg: &[u8]) -> bool {
        let len = msg.len() as u32;
        if self.window != u32::MAX && self.maybe_pad(mem, self.record_len(len)).is_none() {
            return false;
        }
        let rec = self.record_len(len);
        let need = rec + HEADER;
        if self.tx.size - self.prod.wrapping_sub(self.cons_seen) < need {
            match mem.load_u32_acquire(self.tx.cons_line) {
                Ok(c) => self.cons_seen = c,
                Err(_) => return false,
            }
            if self.tx.size - self.prod.wrapping_sub(self.cons_seen) < need {
                return false;
            }
        }
        let hdr = self.tx.data + (self.prod & self.tx.mask()) as usize;
        let next = self.prod.wrapping_add(rec);
        let next_hdr = self.tx.data + (next & self.tx.mask()) as usize;
        if put(mem, &self.tx, self.prod.wrapping_add(HEADER), msg).is_none()
            || mem.store_u32_relaxed(next_hdr, 0).is_err()
            // Last, with release: the payload and the cleared next word
            // are visible before the length that announces them.
            || mem.store_u32_release(hdr, len).is_err()
        {
            return false;
        }
        self.prod = next;
        // The producer index stays on the producer's own line for the slow
        // paths (readable bytes, wake-ups); nobody reads it here, so the
        // store stays in this core's cache.
        mem.store_u32_release(self.tx.prod_line, self.prod).is_ok()
    }

    /// Reads one whole record of `buf.len()` bytes if it is there.
    pub fn recv(&mut self, mem: &AtomicMem<'_>, buf: &mut [u8]) -> bool {
        let hdr = self.rx.data + (self.cons & self.rx.mask()) as usize;
        let mut len = match mem.load_u32_acquire(hdr) {
            Ok(0) | Err(_) => return false,
            Ok(l) => l,
        };
        if len & PAD != 0 {
            // Skip to the ring's beginning, whose length word the writer
            // cleared before publishing the pad.
            self.cons = self.cons.wrapping_add(len & !PAD);
            let hdr = self.rx.data + (self.cons & self.rx.mask()) as usize;
            len = match mem.load_u32_acquire(hdr) {
                Ok(0) | Err(_) => {
                    // Publish the skip; the record comes later.
                    let _ = mem.store_u32_release(self.rx.cons_line, self.cons);
                    return false;
                }
                Ok(l) => l,
            };
        }
        if len as usize != buf.len() {
            return false;
        }
        if get(mem, &self.rx, self.cons.wrapping_add(HEADER), buf).is_none() {
            return false;
        }
        self.cons = self.cons.wrapping_add(self.record_len(len));
        mem.store_u32_release(self.rx.cons_line, self.cons).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn rings() -> (Vec<AtomicU32>, RingAt, RingAt) {
        let words: Vec<AtomicU32> = (0..(1 << 20) / 4).map(|_| AtomicU32::new(0)).collect();
        let ring = |base: usize| RingAt {
            prod_line: base,
            cons_line: base + 0x40,
            data: base + 0x1000,
            size: 256 << 10,
        };
        (words, ring(0), ring(0x8_0000))
    }

    /// Messages go through every model in order, and the windowed ring
    /// stays in its window while the reader keeps up.
    #[test]
    fn models_deliver_in_order_and_the_window_holds() {
        let (words, r0, r1) = rings();
        let mem = AtomicMem::from_words(&words);
        let mut a = RecordRing::windowed(r0, r1);
        let mut b = RecordRing::windowed(r1, r0);
        let (mut ia, mut ib) = (IndexRing::new(r1, r0), IndexRing::new(r0, r1));
        let mut buf = [0u8; 64];
        for i in 0..20_000u32 {
            let msg = [i as u8; 64];
            assert!(a.send(&mem, &msg), "send {i}");
            assert!(b.recv(&mem, &mut buf), "recv {i}");
            assert_eq!(buf, msg);
            assert!(a.prod & (a.tx.size - 1) < 2 * WINDOW, "{i}: {}", a.prod);
            let msg = [!(i as u8); 56];
            assert!(ia.send(&mem, &msg));
            assert!(ib.recv(&mem, &mut buf[..56]));
            assert_eq!(buf[..56], msg);
        }
        assert!(!b.recv(&mem, &mut buf), "nothing left");
    }
}
