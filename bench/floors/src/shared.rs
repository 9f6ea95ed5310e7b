//! Anonymous `MAP_SHARED` memory that forked processes keep sharing.

use std::io;

use vm_memory::mmap::MmapRegionError;
use vm_memory::MmapRegion;

/// An anonymous shared mapping, zero-filled, page-aligned, unmapped on drop
/// (by vm-memory's `MmapRegion`). `MAP_SHARED`, not the `MAP_PRIVATE` of
/// `MmapRegion::new`: a forked child must see the parent's stores.
pub(crate) struct SharedMap(MmapRegion);

impl SharedMap {
    /// Maps `len` bytes (rounded up to pages by the kernel).
    pub(crate) fn new(len: usize) -> io::Result<Self> {
        MmapRegion::build(
            None,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
        )
        .map(SharedMap)
        .map_err(|e| match e {
            MmapRegionError::Mmap(e) => e,
            other => io::Error::other(other),
        })
    }

    /// The first byte; valid for `len` bytes while `self` lives.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.0.size()
    }
}
