//! The three ivc-vmm channel kinds as tier-4 tests use them: one rendezvous
//! server per channel, and the device each guest gets.

use ivc_guest_harness::{Device, Scenario};

/// An ivc-vmm channel kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// `ivc-pio`: port I/O relayed by the VMM.
    Pio,
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

    /// The `--ivc` kind, also the server's name.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Pio => "pio",
            Channel::ShmPoll => "shm-poll",
            Channel::ShmIrq => "shm-irq",
        }
    }

    /// The device joined to this kind's server.
    pub fn device(self) -> Device {
        match self {
            Channel::Pio => Device::ivc_pio(self.name()),
            Channel::ShmPoll => Device::ivc_shm_poll(self.name()),
            Channel::ShmIrq => Device::ivc_shm_irq(self.name()),
        }
    }

    /// `scenario` with this kind's server added.
    pub fn with_server(self, scenario: Scenario) -> Scenario {
        scenario.server(self.name(), SHM_SIZE, 1)
    }

    /// The PCI id the guest sees (`vendor:device` as sysfs spells it).
    pub fn pci_id(self) -> &'static str {
        match self {
            Channel::Pio => "0x1234:0x1c1c",
            Channel::ShmPoll | Channel::ShmIrq => "0x1af4:0x1110",
        }
    }
}
