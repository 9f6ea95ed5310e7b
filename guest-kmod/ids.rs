// SPDX-License-Identifier: GPL-2.0

//! The PCI identities ivc binds to.
//!
//! The kernel's `pci::Vendor` only names vendors from `pci_ids.h`; the ivc-pio
//! device uses 0x1234, the unassigned id QEMU's own experimental devices use,
//! so its table entry is built from the raw C structure (in `ffi`).

use kernel::pci;

use crate::ivc_abi::pci_ids::{IVC_PIO_DEVICE_ID, IVC_PIO_VENDOR_ID, IVSHMEM_DEVICE_ID};

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

/// The table entry for ivshmem (QEMU's `ivshmem-plain`/`ivshmem-doorbell`
/// and ivc-vmm's `ivc-shm`): its vendor, Red Hat/Qumranet
/// (`pci_ids::IVSHMEM_VENDOR_ID`), is one the kernel names, and
/// `from_id` takes the kernel's `Vendor` type.
pub(crate) const IVSHMEM_ID: pci::DeviceId =
    pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, IVSHMEM_DEVICE_ID as u32);

/// The table entry for ivc-pio: 0x1234 has no `pci::Vendor` constant and
/// `Vendor` cannot be built from a raw id outside the kernel crate, so the
/// entry is built from the C structure ([`crate::ffi::pci_device_id`]).
pub(crate) const IVC_PIO_ID: pci::DeviceId =
    crate::ffi::pci_device_id(IVC_PIO_VENDOR_ID, IVC_PIO_DEVICE_ID);
