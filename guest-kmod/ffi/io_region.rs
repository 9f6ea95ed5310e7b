// SPDX-License-Identifier: GPL-2.0

//! Register BARs, MMIO or I/O ports, mapped with `pci_iomap` and accessed
//! with `ioread32`/`iowrite32` and the string forms (`rep insb`/`outsl` on
//! an I/O BAR: the ivc-pio data port, the doorbell extension).

use core::ptr::NonNull;

use kernel::{bindings, pci, prelude::*};

use super::pci_dev::raw_pci;

/// A BAR mapped with `pci_iomap`, accessed with the `ioread`/`iowrite`
/// family, which handles both I/O-port and MMIO BARs.
pub(crate) struct IoRegion {
    pdev: NonNull<bindings::pci_dev>,
    base: NonNull<core::ffi::c_void>,
    len: usize,
}

// SAFETY: `ioread`/`iowrite` may be used from any context and CPU.
unsafe impl Send for IoRegion {}
// SAFETY: as above.
unsafe impl Sync for IoRegion {}

impl IoRegion {
    /// Maps the whole of BAR `bar`. The caller keeps the device bound while
    /// the region exists.
    pub(crate) fn map(pdev: &pci::Device<kernel::device::Bound>, bar: u32) -> Result<Self> {
        let len = usize::try_from(pdev.resource_len(bar)?)?;
        if len == 0 {
            return Err(ENODEV);
        }
        let raw = raw_pci(pdev);
        // SAFETY: `raw` is a valid bound device; `pci_iomap` returns null on
        // failure.
        let p = unsafe { bindings::pci_iomap(raw, bar as i32, 0) };
        let base = NonNull::new(p).ok_or(ENOMEM)?;
        let pdev = NonNull::new(raw).ok_or(EINVAL)?;
        Ok(Self { pdev, base, len })
    }

    fn at(&self, off: usize, width: usize) -> Result<*mut core::ffi::c_void> {
        match off.checked_add(width) {
            Some(end) if end <= self.len && off % width == 0 => {
                // SAFETY: inside the mapped BAR (checked).
                Ok(unsafe { self.base.as_ptr().cast::<u8>().add(off).cast() })
            }
            _ => Err(EINVAL),
        }
    }

    /// 32-bit register read.
    pub(crate) fn read32(&self, off: usize) -> Result<u32> {
        let p = self.at(off, 4)?;
        // SAFETY: `p` is an aligned register address inside the BAR.
        Ok(unsafe { bindings::ioread32(p) })
    }

    /// 32-bit register write.
    pub(crate) fn write32(&self, off: usize, val: u32) -> Result {
        let p = self.at(off, 4)?;
        // SAFETY: `p` is an aligned register address inside the BAR.
        unsafe { bindings::iowrite32(val, p) };
        Ok(())
    }

    /// String read (`rep insb` on an I/O BAR) from the byte register at `off`
    /// into all of `buf`.
    pub(crate) fn read_rep8(&self, off: usize, buf: &mut [u8]) -> Result {
        let p = self.at(off, 1)?;
        // SAFETY: `p` is a register inside the BAR; `buf` is ours for its
        // whole length.
        unsafe {
            bindings::ioread8_rep(
                p,
                buf.as_mut_ptr().cast(),
                buf.len() as kernel::ffi::c_ulong,
            )
        };
        Ok(())
    }

    /// String write (`rep outsl` on an I/O BAR) of `buf` as little-endian
    /// dwords to the register at `off`; `buf.len()` must be a multiple of 4.
    pub(crate) fn write_rep32(&self, off: usize, buf: &[u8]) -> Result {
        let p = self.at(off, 4)?;
        if buf.len() % 4 != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `p` is an aligned register inside the BAR; `buf` is ours
        // for `len / 4` dwords (x86 reads them unaligned without fault).
        unsafe {
            bindings::iowrite32_rep(
                p,
                buf.as_ptr().cast(),
                (buf.len() / 4) as kernel::ffi::c_ulong,
            )
        };
        Ok(())
    }

    /// String write (`rep outsb` on an I/O BAR) of all of `buf` to the byte
    /// register at `off`.
    pub(crate) fn write_rep8(&self, off: usize, buf: &[u8]) -> Result {
        let p = self.at(off, 1)?;
        // SAFETY: `p` is a register inside the BAR; `buf` is ours for its
        // whole length.
        unsafe {
            bindings::iowrite8_rep(p, buf.as_ptr().cast(), buf.len() as kernel::ffi::c_ulong)
        };
        Ok(())
    }
}

impl Drop for IoRegion {
    fn drop(&mut self) {
        // SAFETY: `base` came from `pci_iomap` on this device, unmapped once.
        unsafe { bindings::pci_iounmap(self.pdev.as_ptr(), self.base.as_ptr()) };
    }
}
