// SPDX-License-Identifier: GPL-2.0

//! `mmap(2)` of device memory: the `vm_area_struct` a file's `mmap` hook
//! is handed, checked and filled with `vm_iomap_memory`, and the inode
//! whose mappings are zapped when the device goes away.
//!
//! `kernel::mm::virt::VmaNew` covers the flags; what it lacks is the page
//! offset of the mapping and a way to map a physical range (it only
//! inserts `struct page`s, and BAR memory has none).

use core::ptr::NonNull;

use kernel::{
    bindings,
    error::to_result,
    mm::virt::{flags, VmaNew},
    prelude::*,
};

/// A mapping being created by `mmap(2)` on one of our files.
///
/// # Invariants
///
/// `vma` is undergoing its initial setup in the `mmap` file operation for
/// the lifetime `'a` (the caller holds the mmap write lock).
pub(crate) struct MmapArea<'a> {
    vma: &'a VmaNew,
}

impl<'a> MmapArea<'a> {
    /// # Safety
    ///
    /// `vma` is the area the `mmap` file operation was called with, valid
    /// and being set up for all of `'a`.
    pub(crate) unsafe fn from_raw(vma: *mut bindings::vm_area_struct) -> Self {
        // SAFETY: per the contract, the area is in its initial setup.
        let vma = unsafe { VmaNew::from_raw(vma) };
        Self { vma }
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.vma.end().saturating_sub(self.vma.start())
    }

    /// Offset into the file, in pages (`mmap`'s `offset / PAGE_SIZE`).
    pub(crate) fn pgoff(&self) -> usize {
        // SAFETY: by the type invariant the caller holds the mmap write
        // lock and nobody else sees the area yet: reading a field races
        // with nothing.
        // (`unsigned long` is `usize` in the kernel's Rust.)
        unsafe { (*self.vma.as_ptr()).vm_pgoff }
    }

    /// Checks what a mapping of shared device memory must be and marks it
    /// so: `MAP_SHARED` (a private copy of memory another VM writes makes
    /// no sense, `EINVAL`), never executable (`EPERM` for `PROT_EXEC`, and
    /// `mprotect` cannot add it later), an I/O mapping that is neither
    /// copied into a child at `fork`, expanded by `mremap` nor dumped.
    pub(crate) fn prepare_shared_io(&self) -> Result {
        if self.vma.flags() & flags::SHARED == 0 {
            return Err(EINVAL);
        }
        self.vma.try_clear_mayexec().map_err(|_| EPERM)?;
        self.vma.set_io();
        self.vma.set_dontcopy();
        self.vma.set_dontexpand();
        self.vma.set_dontdump();
        Ok(())
    }

    /// Maps the physical range `phys..phys + len` (device memory without
    /// `struct page`s, page aligned) at the start of the area, with the
    /// area's protection (write-back for a shared mapping, which matches
    /// the kernel's own `memremap(MEMREMAP_WB)` of the same memory).
    /// `EINVAL` if the area reaches past the range (`vm_iomap_memory`
    /// checks offset and size).
    pub(crate) fn map_physical(&self, phys: bindings::phys_addr_t, len: usize) -> Result {
        let len = kernel::ffi::c_ulong::try_from(len).map_err(|_| EINVAL)?;
        // SAFETY: the area is being set up under the mmap write lock (type
        // invariant); `vm_iomap_memory` validates the page offset and size
        // against `len` and inserts PFNs of the caller's device range, which
        // stays reserved for the device while the file is open (the caller
        // zaps the mappings with [`InodeMappings`] before it lets go).
        to_result(unsafe { bindings::vm_iomap_memory(self.vma.as_ptr(), phys, len) })
    }
}

/// A counted reference to the inode of an open device file, to remove every
/// user mapping of the device (`unmap_mapping_range`) when it goes away
/// while a process still has it mapped: later accesses fault (`SIGBUS`)
/// instead of reaching memory the device no longer owns.
pub(crate) struct InodeMappings {
    inode: NonNull<bindings::inode>,
}

// SAFETY: an inode reference may be used and dropped on any thread.
unsafe impl Send for InodeMappings {}
// SAFETY: `zap` only calls a function that does its own locking.
unsafe impl Sync for InodeMappings {}

impl InodeMappings {
    /// # Safety
    ///
    /// `inode` is the inode of a file that is open for the duration of the
    /// call.
    pub(crate) unsafe fn new(inode: *mut bindings::inode) -> Option<Self> {
        let inode = NonNull::new(inode)?;
        // SAFETY: the inode is live (the file is open); `ihold` takes a
        // reference that `Drop` gives back.
        unsafe { bindings::ihold(inode.as_ptr()) };
        Some(Self { inode })
    }

    /// Removes every user mapping of the file's pages.
    pub(crate) fn zap(&self) {
        // SAFETY: we hold a reference, so the inode and its `i_mapping`
        // are live; `unmap_mapping_range` takes the mapping's own locks.
        // Offset 0, length 0 means the whole file; 1: private COW copies
        // too (there are none: `MAP_PRIVATE` is refused).
        unsafe { bindings::unmap_mapping_range((*self.inode.as_ptr()).i_mapping, 0, 0, 1) };
    }
}

impl Drop for InodeMappings {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `new`, given back once.
        unsafe { bindings::iput(self.inode.as_ptr()) };
    }
}
