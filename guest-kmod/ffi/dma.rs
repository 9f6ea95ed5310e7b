// SPDX-License-Identifier: GPL-2.0

//! Device-visible memory (`dma_alloc_coherent`) for ivc-pio's descriptor
//! mode, and the 64-bit DMA mask it needs.

use core::sync::atomic::Ordering;

use kernel::{pci, prelude::*};

/// Tells the DMA layer the device can reach all of memory (ivc-vmm reads
/// guest RAM at any address). Call once in probe, before [`DmaBuffer::alloc`].
pub(crate) fn set_dma_mask_64(pdev: &pci::Device<kernel::device::Core<'_>>) -> Result {
    use kernel::dma::Device as _;
    // SAFETY: called from probe before any DMA allocation for this device,
    // so nothing uses the mask concurrently.
    unsafe { pdev.dma_set_mask_and_coherent(kernel::dma::DmaMask::new::<64>()) }
}

/// A buffer the device reads and writes (`dma_alloc_coherent`: physically
/// contiguous, and its bus address is what the device is given).
///
/// The device touches the buffer only while the CPU performs an access the
/// driver issues inside [`DmaBuffer::lend`] (ivc-pio's descriptor `GO`: the
/// VMM copies while the vCPU is stopped in that exit). `lend` takes
/// `&mut self`, so no slice from [`DmaBuffer::bytes`] or
/// [`DmaBuffer::bytes_mut`] is alive while the device may access the
/// memory, which is the condition `Coherent`'s accessors make unsafe.
pub(crate) struct DmaBuffer(kernel::dma::Coherent<[u8]>);

impl DmaBuffer {
    /// `len` zeroed bytes of device-visible memory.
    pub(crate) fn alloc(pdev: &pci::Device<kernel::device::Core<'_>>, len: usize) -> Result<Self> {
        let dev: &kernel::device::Device<kernel::device::Bound> = pdev.as_ref();
        Ok(Self(kernel::dma::Coherent::<u8>::zeroed_slice(
            dev, len, GFP_KERNEL,
        )?))
    }

    /// The address the device knows the buffer by.
    pub(crate) fn dma_address(&self) -> u64 {
        self.0.dma_address()
    }

    /// The buffer's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the device accesses the buffer only inside `lend`, which
        // needs `&mut self` and so cannot overlap this borrow (type doc).
        unsafe { self.0.as_ref() }
    }

    /// The buffer's bytes, to fill.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` also excludes any other slice.
        unsafe { self.0.as_mut() }
    }

    /// Runs `f`, during which the device may read and write the buffer.
    pub(crate) fn lend<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // The CPU's stores into the buffer are issued before the access in
        // `f`, and its loads after it (the port access is an opaque call
        // too, and a VM exit serialises the vCPU).
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        let r = f();
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        r
    }
}
