//! PCI configuration space through configuration mechanism #1
//! (ports 0xcf8/0xcfc), and enumeration of bus 0.
//!
//! Only aligned 32-bit configuration accesses are used: that is the one
//! access size every host bridge model handles, and writing a whole dword to
//! the command register writes zeros to the status register's
//! write-1-to-clear bits, which leaves them alone.

pub mod bar;
pub mod msix;

use core::fmt;

use ivc_abi::pci_ids::{
    IVC_PIO_DEVICE_ID, IVC_PIO_VENDOR_ID, IVSHMEM_DEVICE_ID, IVSHMEM_VENDOR_ID,
};

use crate::port::{inl, outl};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Configuration space offsets (type 0 and type 1 headers).
pub mod reg {
    pub const VENDOR_DEVICE: u8 = 0x00;
    pub const COMMAND_STATUS: u8 = 0x04;
    pub const CLASS_REVISION: u8 = 0x08;
    /// Cache line size, latency timer, header type, BIST.
    pub const HEADER: u8 = 0x0c;
    pub const BAR0: u8 = 0x10;
    pub const CAPABILITIES: u8 = 0x34;
}

/// Command register bits.
pub mod command {
    pub const IO: u16 = 1 << 0;
    pub const MEMORY: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
}

/// Vendor and device ID of QEMU's ivshmem, which ivc-shm is register
/// compatible with (docs/devices.md).
pub const IVSHMEM: (u16, u16) = (IVSHMEM_VENDOR_ID, IVSHMEM_DEVICE_ID);
/// Vendor and device ID of ivc-vmm's port-I/O device.
pub const IVC_PIO: (u16, u16) = (IVC_PIO_VENDOR_ID, IVC_PIO_DEVICE_ID);

/// Status register: the function has a capability list.
const STATUS_CAP_LIST: u16 = 1 << 4;

/// Bus/device/function address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

impl Bdf {
    fn config_address(self, offset: u8) -> u32 {
        0x8000_0000
            | (self.bus as u32) << 16
            | ((self.device as u32) & 0x1f) << 11
            | ((self.function as u32) & 0x7) << 8
            | (offset as u32 & 0xfc)
    }

    /// Reads the aligned dword containing `offset`.
    pub fn read32(self, offset: u8) -> u32 {
        outl(CONFIG_ADDRESS, self.config_address(offset));
        inl(CONFIG_DATA)
    }

    /// Writes the aligned dword containing `offset`.
    pub fn write32(self, offset: u8, value: u32) {
        outl(CONFIG_ADDRESS, self.config_address(offset));
        outl(CONFIG_DATA, value);
    }

    pub fn command(self) -> u16 {
        self.read32(reg::COMMAND_STATUS) as u16
    }

    /// Writes the command register (status bits are written as 0, a no-op).
    pub fn set_command(self, value: u16) {
        self.write32(reg::COMMAND_STATUS, value as u32);
    }
}

/// One function found on the bus.
#[derive(Clone, Copy)]
pub struct Function {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    /// Base class, subclass, programming interface.
    pub class: u32,
    pub revision: u8,
    /// Header layout (bit 7, the multi-function flag, masked off).
    pub header_type: u8,
}

impl Function {
    fn probe(bdf: Bdf) -> Option<(Function, bool)> {
        let id = bdf.read32(reg::VENDOR_DEVICE);
        let vendor = id as u16;
        if vendor == 0xffff || vendor == 0 {
            return None;
        }
        let class_rev = bdf.read32(reg::CLASS_REVISION);
        let header = (bdf.read32(reg::HEADER) >> 16) as u8;
        Some((
            Function {
                bdf,
                vendor,
                device: (id >> 16) as u16,
                class: class_rev >> 8,
                revision: class_rev as u8,
                header_type: header & 0x7f,
            },
            header & 0x80 != 0,
        ))
    }

    /// Number of BAR slots of this header type.
    pub fn bar_slots(&self) -> u8 {
        match self.header_type {
            0 => 6,
            1 => 2, // PCI-to-PCI bridge
            _ => 0,
        }
    }

    /// Offsets of the capabilities, following the list from 0x34. Bounded so
    /// a looping list (a buggy device model) cannot hang the guest.
    pub fn capabilities(&self) -> Capabilities {
        let has_list = (self.bdf.read32(reg::COMMAND_STATUS) >> 16) as u16 & STATUS_CAP_LIST != 0;
        let first = if has_list {
            self.bdf.read32(reg::CAPABILITIES) as u8 & 0xfc
        } else {
            0
        };
        Capabilities {
            bdf: self.bdf,
            next: first,
            remaining: 48, // (256 - 64) / 4: more would have to repeat
        }
    }

    /// Offset of the first capability with `id`, if any.
    pub fn find_capability(&self, id: u8) -> Option<u8> {
        self.capabilities()
            .find(|&(cap_id, _)| cap_id == id)
            .map(|(_, offset)| offset)
    }

    /// Lets the device master the bus (needed for MSI/MSI-X delivery).
    pub fn enable_bus_master(&self) {
        let cmd = self.bdf.command();
        self.bdf.set_command(cmd | command::BUS_MASTER);
    }
}

/// Iterator over `(capability id, offset)`.
pub struct Capabilities {
    bdf: Bdf,
    next: u8,
    remaining: u8,
}

impl Iterator for Capabilities {
    type Item = (u8, u8);

    fn next(&mut self) -> Option<(u8, u8)> {
        // Capabilities live after the 64-byte header.
        if self.next < 0x40 || self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let offset = self.next;
        let head = self.bdf.read32(offset);
        self.next = (head >> 8) as u8 & 0xfc;
        Some((head as u8, offset))
    }
}

/// All functions on bus 0, in device/function order.
pub fn enumerate_bus0() -> impl Iterator<Item = Function> {
    (0u8..32).flat_map(|device| {
        let mut multi = false;
        (0u8..8).filter_map(move |function| {
            // Functions 1-7 exist only behind a multi-function function 0.
            if function > 0 && !multi {
                return None;
            }
            let bdf = Bdf {
                bus: 0,
                device,
                function,
            };
            let (found, is_multi) = Function::probe(bdf)?;
            if function == 0 {
                multi = is_multi;
            }
            Some(found)
        })
    })
}

/// The first function on bus 0 with this vendor and device ID.
pub fn find(vendor: u16, device: u16) -> Option<Function> {
    enumerate_bus0().find(|f| f.vendor == vendor && f.device == device)
}
