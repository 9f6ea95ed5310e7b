//! [`AtomicMem`]: a [`SharedMemory`] over raw memory, for host tools, the
//! bare-metal test guest and tests.
//!
//! Every access is a relaxed/acquire/release atomic on an aligned 32-bit
//! word, so racing with the peer (another thread, process or VM) is not a
//! data race in the Rust memory model and the type is usable under Miri and
//! in `no_std`. Byte copies are done word by word; partial words at the ends
//! of a copy are merged with `fetch_and`/`fetch_or` so that bytes outside the
//! requested range are never written.
//!
//! This file's only unsafe code is the pointer-to-atomic conversion in
//! `AtomicMem::word`; the rest is safe. It uses only
//! `super::shm` from its siblings.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use super::shm::{OutOfBounds, SharedMemory};

/// Shared memory given as a pointer and a length, accessed with atomics.
///
/// `Copy`: it is a view; copies refer to the same memory.
#[derive(Debug, Clone, Copy)]
pub struct AtomicMem<'a> {
    base: NonNull<AtomicU32>,
    /// Length in bytes, a multiple of 4.
    len: usize,
    _memory: PhantomData<&'a [AtomicU32]>,
}

// SAFETY: an `AtomicMem` is equivalent to a `&'a [AtomicU32]`, which is Send
// and Sync; all accesses through it are atomic.
unsafe impl Send for AtomicMem<'_> {}
// SAFETY: see `Send` above.
unsafe impl Sync for AtomicMem<'_> {}

impl<'a> AtomicMem<'a> {
    /// Wraps `len` bytes at `ptr`.
    ///
    /// Returns `None` if `ptr` is null or not 4-byte aligned. A `len` that is
    /// not a multiple of 4 is rounded down.
    ///
    /// # Safety
    ///
    /// For all of `'a`, the `len` bytes at `ptr` must stay mapped, readable
    /// and writable, and must be accessed by this process only through
    /// atomic operations (other processes or VMs may write them in any way:
    /// that is what the channel defends against). Typical sources: an
    /// `mmap(MAP_SHARED)` of the ivshmem memory file kept mapped for `'a`,
    /// or a guest's identity-mapped BAR2 (mapped write-back).
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Option<Self> {
        if (ptr as usize) & 3 != 0 {
            return None;
        }
        let base = NonNull::new(ptr.cast::<AtomicU32>())?;
        Some(Self {
            base,
            len: len & !3,
            _memory: PhantomData,
        })
    }

    /// Wraps a slice of atomics (safe: the borrow guarantees validity).
    pub fn from_words(words: &'a [AtomicU32]) -> Self {
        Self {
            // A slice pointer is never null and is aligned for its type.
            base: NonNull::from(words).cast::<AtomicU32>(),
            // Cannot overflow: a slice never spans more than isize::MAX bytes.
            len: words.len().wrapping_mul(4),
            _memory: PhantomData,
        }
    }

    /// The atomic word with index `idx` (byte offset `idx * 4`), or `None`
    /// past the end.
    fn word(&self, idx: usize) -> Option<&'a AtomicU32> {
        if idx >= self.len / 4 {
            return None;
        }
        // SAFETY: `idx < len / 4`, so the word lies inside the `len` bytes
        // that the constructor's contract (or the borrowed slice) keeps valid
        // and aligned for `'a`; the memory is only accessed atomically.
        Some(unsafe { &*self.base.as_ptr().add(idx) })
    }

    fn word_at(&self, off: usize) -> Result<&'a AtomicU32, OutOfBounds> {
        if off & 3 != 0 {
            return Err(OutOfBounds);
        }
        self.word(off / 4).ok_or(OutOfBounds)
    }

    fn check_range(&self, off: usize, n: usize) -> Result<(), OutOfBounds> {
        match off.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(OutOfBounds),
        }
    }
}

impl SharedMemory for AtomicMem<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn load_u32_acquire(&self, off: usize) -> Result<u32, OutOfBounds> {
        Ok(u32::from_le(self.word_at(off)?.load(Ordering::Acquire)))
    }

    fn load_u32_relaxed(&self, off: usize) -> Result<u32, OutOfBounds> {
        Ok(u32::from_le(self.word_at(off)?.load(Ordering::Relaxed)))
    }

    fn store_u32_release(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.word_at(off)?.store(v.to_le(), Ordering::Release);
        Ok(())
    }

    fn store_u32_relaxed(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.word_at(off)?.store(v.to_le(), Ordering::Relaxed);
        Ok(())
    }

    fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds> {
        let r = self.word_at(off)?.compare_exchange(
            current.to_le(),
            new.to_le(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        Ok(r.map(u32::from_le).map_err(u32::from_le))
    }

    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check_range(off, dst.len())?;
        let mut pos = off;
        for chunk in dst.chunks_mut(4) {
            // Fast path: a whole aligned word.
            if pos & 3 == 0 && chunk.len() == 4 {
                let w = self.word(pos / 4).ok_or(OutOfBounds)?;
                chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
                pos = pos.wrapping_add(4);
                continue;
            }
            // Unaligned: byte by byte (only at the ends of a copy that does
            // not start aligned, so the cost is bounded by the length).
            for b in chunk.iter_mut() {
                let w = self.word(pos / 4).ok_or(OutOfBounds)?;
                let bytes = w.load(Ordering::Relaxed).to_ne_bytes();
                *b = bytes.get(pos % 4).copied().unwrap_or(0);
                pos = pos.wrapping_add(1);
            }
        }
        Ok(())
    }

    fn write_bytes(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.check_range(off, src.len())?;
        let mut pos = off;
        let mut rest = src;
        while !rest.is_empty() {
            let w = self.word(pos / 4).ok_or(OutOfBounds)?;
            let lane = pos % 4;
            let take = core::cmp::min(4usize.wrapping_sub(lane), rest.len());
            let (now, later) = rest.split_at(take);
            if take == 4 {
                let mut b = [0u8; 4];
                b.copy_from_slice(now);
                w.store(u32::from_ne_bytes(b), Ordering::Relaxed);
            } else {
                // Merge the partial word without touching the other lanes.
                let mut val = [0u8; 4];
                let mut mask = [0u8; 4];
                // (`enumerate` would carry an overflow check.)
                for (k, byte) in (lane..4).zip(now) {
                    if let (Some(v), Some(m)) = (val.get_mut(k), mask.get_mut(k)) {
                        *v = *byte;
                        *m = 0xff;
                    }
                }
                let mask = u32::from_ne_bytes(mask);
                w.fetch_and(!mask, Ordering::Relaxed);
                w.fetch_or(u32::from_ne_bytes(val), Ordering::Relaxed);
            }
            pos = pos.wrapping_add(take);
            rest = later;
        }
        Ok(())
    }

    fn fence_seqcst(&self) {
        fence(Ordering::SeqCst);
    }
}
