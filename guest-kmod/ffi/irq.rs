// SPDX-License-Identifier: GPL-2.0

//! Interrupts: a device's MSI-X/MSI/INTx vectors and a handler registered on
//! one of them. The abstraction ties handler and vectors by a borrow, which
//! cannot be stored in one device structure; here the registration owns an
//! `Arc` of its handler instead.

use core::ptr::NonNull;

use kernel::{bindings, error::to_result, pci, prelude::*, sync::Arc};

use super::pci_dev::raw_pci;

/// MSI-X (or MSI, or INTx) vectors allocated for a device.
pub(crate) struct IrqVectors {
    pdev: NonNull<bindings::pci_dev>,
    count: u32,
}

// SAFETY: freeing vectors is allowed from any process context.
unsafe impl Send for IrqVectors {}
// SAFETY: no interior mutability.
unsafe impl Sync for IrqVectors {}

impl IrqVectors {
    /// Allocates between 1 and `max` vectors: MSI-X only if `msix_only`,
    /// else MSI-X preferred, then MSI, then INTx.
    pub(crate) fn alloc(
        pdev: &pci::Device<kernel::device::Core<'_>>,
        max: u32,
        msix_only: bool,
    ) -> Result<Self> {
        let raw = raw_pci(pdev);
        let flags = if msix_only {
            bindings::PCI_IRQ_MSIX
        } else {
            bindings::PCI_IRQ_MSIX | bindings::PCI_IRQ_MSI | bindings::PCI_IRQ_INTX
        };
        // SAFETY: `raw` is a valid device in probe.
        let n = unsafe { bindings::pci_alloc_irq_vectors(raw, 1, max, flags) };
        if n < 0 {
            return Err(Error::from_errno(n));
        }
        Ok(Self {
            pdev: NonNull::new(raw).ok_or(EINVAL)?,
            count: n as u32,
        })
    }

    /// Linux IRQ number of vector `index`.
    pub(crate) fn irq(&self, index: u32) -> Result<u32> {
        if index >= self.count {
            return Err(EINVAL);
        }
        // SAFETY: the device has `count` vectors allocated.
        let irq = unsafe { bindings::pci_irq_vector(self.pdev.as_ptr(), index) };
        if irq < 0 {
            return Err(Error::from_errno(irq));
        }
        Ok(irq as u32)
    }

    /// Whether the vectors are MSI-X (each peer can target its own vector).
    pub(crate) fn is_msix(&self) -> bool {
        // SAFETY: valid device.
        unsafe { (*self.pdev.as_ptr()).msix_enabled() != 0 }
    }
}

impl Drop for IrqVectors {
    fn drop(&mut self) {
        // SAFETY: vectors were allocated in `alloc`; all handlers registered
        // on them are freed first (`IrqHandlerRegistration` borrows nothing,
        // but the device data drops it before the vectors: field order).
        unsafe { bindings::pci_free_irq_vectors(self.pdev.as_ptr()) };
    }
}

/// What an interrupt does; runs in hard-IRQ context, must not sleep.
pub(crate) trait IrqHandler: Send + Sync + 'static {
    /// Handles one interrupt; returns whether it was ours.
    fn handle(&self) -> bool;
}

/// A handler registered with `request_irq`; freed on drop.
pub(crate) struct IrqHandlerRegistration<H: IrqHandler> {
    irq: u32,
    handler: Arc<H>,
}

impl<H: IrqHandler> IrqHandlerRegistration<H> {
    /// Registers `handler` on `irq` (shared, so INTx fallback works).
    pub(crate) fn register(irq: u32, name: &'static CStr, handler: Arc<H>) -> Result<Self> {
        let cookie = core::ptr::from_ref::<H>(&handler)
            .cast_mut()
            .cast::<core::ffi::c_void>();
        // SAFETY: `cookie` points into the `Arc`, which this registration keeps
        // alive until `free_irq` returns in `drop`; `name` is 'static.
        to_result(unsafe {
            bindings::request_irq(
                irq,
                Some(Self::trampoline),
                bindings::IRQF_SHARED as kernel::ffi::c_ulong,
                name.as_char_ptr(),
                cookie,
            )
        })?;
        Ok(Self { irq, handler })
    }

    /// # Safety
    /// Called by the IRQ core with the cookie given to `request_irq`.
    unsafe extern "C" fn trampoline(
        _irq: i32,
        cookie: *mut core::ffi::c_void,
    ) -> bindings::irqreturn_t {
        // SAFETY: the cookie is the `H` kept alive by the registration.
        let h = unsafe { &*cookie.cast::<H>() };
        if h.handle() {
            bindings::irqreturn::IRQ_HANDLED
        } else {
            bindings::irqreturn::IRQ_NONE
        }
    }
}

impl<H: IrqHandler> Drop for IrqHandlerRegistration<H> {
    fn drop(&mut self) {
        let cookie = core::ptr::from_ref::<H>(&self.handler)
            .cast_mut()
            .cast::<core::ffi::c_void>();
        // SAFETY: registered with this irq and cookie; `free_irq` waits for
        // running handlers, after which the cookie is no longer used.
        unsafe { bindings::free_irq(self.irq, cookie) };
    }
}
