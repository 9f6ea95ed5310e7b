// SPDX-License-Identifier: GPL-2.0

//! The C `struct pci_dev` behind a Rust PCI device, which the other files
//! here hand to C, and the calls on it the PCI abstraction does not offer:
//! enabling I/O decoding, claiming the BARs, and a device id for a vendor
//! without a `pci::Vendor` constant.

use kernel::{bindings, error::to_result, pci, prelude::*};

/// The C `struct pci_dev` behind a Rust PCI device.
pub(super) fn raw_pci<Ctx: kernel::device::DeviceContext>(
    pdev: &pci::Device<Ctx>,
) -> *mut bindings::pci_dev {
    // `pci::Device` is `#[repr(transparent)]` over `Opaque<bindings::pci_dev>`
    // (its accessor for the pointer is private), so its address is the
    // address of the C structure; `Opaque` makes mutation through it sound.
    core::ptr::from_ref(pdev).cast_mut().cast()
}

/// Enables I/O and memory decoding (the Rust abstraction only offers the
/// memory-only variant, and the ivc-pio device is all I/O BAR).
pub(crate) fn enable_device(pdev: &pci::Device<kernel::device::Core<'_>>) -> Result {
    // SAFETY: a device in probe (`Core` context) may be enabled; the device
    // data calls `disable_device` when it is dropped at unbind.
    to_result(unsafe { bindings::pci_enable_device(raw_pci(pdev)) })
}

/// Undoes [`enable_device`].
pub(crate) fn disable_device(pdev: &pci::Device) {
    // SAFETY: paired with a successful `pci_enable_device` on this device.
    unsafe { bindings::pci_disable_device(raw_pci(pdev)) };
}

/// Claims all of the device's BARs for `name` (`/proc/ioports`,
/// `/proc/iomem`), so no other driver can map them while we are bound.
pub(crate) fn request_regions(
    pdev: &pci::Device<kernel::device::Core<'_>>,
    name: &'static CStr,
) -> Result {
    // SAFETY: a device in probe may claim its regions; `name` is 'static, as
    // the resource tree keeps the pointer; `release_regions` undoes it.
    to_result(unsafe { bindings::pci_request_regions(raw_pci(pdev), name.as_char_ptr()) })
}

/// Undoes [`request_regions`].
pub(crate) fn release_regions(pdev: &pci::Device) {
    // SAFETY: paired with a successful `pci_request_regions` on this device.
    unsafe { bindings::pci_release_regions(raw_pci(pdev)) };
}

/// A `pci::DeviceId` matching exactly `vendor:device`, any subsystem, for a
/// vendor the kernel has no `pci::Vendor` constant for.
pub(crate) const fn pci_device_id(vendor: u16, device: u16) -> pci::DeviceId {
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
    // SAFETY: `pci::DeviceId` is `#[repr(transparent)]` over
    // `bindings::pci_device_id` and adds no invariant beyond holding a valid
    // id, which `raw` is.
    unsafe { core::mem::transmute::<bindings::pci_device_id, pci::DeviceId>(raw) }
}
