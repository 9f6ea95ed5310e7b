// SPDX-License-Identifier: GPL-2.0

//! ivc: inter-VM communication channels.
//!
//! Binds the two PCI devices that carry an ivc channel between virtual
//! machines on one host:
//!
//! - `ivc-shm`: QEMU's ivshmem (1af4:1110), shared memory in BAR2, optional
//!   doorbell interrupts through MSI-X;
//! - `ivc-pio`: ivc's own port-I/O device (1234:1c1c), bytes relayed by the
//!   VMM.

mod ids;
mod pci_driver;

kernel::module_pci_driver! {
    type: pci_driver::IvcDriver,
    name: "ivc",
    authors: ["ivc developers"],
    description: "ivc: inter-VM communication channels over ivshmem and ivc-pio",
    license: "GPL v2",
}
