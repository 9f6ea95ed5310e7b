//! The three ivc-vmm channel kinds as tier-4 tests use them (and pio's two
//! driver modes): one rendezvous server per channel, the device each guest
//! gets, and how the guest loads the driver.

use ivc_abi::pci_ids::{
    IVC_PIO_DEVICE_ID, IVC_PIO_VENDOR_ID, IVSHMEM_DEVICE_ID, IVSHMEM_VENDOR_ID,
};
use std::time::Duration;

use ivc_guest_harness::{Device, GuestSpec, Scenario};

use crate::guest_sh::{insmod_with, COUNT_IRQS, DMESG_IVC, INSMOD};
use crate::transfer::{script, Side, Transfer};

/// An ivc-vmm channel kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// `ivc-pio`: port I/O relayed by the VMM, in the driver's default
    /// mode (descriptor mode: one exit per `read`/`write` call).
    Pio,
    /// `ivc-pio` with the driver forced to string I/O (`pio_string_io=1`:
    /// `rep insb`/`rep outsl`, an exit per element or page).
    PioString,
    /// `ivc-shm`, polled.
    ShmPoll,
    /// `ivc-shm` with doorbells and MSI-X.
    ShmIrq,
}

/// Shared memory per server: ample for the rings and a 64 KiB call.
pub const SHM_SIZE: u64 = 4 << 20;

impl Channel {
    /// Every kind.
    pub const ALL: [Channel; 3] = [Channel::Pio, Channel::ShmPoll, Channel::ShmIrq];

    /// The server's name: the `--ivc` kind, or `pio-string`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Pio => "pio",
            Channel::PioString => "pio-string",
            Channel::ShmPoll => "shm-poll",
            Channel::ShmIrq => "shm-irq",
        }
    }

    /// The device joined to this kind's server.
    pub fn device(self) -> Device {
        match self {
            Channel::Pio | Channel::PioString => Device::ivc_pio(self.name()),
            Channel::ShmPoll => Device::ivc_shm_poll(self.name()),
            Channel::ShmIrq => Device::ivc_shm_irq(self.name()),
        }
    }

    /// `scenario` with this kind's server added.
    pub fn with_server(self, scenario: Scenario) -> Scenario {
        scenario.server(self.name(), SHM_SIZE, 1)
    }

    /// The PCI id the guest sees (`vendor:device` as sysfs spells it,
    /// `0x1af4:0x1110`).
    pub fn pci_id(self) -> String {
        let (vendor, device) = match self {
            Channel::Pio | Channel::PioString => (IVC_PIO_VENDOR_ID, IVC_PIO_DEVICE_ID),
            Channel::ShmPoll | Channel::ShmIrq => (IVSHMEM_VENDOR_ID, IVSHMEM_DEVICE_ID),
        };
        format!("{vendor:#06x}:{device:#06x}")
    }

    /// Shell lines that load the driver for this kind (see [`INSMOD`]).
    pub fn insmod(self) -> String {
        match self {
            Channel::PioString => insmod_with("pio_string_io=1"),
            _ => INSMOD.to_string(),
        }
    }

    /// A guest on this kind's device that runs `prefix`, loads the driver,
    /// runs its `side` of `plan` on `/dev/ivc0`, then prints its interrupt
    /// counts and the driver's kernel log.
    pub fn transfer_guest(
        self,
        name: &str,
        plan: &[Transfer],
        side: Side,
        prefix: &str,
        timeout: Duration,
    ) -> GuestSpec {
        let command = format!(
            "{prefix}{}{}{COUNT_IRQS}{DMESG_IVC}",
            self.insmod(),
            script(plan, side, "/dev/ivc0")
        );
        GuestSpec::new(name, command)
            .device(self.device())
            .timeout(timeout)
    }

    /// The words the driver's probe logs for this kind's pio mode (in the
    /// `ivc: ivcN is ivc-pio (port I/O, polled), ...` line), if pio.
    pub fn pio_mode_log(self) -> Option<&'static str> {
        match self {
            Channel::Pio => Some("ivc-pio (port I/O, polled), descriptor mode"),
            Channel::PioString => Some("ivc-pio (port I/O, polled), string I/O"),
            Channel::ShmPoll | Channel::ShmIrq => None,
        }
    }

    /// Whether this is one of pio's modes.
    pub fn is_pio(self) -> bool {
        matches!(self, Channel::Pio | Channel::PioString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_ids_are_spelled_as_sysfs_does() {
        assert_eq!(Channel::ShmPoll.pci_id(), "0x1af4:0x1110");
        assert_eq!(Channel::ShmIrq.pci_id(), "0x1af4:0x1110");
        assert_eq!(Channel::Pio.pci_id(), "0x1234:0x1c1c");
        assert_eq!(Channel::PioString.pci_id(), "0x1234:0x1c1c");
    }
}
