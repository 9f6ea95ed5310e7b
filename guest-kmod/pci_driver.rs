// SPDX-License-Identifier: GPL-2.0

//! PCI binding: probe and remove for ivc-shm and ivc-pio devices.

use kernel::{device::Core, pci, prelude::*};

use crate::ids::{self, DeviceKind};

/// The ivc PCI driver.
pub(crate) struct IvcDriver;

/// Per-device state, alive while the device is bound.
pub(crate) struct IvcDevice<'bound> {
    pdev: &'bound pci::Device,
    kind: DeviceKind,
}

kernel::pci_device_table!(
    PCI_TABLE,
    <IvcDriver as pci::Driver>::IdInfo,
    [
        (
            ids::device_id(ids::IVSHMEM_VENDOR, ids::IVSHMEM_DEVICE),
            DeviceKind::Shm
        ),
        (
            ids::device_id(ids::IVC_PIO_VENDOR, ids::IVC_PIO_DEVICE),
            DeviceKind::Pio
        ),
    ]
);

impl pci::Driver for IvcDriver {
    type IdInfo = DeviceKind;
    type Data<'bound> = IvcDevice<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        let kind = *info.ok_or(ENODEV)?;
        dev_info!(
            pdev,
            "ivc: probe {} ({:04x}:{:04x} rev {})\n",
            kind.name(),
            pdev.vendor_id().as_raw(),
            pdev.device_id(),
            pdev.revision_id()
        );
        Ok(IvcDevice { pdev, kind })
    }
}

impl Drop for IvcDevice<'_> {
    fn drop(&mut self) {
        dev_info!(self.pdev, "ivc: remove {}\n", self.kind.name());
    }
}
