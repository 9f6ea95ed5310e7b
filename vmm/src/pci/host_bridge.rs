//! The host bridge at 00:00.0.
//!
//! Linux's `pci_sanity_check` (config type 1 probing without ACPI) accepts
//! the mechanism only if it finds a host bridge or a display controller on
//! bus 0, and the i440FX IDs are the ones every guest knows.

use super::config_space::{ConfigSpace, PciIds};
use super::device::PciDevice;

pub const HOST_BRIDGE_VENDOR: u16 = 0x8086;
pub const HOST_BRIDGE_DEVICE: u16 = 0x1237;
pub const HOST_BRIDGE_CLASS: u32 = 0x06_00_00;

pub struct HostBridge {
    config: ConfigSpace,
}

impl HostBridge {
    pub fn new() -> Self {
        let ids = PciIds {
            vendor: HOST_BRIDGE_VENDOR,
            device: HOST_BRIDGE_DEVICE,
            revision: 2,
            class: HOST_BRIDGE_CLASS,
            subsystem_vendor: 0,
            subsystem: 0,
        };
        HostBridge {
            config: ConfigSpace::new(ids),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn name(&self) -> &str {
        "host-bridge"
    }

    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
}
