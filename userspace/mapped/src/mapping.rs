//! [`Mapping`]: memory mapped with `mmap(2)` (the device's ring, or an
//! anonymous shared region in tests), accessed only through
//! [`ivc_abi::AtomicMem`] and unmapped on drop.

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
        self.region.mem.read_bytes(off, dst)
    }
    #[inline]
    fn write_bytes(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.region.mem.write_bytes(off, src)
    }
    #[inline]
    fn fence_seqcst(&self) {
        self.region.mem.fence_seqcst()
    }
}
