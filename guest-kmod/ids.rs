// SPDX-License-Identifier: GPL-2.0

//! The PCI identities ivc binds to.
//!
//! The kernel's `pci::Vendor` only names vendors from `pci_ids.h`; the ivc-pio
//! device uses 0x1234, the unassigned id QEMU's own experimental devices use,
//! so its table entry is built from the raw C structure (in `ffi`).

use kernel::pci;

/// Device id of QEMU's ivshmem (`ivshmem-plain`, `ivshmem-doorbell`) and
/// ivc-vmm's `ivc-shm`, vendor Red Hat/Qumranet (0x1af4).
pub(crate) const IVSHMEM_DEVICE: u16 = 0x1110;
/// Vendor id of ivc-vmm's port-I/O device.
pub(crate) const IVC_PIO_VENDOR: u16 = crate::ivc_abi::pio::VENDOR_ID;
/// Device id of ivc-vmm's port-I/O device.
pub(crate) const IVC_PIO_DEVICE: u16 = crate::ivc_abi::pio::DEVICE_ID;

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

/// The table entry for ivshmem: its vendor is one the kernel names.
pub(crate) const IVSHMEM_ID: pci::DeviceId =
    pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, IVSHMEM_DEVICE as u32);

/// The table entry for ivc-pio: 0x1234 has no `pci::Vendor` constant and
/// `Vendor` cannot be built from a raw id outside the kernel crate, so the
/// entry is built from the C structure ([`crate::ffi::pci_device_id`]).
pub(crate) const IVC_PIO_ID: pci::DeviceId =
    crate::ffi::pci_device_id(IVC_PIO_VENDOR, IVC_PIO_DEVICE);
