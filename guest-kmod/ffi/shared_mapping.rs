// SPDX-License-Identifier: GPL-2.0

//! The cacheable mapping of the shared-memory BAR: `memremap(MEMREMAP_WB)`,
//! because `pci::Bar` maps uncached and every ring access would then be a
//! bus transaction. It implements the channel's memory-access trait and
//! copies straight between the ring and a user buffer.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use kernel::{bindings, pci, prelude::*};

use super::user_buf::UserBuf;
use super::vm_area::MmapArea;
use crate::ivc_abi::{OutOfBounds, SharedMemory};

/// A write-back cacheable kernel mapping of a PCI BAR holding shared memory.
///
/// The memory is shared with another VM (and the host) and is therefore never
/// exposed as a Rust reference: every access goes through volatile/atomic
/// operations with bounds checks, via the [`SharedMemory`] trait.
pub(crate) struct SharedMapping {
    base: NonNull<u8>,
    len: usize,
    /// Bus (= guest physical) address of the BAR, for user mappings.
    phys: bindings::phys_addr_t,
}

// SAFETY: the mapping is plain memory usable from any CPU; all accesses are
// atomic or volatile.
unsafe impl Send for SharedMapping {}
// SAFETY: as above.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Maps BAR `bar` of `pdev` write-back cacheable. The caller keeps the
    /// device bound (and the BAR region requested) while the mapping exists.
    pub(crate) fn map_bar(pdev: &pci::Device<kernel::device::Bound>, bar: u32) -> Result<Self> {
        let start = pdev.resource_start(bar)?;
        let len = usize::try_from(pdev.resource_len(bar)?)?;
        if len == 0 {
            return Err(ENODEV);
        }
        // SAFETY: `[start, start+len)` is the BAR's bus address range, claimed
        // by the caller; `memremap` validates it and returns null on failure.
        let p = unsafe {
            bindings::memremap(start, len, bindings::MEMREMAP_WB as kernel::ffi::c_ulong)
        };
        let base = NonNull::new(p.cast::<u8>()).ok_or(ENOMEM)?;
        Ok(Self {
            base,
            len,
            phys: start,
        })
    }

    fn check(
        &self,
        off: usize,
        len: usize,
        align: usize,
    ) -> core::result::Result<*mut u8, OutOfBounds> {
        let end = off.checked_add(len).ok_or(OutOfBounds)?;
        if end > self.len || off % align != 0 {
            return Err(OutOfBounds);
        }
        // SAFETY: `off + len <= self.len`, inside the mapping.
        Ok(unsafe { self.base.as_ptr().add(off) })
    }

    fn word(&self, off: usize) -> core::result::Result<&AtomicU32, OutOfBounds> {
        let p = self.check(off, 4, 4)?;
        // SAFETY: `p` is 4-aligned and inside the mapping, which lives as long
        // as `self`; an `AtomicU32` may alias memory others write concurrently.
        Ok(unsafe { AtomicU32::from_ptr(p.cast::<u32>()) })
    }

    /// Copies bytes `from..from + n` of `user` into the mapping at `off`:
    /// a `write(2)` straight into the ring, without a bounce buffer.
    /// `EFAULT` for a bad user address (the mapping may then hold part of
    /// the bytes, which the channel does not publish); `EIO` for a range
    /// outside the mapping (the caller's layout validation prevents that).
    pub(crate) fn copy_from_user(
        &self,
        off: usize,
        user: &UserBuf,
        from: usize,
        n: usize,
    ) -> Result {
        let dst = self.check(off, n, 1).map_err(|_| EIO)?;
        let src = user.at(from, n)?;
        // SAFETY: `dst..dst + n` is inside the mapping (checked) and never a
        // Rust reference; `copy_from_user` is the kernel's user copy, opaque
        // to the compiler, so a peer racing with it yields torn bytes, never
        // undefined behaviour, and a bad user address only a short copy.
        let left = unsafe { bindings::copy_from_user(dst.cast(), src.as_const_ptr(), n) };
        if left != 0 {
            return Err(EFAULT);
        }
        Ok(())
    }

    /// Copies `n` bytes of the mapping at `off` into bytes `to..to + n` of
    /// `user`: a `read(2)` straight out of the ring. Errors as for
    /// [`copy_from_user`](Self::copy_from_user).
    pub(crate) fn copy_to_user(&self, off: usize, user: &UserBuf, to: usize, n: usize) -> Result {
        let src = self.check(off, n, 1).map_err(|_| EIO)?;
        let dst = user.at(to, n)?;
        // SAFETY: as in `copy_from_user`, with the roles swapped.
        let left = unsafe { bindings::copy_to_user(dst.as_mut_ptr(), src.cast_const().cast(), n) };
        if left != 0 {
            return Err(EFAULT);
        }
        Ok(())
    }
}

impl SharedMapping {
    /// Maps the whole region into a process (`mmap(2)` of the device): the
    /// area must start at offset 0 and may not reach past the region.
    pub(crate) fn map_to_user(&self, area: &MmapArea<'_>) -> Result {
        if area.pgoff() != 0 || area.len() == 0 || area.len() > self.len {
            return Err(EINVAL);
        }
        area.prepare_shared_io()?;
        area.map_physical(self.phys, self.len)
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: `base` came from `memremap` and is unmapped once.
        unsafe { bindings::memunmap(self.base.as_ptr().cast()) };
    }
}

impl SharedMemory for SharedMapping {
    fn len(&self) -> usize {
        self.len
    }

    fn load_u32_acquire(&self, off: usize) -> core::result::Result<u32, OutOfBounds> {
        Ok(u32::from_le(self.word(off)?.load(Ordering::Acquire)))
    }

    fn load_u32_relaxed(&self, off: usize) -> core::result::Result<u32, OutOfBounds> {
        Ok(u32::from_le(self.word(off)?.load(Ordering::Relaxed)))
    }

    fn store_u32_release(&self, off: usize, v: u32) -> core::result::Result<(), OutOfBounds> {
        self.word(off)?.store(v.to_le(), Ordering::Release);
        Ok(())
    }

    fn store_u32_relaxed(&self, off: usize, v: u32) -> core::result::Result<(), OutOfBounds> {
        self.word(off)?.store(v.to_le(), Ordering::Relaxed);
        Ok(())
    }

    fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> core::result::Result<core::result::Result<u32, u32>, OutOfBounds> {
        Ok(self
            .word(off)?
            .compare_exchange(
                current.to_le(),
                new.to_le(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .map(u32::from_le)
            .map_err(u32::from_le))
    }

    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> core::result::Result<(), OutOfBounds> {
        let p = self.check(off, dst.len(), 1)?;
        // SAFETY: the source range is inside the mapping (checked) and `dst`
        // is ours. The peer may write the source concurrently: the copy is the
        // C `memcpy`, opaque to the compiler, so a race yields torn
        // data (which the protocol tolerates), never undefined behaviour.
        unsafe { bindings::memcpy(dst.as_mut_ptr().cast(), p.cast(), dst.len()) };
        Ok(())
    }

    fn write_bytes(&self, off: usize, src: &[u8]) -> core::result::Result<(), OutOfBounds> {
        let p = self.check(off, src.len(), 1)?;
        // SAFETY: the destination range is inside the mapping (checked); see
        // `read_bytes` for why a racing peer cannot cause undefined behaviour.
        unsafe { bindings::memcpy(p.cast(), src.as_ptr().cast(), src.len()) };
        Ok(())
    }

    fn fence_seqcst(&self) {
        core::sync::atomic::fence(Ordering::SeqCst);
    }
}
