//! [`AtomicMem`]: a [`SharedMemory`] over raw memory, for host tools, the
//! bare-metal test guest and tests.
//!
//! Index and flag accesses are relaxed/acquire/release atomics on aligned
//! 32-bit words, so racing with the peer (another thread, process or VM) is
//! not a data race in the Rust memory model and the type is usable under
//! Miri and in `no_std`.
//!
//! Byte copies (the ring data) are where the time goes, so on x86-64 they
//! are one `rep movsb` in inline assembly (see [`bulk`]): it runs at
//! `memcpy` speed on CPUs with fast string moves (ERMS/FSRM), and assembly
//! is opaque to the compiler, so a peer writing the same bytes at the same
//! time tears them (which the protocol tolerates) without being a data race
//! in the abstract machine. Elsewhere, and under Miri, copies go word by
//! word through relaxed atomics; partial words at the ends of a copy are
//! merged with `fetch_and`/`fetch_or` so that bytes outside the requested
//! range are never written.
//!
//! Unsafe code: the pointer-to-atomic conversion in `AtomicMem::word`, the
//! pointer arithmetic of `AtomicMem::byte_ptr` and the assembly in [`bulk`].
//! It uses only `super::shm` from its siblings.

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
    #[inline]
    fn word(&self, idx: usize) -> Option<&'a AtomicU32> {
        if idx >= self.len / 4 {
            return None;
        }
        // SAFETY: `idx < len / 4`, so the word lies inside the `len` bytes
        // that the constructor's contract (or the borrowed slice) keeps valid
        // and aligned for `'a`; the memory is only accessed atomically.
        Some(unsafe { &*self.base.as_ptr().add(idx) })
    }

    #[inline]
    fn word_at(&self, off: usize) -> Result<&'a AtomicU32, OutOfBounds> {
        if off & 3 != 0 {
            return Err(OutOfBounds);
        }
        self.word(off / 4).ok_or(OutOfBounds)
    }

    #[inline]
    fn check_range(&self, off: usize, n: usize) -> Result<(), OutOfBounds> {
        match off.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(OutOfBounds),
        }
    }

    /// Pointer to the byte at `off`, which must be `<= len` (checked by the
    /// caller with [`check_range`](Self::check_range)).
    #[cfg_attr(not(all(target_arch = "x86_64", not(miri))), allow(dead_code))]
    #[inline]
    fn byte_ptr(&self, off: usize) -> *mut u8 {
        // `wrapping_add` keeps this safe; with `off <= len` the result stays
        // inside (or one past) the memory the constructor's contract covers.
        self.base.as_ptr().cast::<u8>().wrapping_add(off)
    }
}

/// Bulk copies between shared memory and private buffers: one `rep movsb`.
///
/// Why assembly and not `copy_nonoverlapping`: the peer may write the
/// source (or read the destination) while we copy, and a plain Rust copy
/// racing with that would be undefined behaviour. An `asm!` block is opaque:
/// the compiler assumes only that it reads and writes memory, and the CPU
/// performs the racing accesses with its usual (defined) semantics.
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod bulk {
    use core::arch::asm;

    /// Copies `len` bytes from `src` to `dst`.
    ///
    /// # Safety
    ///
    /// `src..src + len` must be readable and `dst..dst + len` writable for
    /// the duration of the call, and the two ranges must not overlap.
    pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
        // SAFETY: the caller guarantees both ranges are valid for `len`
        // bytes and disjoint. `rep movsb` reads exactly `rsi..rsi + rcx` and
        // writes exactly `rdi..rdi + rcx`, forward (Rust guarantees DF is
        // clear on entry to an asm block), touches no stack and no flags.
        unsafe {
            asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rsi") src => _,
                inout("rdi") dst => _,
                options(nostack, preserves_flags),
            );
        }
    }
}

impl SharedMemory for AtomicMem<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn load_u32_acquire(&self, off: usize) -> Result<u32, OutOfBounds> {
        Ok(u32::from_le(self.word_at(off)?.load(Ordering::Acquire)))
    }

    #[inline]
    fn load_u32_relaxed(&self, off: usize) -> Result<u32, OutOfBounds> {
        Ok(u32::from_le(self.word_at(off)?.load(Ordering::Relaxed)))
    }

    #[inline]
    fn store_u32_release(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.word_at(off)?.store(v.to_le(), Ordering::Release);
        Ok(())
    }

    #[inline]
    fn store_u32_relaxed(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.word_at(off)?.store(v.to_le(), Ordering::Relaxed);
        Ok(())
    }

    #[inline]
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

    #[inline]
    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            self.check_range(off, dst.len())?;
            // SAFETY: `off + dst.len() <= len` (checked above), so the source
            // lies in the shared memory the constructor's contract keeps
            // mapped for `'a`; `dst` is a private buffer we borrow
            // exclusively, so the ranges are disjoint.
            unsafe { bulk::copy(dst.as_mut_ptr(), self.byte_ptr(off), dst.len()) };
            Ok(())
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        self.read_words(off, dst)
    }

    #[inline]
    fn write_bytes(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            self.check_range(off, src.len())?;
            // SAFETY: as in `read_bytes`, with the roles swapped: the
            // destination is inside the shared memory, `src` is ours.
            unsafe { bulk::copy(self.byte_ptr(off), src.as_ptr(), src.len()) };
            Ok(())
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        self.write_words(off, src)
    }

    #[inline]
    fn fence_seqcst(&self) {
        fence(Ordering::SeqCst);
    }
}

/// The portable copies: relaxed atomics word by word (also what Miri
/// checks, and what the x86-64 path must behave like).
#[cfg_attr(all(target_arch = "x86_64", not(miri), not(test)), allow(dead_code))]
impl AtomicMem<'_> {
    fn read_words(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
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

    fn write_words(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
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
}

// Test code may panic: a panic is how a test fails.
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use std::{vec, vec::Vec};

    const WORDS: usize = 12;

    fn region(seed: u8) -> [AtomicU32; WORDS] {
        core::array::from_fn(|i| {
            let b = (i as u8).wrapping_mul(4).wrapping_add(seed);
            AtomicU32::new(u32::from_ne_bytes([b, b ^ 0x55, b ^ 0xaa, b ^ 0xff]))
        })
    }

    fn bytes(words: &[AtomicU32]) -> Vec<u8> {
        words
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes())
            .collect()
    }

    /// The fast copies (`rep movsb` on x86-64) and the portable word copies
    /// agree on every offset and length, including the bytes around the
    /// range, which neither may touch.
    #[test]
    fn bulk_and_word_copies_agree_everywhere() {
        let len = WORDS * 4;
        let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(7) ^ 0x3c).collect();
        for off in 0..=len {
            for n in 0..=len - off {
                let (a, b) = (region(1), region(1));
                let (ma, mb) = (AtomicMem::from_words(&a), AtomicMem::from_words(&b));
                ma.write_bytes(off, &src[..n]).unwrap();
                mb.write_words(off, &src[..n]).unwrap();
                assert_eq!(bytes(&a), bytes(&b), "write off={off} n={n}");
                let mut expect = bytes(&region(1));
                expect[off..off + n].copy_from_slice(&src[..n]);
                assert_eq!(bytes(&a), expect, "write off={off} n={n}");

                let (mut da, mut db) = (vec![0xeeu8; n + 2], vec![0xeeu8; n + 2]);
                ma.read_bytes(off, &mut da[1..=n]).unwrap();
                mb.read_words(off, &mut db[1..=n]).unwrap();
                assert_eq!(da, db, "read off={off} n={n}");
                assert_eq!(&da[1..=n], &expect[off..off + n]);
                assert_eq!((da[0], da[n + 1]), (0xee, 0xee));
            }
        }
    }

    #[test]
    fn copies_out_of_bounds_touch_nothing() {
        let a = region(9);
        let m = AtomicMem::from_words(&a);
        let before = bytes(&a);
        let len = WORDS * 4;
        assert_eq!(m.write_bytes(len - 3, &[0; 4]), Err(OutOfBounds));
        assert_eq!(m.write_bytes(usize::MAX, &[0; 2]), Err(OutOfBounds));
        let mut buf = [0u8; 4];
        assert_eq!(m.read_bytes(len - 3, &mut buf), Err(OutOfBounds));
        assert_eq!(buf, [0; 4]);
        assert_eq!(bytes(&a), before);
    }
}
