//! [`Mapping`]: memory mapped with `mmap(2)` (the device's ring, or an
//! anonymous shared region in tests), accessed through
//! [`ivc_abi::AtomicMem`] for every word and unmapped on drop.
//!
//! Bulk copies (the ring's data) are this file's own on x86-64: `rep movsq`
//! for the whole 8-byte words, then `rep movsb` for the rest. On hardware
//! with fast string moves that is as fast as `AtomicMem`'s single `rep
//! movsb`; under QEMU TCG, which emulates a string move one element at a
//! time, it takes an eighth of the steps (a 64 KiB round trip through the
//! mapped ring was 1.7x slower than through `read`/`write`, whose kernel
//! copies use 8-byte moves).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use ivc_abi::{AtomicMem, OutOfBounds, SharedMemory};

/// A `MAP_SHARED` read/write mapping that lives as long as any clone of
/// this handle (clones share it, so an attach can be retried with the same
/// memory).
///
/// The memory is shared with an untrusted peer, so it is never exposed as a
/// Rust reference: [`SharedMemory`] is the only way in.
#[derive(Debug, Clone)]
pub struct Mapping {
    region: Arc<Region>,
}

#[derive(Debug)]
struct Region {
    /// The view of the whole mapping. `'static` is a promise this type
    /// keeps: the view is private and never outlives `self`, which unmaps
    /// only in `Drop`.
    mem: AtomicMem<'static>,
    /// Start address and length as passed to `mmap`, for `munmap`.
    addr: usize,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared, readable and
    /// writable (never executable).
    pub fn map_fd(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh mapping chosen by the kernel (no fixed address),
        // so no existing memory of ours is replaced; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        Self::adopt(p, len)
    }

    /// An anonymous shared mapping of `len` bytes, zeroed: stands in for
    /// the device's ring in tests (one process, or parent and child).
    pub fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: as in `map_fd`, without a file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        Self::adopt(p, len)
    }

    fn adopt(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `p..p + len` is a fresh read/write mapping that stays
        // mapped until `Drop` (the view is private to `self`), and this
        // process accesses it only through the view's atomics.
        match unsafe { AtomicMem::new(p.cast(), len) } {
            Some(mem) => Ok(Self {
                region: Arc::new(Region {
                    mem,
                    addr: p as usize,
                    len,
                }),
            }),
            None => {
                // A page-aligned, non-null address is 4-aligned: cannot
                // happen, but do not leak the mapping if it did.
                // SAFETY: the mapping made just above, unmapped once.
                unsafe { libc::munmap(p, len) };
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            }
        }
    }
}

impl Region {
    /// The address of bytes `off..off + n`, if they lie inside.
    #[cfg_attr(not(all(target_arch = "x86_64", not(miri))), allow(dead_code))]
    fn at(&self, off: usize, n: usize) -> Result<*mut u8, OutOfBounds> {
        match off.checked_add(n) {
            Some(end) if end <= self.mem.len() => Ok(self.addr.wrapping_add(off) as *mut u8),
            _ => Err(OutOfBounds),
        }
    }
}

/// Copies between the mapping and private buffers (see the module docs).
/// Assembly, not `copy_nonoverlapping`: the peer may write the same bytes
/// meanwhile, which must tear (the protocol tolerates that), not be a data
/// race in the abstract machine; an `asm!` block is opaque to the compiler.
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod bulk {
    use core::arch::asm;

    /// Copies `len` bytes from `src` to `dst`.
    ///
    /// # Safety
    ///
    /// `src..src + len` readable and `dst..dst + len` writable for the
    /// call, not overlapping.
    pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
        let (words, rest) = (len / 8, len % 8);
        // SAFETY: per the contract. `rep movsq` moves exactly `words * 8`
        // bytes forward (DF is clear on entry to an asm block) and leaves
        // `rsi`/`rdi` just past them; `rep movsb` moves the remaining
        // `rest` bytes. Nothing outside the two ranges is touched, no stack,
        // no flags.
        unsafe {
            asm!(
                "rep movsq",
                "mov rcx, {rest}",
                "rep movsb",
                rest = in(reg) rest,
                inout("rcx") words => _,
                inout("rsi") src => _,
                inout("rdi") dst => _,
                options(nostack, preserves_flags),
            );
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `adopt`; the only view of it is
        // `self.mem`, which goes with `self`.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

impl SharedMemory for Mapping {
    #[inline]
    fn len(&self) -> usize {
        self.region.mem.len()
    }
    #[inline]
    fn load_u32_acquire(&self, off: usize) -> Result<u32, OutOfBounds> {
        self.region.mem.load_u32_acquire(off)
    }
    #[inline]
    fn load_u32_relaxed(&self, off: usize) -> Result<u32, OutOfBounds> {
        self.region.mem.load_u32_relaxed(off)
    }
    #[inline]
    fn store_u32_release(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.region.mem.store_u32_release(off, v)
    }
    #[inline]
    fn store_u32_relaxed(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.region.mem.store_u32_relaxed(off, v)
    }
    #[inline]
    fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds> {
        self.region.mem.compare_exchange_u32(off, current, new)
    }
    #[inline]
    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            let src = self.region.at(off, dst.len())?;
            // SAFETY: `src..src + len` is inside the mapping (checked by
            // `at`), which lives as long as `self`; `dst` is our own buffer,
            // so the ranges do not overlap.
            unsafe { bulk::copy(dst.as_mut_ptr(), src, dst.len()) };
            Ok(())
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        self.region.mem.read_bytes(off, dst)
    }
    #[inline]
    fn write_bytes(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            let dst = self.region.at(off, src.len())?;
            // SAFETY: as in `read_bytes`, with the roles swapped.
            unsafe { bulk::copy(dst, src.as_ptr(), src.len()) };
            Ok(())
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        self.region.mem.write_bytes(off, src)
    }
    #[inline]
    fn fence_seqcst(&self) {
        self.region.mem.fence_seqcst()
    }
}
