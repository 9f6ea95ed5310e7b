//! A type-0 PCI configuration header (256 bytes) with a write mask, BARs and a
//! capability list.
//!
//! Writes go through `wmask`: a bit the mask does not set keeps its value.
//! That one rule gives read-only IDs, BAR sizing (the address bits below the
//! BAR size are not writable, so writing all ones reads back the size mask)
//! and read-only capability fields.

pub const CONFIG_SPACE_SIZE: usize = 256;

pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION_ID: usize = 0x08;
pub const CLASS_PROG_IF: usize = 0x09;
pub const CACHE_LINE_SIZE: usize = 0x0c;
pub const LATENCY_TIMER: usize = 0x0d;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
pub const SUBSYSTEM_ID: usize = 0x2e;
pub const CAPABILITIES_POINTER: usize = 0x34;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;
/// First byte after the standard header: capabilities go from here.
pub const FIRST_CAPABILITY_OFFSET: usize = 0x40;

pub const COMMAND_IO_SPACE: u16 = 1 << 0;
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_PARITY_ERROR_RESPONSE: u16 = 1 << 6;
pub const COMMAND_SERR: u16 = 1 << 8;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
pub const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;

pub const NUM_BARS: usize = 6;

/// What kind of window a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports (size at least 4).
    Io,
    /// 32-bit memory.
    Mmio32,
    /// 64-bit memory; uses this BAR and the next one.
    Mmio64 { prefetchable: bool },
}

impl BarKind {
    pub fn is_io(self) -> bool {
        self == BarKind::Io
    }

    /// The read-only low bits of the BAR register.
    fn type_bits(self) -> u32 {
        match self {
            BarKind::Io => 0x1,
            BarKind::Mmio32 => 0x0,
            BarKind::Mmio64 { prefetchable } => 0x4 | if prefetchable { 0x8 } else { 0 },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarInfo {
    pub kind: BarKind,
    pub size: u64,
}

/// A BAR the device decodes right now: its type enabled in COMMAND and an address programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveBar {
    pub index: usize,
    pub kind: BarKind,
    pub addr: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("BAR index {0} is out of range")]
    BarIndex(usize),
    #[error("BAR {0} is already defined")]
    BarInUse(usize),
    #[error("BAR size {0:#x} is not a valid power of two")]
    BarSize(u64),
    #[error("no room in config space for a {0}-byte capability")]
    NoRoomForCapability(usize),
}

/// Identity of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIds {
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// Class code, subclass, programming interface (e.g. 0x060000 host bridge).
    pub class: u32,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

#[derive(Clone)]
pub struct ConfigSpace {
    regs: [u8; CONFIG_SPACE_SIZE],
    wmask: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<BarInfo>; NUM_BARS],
    /// Where the next capability goes, and the last capability's "next" byte.
    next_capability: usize,
    last_capability_next_ptr: usize,
}

impl ConfigSpace {
    pub fn new(ids: PciIds) -> Self {
        let mut cs = ConfigSpace {
            regs: [0; CONFIG_SPACE_SIZE],
            wmask: [0; CONFIG_SPACE_SIZE],
            bars: [None; NUM_BARS],
            next_capability: FIRST_CAPABILITY_OFFSET,
            last_capability_next_ptr: CAPABILITIES_POINTER,
        };
        cs.set_u16(VENDOR_ID, ids.vendor);
        cs.set_u16(DEVICE_ID, ids.device);
        cs.regs[REVISION_ID] = ids.revision;
        // Prog IF, subclass, class: the low three bytes of the 24-bit code.
        let class = ids.class.to_le_bytes();
        cs.regs[CLASS_PROG_IF..CLASS_PROG_IF + 3].copy_from_slice(&class[..3]);
        cs.set_u16(SUBSYSTEM_VENDOR_ID, ids.subsystem_vendor);
        cs.set_u16(SUBSYSTEM_ID, ids.subsystem);
        let cmd_mask = COMMAND_IO_SPACE
            | COMMAND_MEMORY_SPACE
            | COMMAND_BUS_MASTER
            | COMMAND_PARITY_ERROR_RESPONSE
            | COMMAND_SERR
            | COMMAND_INTX_DISABLE;
        cs.set_wmask_u16(COMMAND, cmd_mask);
        cs.wmask[CACHE_LINE_SIZE] = 0xff;
        cs.wmask[LATENCY_TIMER] = 0xff;
        cs.wmask[INTERRUPT_LINE] = 0xff;
        cs
    }

    // ---- guest-facing access ----

    /// A guest read of `data.len()` bytes at `offset`. Out-of-range bytes read as 0xff.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.regs.get(offset + i).copied().unwrap_or(0xff);
        }
    }

    /// A guest write: only bits set in the write mask change.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let Some(reg) = self.regs.get_mut(offset + i) else {
                crate::guest_log!(
                    warn,
                    "pci: config write beyond 256 bytes at {:#x} ignored",
                    offset + i
                );
                return;
            };
            let m = self.wmask[offset + i];
            *reg = (*reg & !m) | (v & m);
        }
    }

    pub fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn read_u16(&self, offset: usize) -> u16 {
        let mut b = [0u8; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    pub fn command(&self) -> u16 {
        self.read_u16(COMMAND)
    }

    // ---- device-side setup (bypasses the write mask) ----

    pub fn set_u8(&mut self, offset: usize, v: u8) {
        if let Some(r) = self.regs.get_mut(offset) {
            *r = v;
        }
    }

    pub fn set_u16(&mut self, offset: usize, v: u16) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set_u8(offset + i, b);
        }
    }

    pub fn set_u32(&mut self, offset: usize, v: u32) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set_u8(offset + i, b);
        }
    }

    pub fn set_wmask_u16(&mut self, offset: usize, m: u16) {
        for (i, b) in m.to_le_bytes().into_iter().enumerate() {
            if let Some(w) = self.wmask.get_mut(offset + i) {
                *w = b;
            }
        }
    }

    pub fn set_wmask_u32(&mut self, offset: usize, m: u32) {
        for (i, b) in m.to_le_bytes().into_iter().enumerate() {
            if let Some(w) = self.wmask.get_mut(offset + i) {
                *w = b;
            }
        }
    }

    /// Sets header type (0 = normal function) and the multi-function bit.
    pub fn set_header_type(&mut self, header_type: u8) {
        self.regs[HEADER_TYPE] = header_type;
    }

    /// Uses INTx pin `pin` (1 = INTA#); 0 means no legacy interrupt.
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.regs[INTERRUPT_PIN] = pin;
    }

    /// Declares BAR `index`. Sizes are powers of two: memory BARs at least
    /// 16 bytes, I/O BARs 4 bytes to 64 KiB. A BAR that backs a KVM memory
    /// slot must be a multiple of the page size (the device chooses that).
    pub fn add_bar(&mut self, index: usize, kind: BarKind, size: u64) -> Result<(), ConfigError> {
        let last = if matches!(kind, BarKind::Mmio64 { .. }) {
            index + 1
        } else {
            index
        };
        if last >= NUM_BARS {
            return Err(ConfigError::BarIndex(index));
        }
        if self.bars[index].is_some() || (last != index && self.bars[last].is_some()) {
            return Err(ConfigError::BarInUse(index));
        }
        if index > 0
            && matches!(
                self.bars[index - 1],
                Some(BarInfo {
                    kind: BarKind::Mmio64 { .. },
                    ..
                })
            )
        {
            return Err(ConfigError::BarInUse(index));
        }
        let size = match kind {
            BarKind::Io if size.is_power_of_two() && (4..=0x1_0000).contains(&size) => size,
            BarKind::Mmio32 if size.is_power_of_two() && (16..=1 << 31).contains(&size) => size,
            BarKind::Mmio64 { .. } if size.is_power_of_two() && (16..=1 << 62).contains(&size) => {
                size
            }
            _ => return Err(ConfigError::BarSize(size)),
        };
        let off = BAR0 + 4 * index;
        let addr_mask = !(size - 1);
        let low_mask = match kind {
            BarKind::Io => ((addr_mask & 0xffff_ffff) as u32) & !0x3,
            _ => ((addr_mask & 0xffff_ffff) as u32) & !0xf,
        };
        self.set_u32(off, kind.type_bits());
        self.set_wmask_u32(off, low_mask);
        if last != index {
            self.set_u32(off + 4, 0);
            self.set_wmask_u32(off + 4, (addr_mask >> 32) as u32);
        }
        self.bars[index] = Some(BarInfo { kind, size });
        Ok(())
    }

    pub fn bar(&self, index: usize) -> Option<BarInfo> {
        self.bars.get(index).copied().flatten()
    }

    /// The address currently programmed into BAR `index` (type bits cleared).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let info = self.bar(index)?;
        let off = BAR0 + 4 * index;
        let low = self.read_u32(off);
        Some(match info.kind {
            BarKind::Io => u64::from(low & !0x3),
            BarKind::Mmio32 => u64::from(low & !0xf),
            BarKind::Mmio64 { .. } => {
                (u64::from(self.read_u32(off + 4)) << 32) | u64::from(low & !0xf)
            }
        })
    }

    /// Programs BAR `index` as firmware would (bypasses the write mask, keeps
    /// the type bits, truncates to the BAR's alignment).
    pub fn set_bar_address(&mut self, index: usize, addr: u64) {
        let Some(info) = self.bar(index) else { return };
        let off = BAR0 + 4 * index;
        let addr = addr & !(info.size - 1);
        self.set_u32(off, ((addr & 0xffff_ffff) as u32) | info.kind.type_bits());
        if matches!(info.kind, BarKind::Mmio64 { .. }) {
            self.set_u32(off + 4, (addr >> 32) as u32);
        }
    }

    /// The BARs this function decodes right now. A BAR counts when its space
    /// is enabled in COMMAND and its address is neither 0 (unassigned) nor in
    /// the middle of a sizing probe (window would wrap / leave 32 bits).
    pub fn active_bars(&self) -> Vec<ActiveBar> {
        let cmd = self.command();
        let mut out = Vec::new();
        for index in 0..NUM_BARS {
            let (Some(info), Some(addr)) = (self.bar(index), self.bar_address(index)) else {
                continue;
            };
            let enabled = if info.kind.is_io() {
                cmd & COMMAND_IO_SPACE != 0
            } else {
                cmd & COMMAND_MEMORY_SPACE != 0
            };
            let limit = match info.kind {
                BarKind::Io => 0x1_0000,
                BarKind::Mmio32 => 0x1_0000_0000,
                BarKind::Mmio64 { .. } => u64::MAX,
            };
            let fits = addr.checked_add(info.size).is_some_and(|end| end <= limit);
            if enabled && addr != 0 && fits {
                out.push(ActiveBar {
                    index,
                    kind: info.kind,
                    addr,
                    size: info.size,
                });
            }
        }
        out
    }

    /// Appends a capability. `body` starts with the capability ID; the "next"
    /// byte (body[1]) is filled in here. `wmask` (same length as `body`, or
    /// empty for read-only) says which bits the guest may write. Returns the
    /// capability's offset.
    pub fn add_capability(&mut self, body: &[u8], wmask: &[u8]) -> Result<usize, ConfigError> {
        let len = body.len().max(2);
        let off = self.next_capability;
        if off + len > CONFIG_SPACE_SIZE || (!wmask.is_empty() && wmask.len() != body.len()) {
            return Err(ConfigError::NoRoomForCapability(len));
        }
        // The "next" pointers are one byte: off < CONFIG_SPACE_SIZE (256).
        let next_ptr = u8::try_from(off).map_err(|_| ConfigError::NoRoomForCapability(len))?;
        self.regs[off..off + body.len()].copy_from_slice(body);
        if !wmask.is_empty() {
            self.wmask[off..off + wmask.len()].copy_from_slice(wmask);
        }
        self.regs[off + 1] = 0;
        self.wmask[off] = 0;
        self.wmask[off + 1] = 0;
        self.regs[self.last_capability_next_ptr] = next_ptr;
        self.last_capability_next_ptr = off + 1;
        self.next_capability = (off + len).next_multiple_of(4);
        let status = self.read_u16(STATUS) | STATUS_CAPABILITIES_LIST;
        self.set_u16(STATUS, status);
        Ok(off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> PciIds {
        PciIds {
            vendor: 0x1af4,
            device: 0x1110,
            revision: 1,
            class: 0x050000,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        }
    }

    #[test]
    fn ids_are_read_only() {
        let mut cs = ConfigSpace::new(ids());
        cs.write(VENDOR_ID, &[0xff; 4]);
        cs.write(REVISION_ID, &[0xff; 4]);
        cs.write(HEADER_TYPE, &[0xff]);
        cs.write(INTERRUPT_PIN, &[0xff]);
        cs.write(SUBSYSTEM_VENDOR_ID, &[0xff; 4]);
        assert_eq!(cs.read_u32(VENDOR_ID), 0x1110_1af4);
        assert_eq!(cs.read_u32(REVISION_ID), 0x0500_0001);
        assert_eq!(cs.read_u32(SUBSYSTEM_VENDOR_ID), 0x1100_1af4);
        assert_eq!(cs.read_u16(HEADER_TYPE), 0);
        assert_eq!(cs.read_u16(INTERRUPT_PIN), 0);
    }

    #[test]
    fn command_register_keeps_only_defined_bits() {
        let mut cs = ConfigSpace::new(ids());
        cs.write(COMMAND, &[0xff, 0xff]);
        assert_eq!(cs.command(), 0x0547);
        cs.write(INTERRUPT_LINE, &[11]);
        assert_eq!(cs.read_u16(INTERRUPT_LINE) & 0xff, 11);
    }

    #[test]
    fn memory_bar_sizing_and_relocation() {
        let mut cs = ConfigSpace::new(ids());
        cs.add_bar(0, BarKind::Mmio32, 256).unwrap();
        // Sizing: all ones read back as the size mask with the type bits.
        cs.write(BAR0, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(cs.read_u32(BAR0), 0xffff_ff00);
        cs.write(BAR0, &0xfebf_1234u32.to_le_bytes());
        assert_eq!(cs.read_u32(BAR0), 0xfebf_1200);
        assert_eq!(cs.bar_address(0), Some(0xfebf_1200));
        // A byte write can change only the address bits it covers.
        cs.write(BAR0 + 3, &[0xc0]);
        assert_eq!(cs.bar_address(0), Some(0xc0bf_1200));
        assert_eq!(
            cs.add_bar(1, BarKind::Mmio32, 8),
            Err(ConfigError::BarSize(8))
        );
    }

    #[test]
    fn io_bar_sizing_keeps_type_bit() {
        let mut cs = ConfigSpace::new(ids());
        cs.add_bar(4, BarKind::Io, 32).unwrap();
        cs.write(BAR0 + 16, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(cs.read_u32(BAR0 + 16), 0xffff_ffe1);
        cs.write(BAR0 + 16, &0xc040u32.to_le_bytes());
        assert_eq!(cs.read_u32(BAR0 + 16), 0xc041);
        assert_eq!(cs.bar_address(4), Some(0xc040));
    }

    #[test]
    fn bar64_prefetchable_sizing_uses_both_dwords() {
        let mut cs = ConfigSpace::new(ids());
        cs.add_bar(2, BarKind::Mmio64 { prefetchable: true }, 1 << 33)
            .unwrap();
        assert_eq!(cs.read_u32(BAR0 + 8), 0xc);
        cs.write(BAR0 + 8, &[0xff; 4]);
        cs.write(BAR0 + 12, &[0xff; 4]);
        assert_eq!(cs.read_u32(BAR0 + 8), 0x0000_000c);
        assert_eq!(cs.read_u32(BAR0 + 12), 0xffff_fffe);
        cs.write(BAR0 + 8, &0u32.to_le_bytes());
        cs.write(BAR0 + 12, &0x10u32.to_le_bytes());
        assert_eq!(cs.bar_address(2), Some(0x10_0000_0000));
        // The upper half of a 64-bit BAR cannot be declared separately.
        assert_eq!(cs.add_bar(3, BarKind::Io, 4), Err(ConfigError::BarInUse(3)));
        assert_eq!(
            cs.add_bar(
                5,
                BarKind::Mmio64 {
                    prefetchable: false
                },
                4096
            ),
            Err(ConfigError::BarIndex(5))
        );
        assert_eq!(
            cs.add_bar(0, BarKind::Mmio32, 3000),
            Err(ConfigError::BarSize(3000))
        );
    }

    #[test]
    fn active_bars_follow_command_and_address() {
        let mut cs = ConfigSpace::new(ids());
        cs.add_bar(0, BarKind::Mmio32, 4096).unwrap();
        cs.add_bar(4, BarKind::Io, 16).unwrap();
        cs.set_bar_address(0, 0xc000_0000);
        cs.set_bar_address(4, 0xc000);
        assert!(cs.active_bars().is_empty());
        cs.write(COMMAND, &COMMAND_MEMORY_SPACE.to_le_bytes());
        assert_eq!(
            cs.active_bars(),
            vec![ActiveBar {
                index: 0,
                kind: BarKind::Mmio32,
                addr: 0xc000_0000,
                size: 4096
            }]
        );
        cs.write(
            COMMAND,
            &(COMMAND_MEMORY_SPACE | COMMAND_IO_SPACE).to_le_bytes(),
        );
        assert_eq!(cs.active_bars().len(), 2);
        // An I/O BAR mid-sizing would run past 64 KiB: not decoded.
        cs.write(BAR0 + 16, &[0xff; 4]);
        assert_eq!(cs.active_bars().len(), 1);
    }

    #[test]
    fn capabilities_are_chained_and_masked() {
        let mut cs = ConfigSpace::new(ids());
        let a = cs.add_capability(&[0x09, 0xaa, 0x11, 0x22], &[]).unwrap();
        let b = cs
            .add_capability(
                &[0x11, 0, 0x34, 0x12, 0, 0, 0, 0],
                &[0, 0, 0, 0xc0, 0, 0, 0, 0],
            )
            .unwrap();
        assert_eq!(a, 0x40);
        assert_eq!(b, 0x44);
        assert_eq!(
            cs.read_u16(STATUS) & STATUS_CAPABILITIES_LIST,
            STATUS_CAPABILITIES_LIST
        );
        assert_eq!(cs.read_u16(CAPABILITIES_POINTER) & 0xff, 0x40);
        assert_eq!(cs.read_u16(0x40), 0x4409);
        assert_eq!(cs.read_u16(0x44), 0x0011);
        cs.write(0x40, &[0xff; 12]);
        assert_eq!(cs.read_u32(0x40), 0x2211_4409);
        assert_eq!(cs.read_u32(0x44), 0xd234_0011);
    }

    #[test]
    fn out_of_range_accesses_are_harmless() {
        let mut cs = ConfigSpace::new(ids());
        cs.write(254, &[1, 2, 3, 4]);
        let mut b = [0u8; 4];
        cs.read(254, &mut b);
        assert_eq!(b[2..], [0xff, 0xff]);
        assert_eq!(cs.bar_address(9), None);
    }
}
