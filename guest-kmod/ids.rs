// SPDX-License-Identifier: GPL-2.0

//! The PCI identities ivc binds to.
//!
//! The kernel's `pci::Vendor` only names vendors from `pci_ids.h`; the ivc-pio
//! device uses 0x1234, the unassigned id QEMU's own experimental devices use,
//! so its table entry is built from the raw C structure.

use kernel::{bindings, pci};

/// QEMU ivshmem (`ivshmem-plain`, `ivshmem-doorbell`) and ivc-vmm's `ivc-shm`.
pub(crate) const IVSHMEM_VENDOR: u16 = 0x1af4;
/// Device id of ivshmem.
pub(crate) const IVSHMEM_DEVICE: u16 = 0x1110;
/// Vendor id of ivc-vmm's port-I/O device.
pub(crate) const IVC_PIO_VENDOR: u16 = crate::ivc_channel::pio::VENDOR_ID;
/// Device id of ivc-vmm's port-I/O device.
pub(crate) const IVC_PIO_DEVICE: u16 = crate::ivc_channel::pio::DEVICE_ID;

/// Which transport a bound device provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    /// Shared memory in BAR2 (ivshmem register layout).
    Shm,
    /// Bytes through an I/O BAR (ivc-pio register layout).
    Pio,
}

impl DeviceKind {
    /// A short name for log messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DeviceKind::Shm => "ivc-shm",
            DeviceKind::Pio => "ivc-pio",
        }
    }
}

/// A `pci::DeviceId` matching exactly `vendor:device`, any subsystem.
pub(crate) const fn device_id(vendor: u16, device: u16) -> pci::DeviceId {
    const ANY: u32 = !0;
    let raw = bindings::pci_device_id {
        vendor: vendor as u32,
        device: device as u32,
        subvendor: ANY,
        subdevice: ANY,
        class: 0,
        class_mask: 0,
        driver_data: 0,
        override_only: 0,
    };
    // SAFETY: `pci::DeviceId` is `#[repr(transparent)]` over `bindings::pci_device_id`
    // and adds no invariant beyond holding a valid id, which `raw` is.
    unsafe { core::mem::transmute::<bindings::pci_device_id, pci::DeviceId>(raw) }
}
