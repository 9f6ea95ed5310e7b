//! The PCI identities of ivc's two devices, as the guest sees them in
//! config space: what the guest driver binds to, what ivc-vmm's device
//! models present and what the tests look for.
//!
//! `ivc-shm` takes QEMU ivshmem's identity (it is register compatible, see
//! the `ivshmem` module), so one driver serves both VMMs; `ivc-pio` (the
//! `pio` module) has its own.
//!
//! This file is self-contained (it uses nothing from its sibling modules).

/// PCI vendor id of Red Hat, Inc. (formerly Qumranet), the vendor of
/// QEMU's ivshmem and virtio devices.
pub const REDHAT_QUMRANET: u16 = 0x1af4;

/// `ivc-shm` and QEMU's `ivshmem-plain` / `ivshmem-doorbell`: vendor id.
pub const IVSHMEM_VENDOR_ID: u16 = REDHAT_QUMRANET;
/// ivshmem device id.
pub const IVSHMEM_DEVICE_ID: u16 = 0x1110;
/// ivshmem revision.
pub const IVSHMEM_REVISION: u8 = 1;
/// ivshmem class code: memory controller, RAM (0x05/0x00/0x00).
pub const IVSHMEM_CLASS_CODE: u32 = 0x05_00_00;
/// ivshmem subsystem vendor id.
pub const IVSHMEM_SUBSYSTEM_VENDOR_ID: u16 = REDHAT_QUMRANET;
/// ivshmem subsystem id (QEMU's generic Red Hat subsystem, 0x1100).
pub const IVSHMEM_SUBSYSTEM_ID: u16 = 0x1100;

/// `ivc-pio`: vendor id (0x1234: the unassigned id QEMU's experimental
/// devices use).
pub const IVC_PIO_VENDOR_ID: u16 = 0x1234;
/// ivc-pio device id.
pub const IVC_PIO_DEVICE_ID: u16 = 0x1c1c;
/// ivc-pio revision.
pub const IVC_PIO_REVISION: u8 = 1;
/// ivc-pio class code: communication controller, other (0x07/0x80/0x00).
pub const IVC_PIO_CLASS_CODE: u32 = 0x07_80_00;
/// ivc-pio subsystem vendor id (its own vendor id).
pub const IVC_PIO_SUBSYSTEM_VENDOR_ID: u16 = IVC_PIO_VENDOR_ID;
/// ivc-pio subsystem id (its own device id).
pub const IVC_PIO_SUBSYSTEM_ID: u16 = IVC_PIO_DEVICE_ID;
