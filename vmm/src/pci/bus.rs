//! PCI bus 0: device slots, configuration mechanism #1 (ports 0xcf8/0xcfc)
//! and keeping the I/O and MMIO buses in step with the BARs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use log::debug;

use super::bar_allocator::BarAllocator;
use super::config_space::{ActiveBar, BarKind, COMMAND, COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE};
use super::device::SharedPciDevice;
use crate::exit::{ExitReason, VmExit};
use crate::io_bus::{Bus, BusDevice};

pub const NUM_SLOTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciBusError {
    #[error("PCI slot {0} is already in use")]
    SlotInUse(u8),
    #[error("no free PCI slot")]
    NoFreeSlot,
    #[error("no room for BAR{bar} of PCI device {device}")]
    BarPlacement { device: String, bar: usize },
}

/// A decoded BAR on the I/O or MMIO bus: forwards accesses to its device.
struct BarRegion {
    device: SharedPciDevice,
    bar: usize,
}

impl BusDevice for BarRegion {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_bar(self.bar, offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_bar(self.bar, offset, data);
    }
}

pub struct PciBus {
    slots: [Option<SharedPciDevice>; NUM_SLOTS],
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    allocator: BarAllocator,
    /// What each (slot, bar) is registered as on the I/O or MMIO bus.
    mapped: BTreeMap<(usize, usize), ActiveBar>,
}

impl PciBus {
    pub fn new(io_bus: Arc<Bus>, mmio_bus: Arc<Bus>, allocator: BarAllocator) -> Self {
        PciBus {
            slots: Default::default(),
            io_bus,
            mmio_bus,
            allocator,
            mapped: BTreeMap::new(),
        }
    }

    /// Plugs `device` into `slot` (or the first free one), assigns its BARs
    /// as firmware would, enables decoding, and maps them. Returns the slot.
    pub fn add_device(
        &mut self,
        slot: Option<u8>,
        device: SharedPciDevice,
    ) -> Result<u8, PciBusError> {
        let slot = match slot {
            Some(s) if usize::from(s) >= NUM_SLOTS => return Err(PciBusError::SlotInUse(s)),
            Some(s) if self.slots[usize::from(s)].is_some() => {
                return Err(PciBusError::SlotInUse(s))
            }
            Some(s) => usize::from(s),
            None => self
                .slots
                .iter()
                .position(Option::is_none)
                .ok_or(PciBusError::NoFreeSlot)?,
        };
        {
            let mut dev = device.lock().unwrap_or_else(|e| e.into_inner());
            let name = dev.name().to_string();
            let cs = dev.config_mut();
            let mut command = cs.command();
            for bar in 0..super::config_space::NUM_BARS {
                let Some(info) = cs.bar(bar) else { continue };
                let addr = self
                    .allocator
                    .allocate(info.kind, info.size)
                    .ok_or_else(|| PciBusError::BarPlacement {
                        device: name.clone(),
                        bar,
                    })?;
                cs.set_bar_address(bar, addr);
                command |= if info.kind == BarKind::Io {
                    COMMAND_IO_SPACE
                } else {
                    COMMAND_MEMORY_SPACE
                };
            }
            cs.set_u16(COMMAND, command);
            debug!("pci: {name} at 00:{slot:02x}.0");
        }
        self.slots[slot] = Some(device);
        self.update_mappings(slot);
        // reason: slot indexes `slots`, a fixed array of NUM_SLOTS (32).
        #[allow(clippy::cast_possible_truncation)]
        Ok(slot as u8)
    }

    pub fn device(&self, slot: u8) -> Option<SharedPciDevice> {
        self.slots.get(usize::from(slot)).cloned().flatten()
    }

    /// A config read of bus 0 device `slot` function `function`.
    /// Absent functions read as all ones (how guests detect "no device").
    pub fn config_read(&self, slot: u8, function: u8, offset: usize, data: &mut [u8]) {
        match self.function(slot, function) {
            Some(dev) => dev
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .config()
                .read(offset, data),
            None => data.fill(0xff),
        }
    }

    pub fn config_write(&mut self, slot: u8, function: u8, offset: usize, data: &[u8]) {
        let Some(dev) = self.function(slot, function) else {
            return;
        };
        {
            let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
            d.config_mut().write(offset, data);
            d.config_written(offset, data.len());
        }
        self.update_mappings(usize::from(slot));
    }

    fn function(&self, slot: u8, function: u8) -> Option<SharedPciDevice> {
        if function != 0 {
            return None;
        }
        self.device(slot)
    }

    /// Moves BAR ranges on the I/O / MMIO bus to match what the device
    /// decodes now, and tells the device about each move.
    fn update_mappings(&mut self, slot: usize) {
        let Some(dev) = self.slots[slot].clone() else {
            return;
        };
        let (name, active) = {
            let d = dev.lock().unwrap_or_else(|e| e.into_inner());
            (d.name().to_string(), d.config().active_bars())
        };
        for bar in 0..super::config_space::NUM_BARS {
            let old = self.mapped.get(&(slot, bar)).copied();
            let mut new = active.iter().find(|a| a.index == bar).copied();
            if old == new {
                continue;
            }
            if let Some(o) = old {
                self.bus_for(o.kind).remove(o.addr);
                self.mapped.remove(&(slot, bar));
            }
            if let Some(n) = new {
                let region = Arc::new(Mutex::new(BarRegion {
                    device: dev.clone(),
                    bar,
                }));
                match self.bus_for(n.kind).insert(n.addr, n.size, region) {
                    Ok(()) => {
                        self.mapped.insert((slot, bar), n);
                    }
                    Err(e) => {
                        crate::guest_log!(warn, "pci: {name} BAR{bar} not mapped: {e}");
                        new = None;
                    }
                }
            }
            if old != new {
                debug!(
                    "pci: {name} BAR{bar} {:?} -> {:?}",
                    old.map(|o| o.addr),
                    new.map(|n| n.addr)
                );
                dev.lock().unwrap_or_else(|e| e.into_inner()).bar_moved(
                    bar,
                    old.map(|o| o.addr),
                    new.map(|n| n.addr),
                );
            }
        }
    }

    fn bus_for(&self, kind: BarKind) -> &Bus {
        if kind == BarKind::Io {
            &self.io_bus
        } else {
            &self.mmio_bus
        }
    }
}

/// Configuration mechanism #1: the address register at 0xcf8 and the data
/// window at 0xcfc..0xcff. Sits on the I/O bus at 0xcf8, 8 ports.
///
/// The byte at 0xcf9 is the PIIX/ICH reset control register: a write with
/// RST_CPU (bit 2) set resets the machine (Linux `reboot=pci`), when a
/// reset handle was given.
pub struct PciConfigIo {
    bus: Arc<Mutex<PciBus>>,
    address: u32,
    reset: Option<Arc<VmExit>>,
}

const CONFIG_ENABLE: u32 = 1 << 31;
/// 0xcf9 relative to 0xcf8, and its "reset CPU" bit.
const RESET_CONTROL_OFFSET: u64 = 1;
const RESET_CONTROL_RST_CPU: u8 = 1 << 2;

impl PciConfigIo {
    pub fn new(bus: Arc<Mutex<PciBus>>) -> Self {
        PciConfigIo {
            bus,
            address: 0,
            reset: None,
        }
    }

    /// Makes a 0xcf9 reset request end the VM with `ExitReason::Reset`.
    pub fn with_reset(mut self, exit: Arc<VmExit>) -> Self {
        self.reset = Some(exit);
        self
    }

    /// (slot, function, register offset) selected by the address register,
    /// or None if config cycles are disabled or aim past bus 0.
    /// `data_offset` is the byte within the data window (0..4).
    fn target(&self, data_offset: usize) -> Option<(u8, u8, usize)> {
        if self.address & CONFIG_ENABLE == 0 {
            return None;
        }
        let bus = (self.address >> 16) & 0xff;
        if bus != 0 {
            return None;
        }
        let slot = ((self.address >> 11) & 0x1f) as u8;
        let function = ((self.address >> 8) & 0x7) as u8;
        let reg = (self.address & 0xfc) as usize + data_offset;
        Some((slot, function, reg))
    }
}

/// The byte within the data window (0xcfc..0xcff) that an access of `len`
/// bytes at port offset `offset` starts at, if the whole access lies in it.
fn data_window(offset: u64, len: usize) -> Option<usize> {
    let start = usize::try_from(offset.checked_sub(4)?).ok()?;
    (start < 4 && start + len <= 4).then_some(start)
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match offset {
            // Only a dword access reaches the address register; Linux's
            // type-1 probe relies on byte accesses at 0xcfb not latching.
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            _ => match data_window(offset, data.len()).and_then(|d| self.target(d)) {
                Some((slot, function, reg)) => self
                    .bus
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .config_read(slot, function, reg, data),
                None => data.fill(0xff),
            },
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data_window(offset, data.len())) {
            (0, _) if data.len() == 4 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.address = u32::from_le_bytes(b);
            }
            (_, Some(d)) => {
                if let Some((slot, function, reg)) = self.target(d) {
                    self.bus
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .config_write(slot, function, reg, data);
                }
            }
            (RESET_CONTROL_OFFSET, _)
                if data.len() == 1 && data[0] & RESET_CONTROL_RST_CPU != 0 =>
            {
                if let Some(exit) = &self.reset {
                    exit.request(ExitReason::Reset);
                }
            }
            _ => debug!(
                "pci: ignored config-port write at {:#x} size {}",
                0xcf8 + offset,
                data.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_bus::BusKind;
    use crate::pci::config_space::{ConfigSpace, PciIds, BAR0};
    use crate::pci::device::PciDevice;
    use crate::pci::host_bridge::HostBridge;

    struct TestDevice {
        config: ConfigSpace,
        moves: Vec<(usize, Option<u64>, Option<u64>)>,
        writes: Vec<(usize, u64, Vec<u8>)>,
    }

    impl TestDevice {
        fn new() -> Self {
            let ids = PciIds {
                vendor: 0x1af4,
                device: 0x1110,
                revision: 1,
                class: 0x050000,
                subsystem_vendor: 0,
                subsystem: 0,
            };
            let mut config = ConfigSpace::new(ids);
            config.add_bar(0, BarKind::Mmio32, 256).unwrap();
            config
                .add_bar(2, BarKind::Mmio64 { prefetchable: true }, 1 << 20)
                .unwrap();
            config.add_bar(4, BarKind::Io, 16).unwrap();
            TestDevice {
                config,
                moves: vec![],
                writes: vec![],
            }
        }
    }

    impl PciDevice for TestDevice {
        fn name(&self) -> &str {
            "test"
        }
        fn config(&self) -> &ConfigSpace {
            &self.config
        }
        fn config_mut(&mut self) -> &mut ConfigSpace {
            &mut self.config
        }
        fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(u8::try_from(bar).unwrap() << 4 | (offset & 0xff) as u8);
        }
        fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.writes.push((bar, offset, data.to_vec()));
        }
        fn bar_moved(&mut self, bar: usize, old: Option<u64>, new: Option<u64>) {
            self.moves.push((bar, old, new));
        }
    }

    struct Rig {
        io: Arc<Bus>,
        mmio: Arc<Bus>,
        cfg: PciConfigIo,
        dev: Arc<Mutex<TestDevice>>,
    }

    fn rig() -> Rig {
        let io = Arc::new(Bus::new(BusKind::Io));
        let mmio = Arc::new(Bus::new(BusKind::Mmio));
        let mut pci = PciBus::new(io.clone(), mmio.clone(), BarAllocator::new(1 << 30));
        pci.add_device(Some(0), Arc::new(Mutex::new(HostBridge::new())))
            .unwrap();
        let dev = Arc::new(Mutex::new(TestDevice::new()));
        assert_eq!(pci.add_device(None, dev.clone()).unwrap(), 1);
        let cfg = PciConfigIo::new(Arc::new(Mutex::new(pci)));
        Rig { io, mmio, cfg, dev }
    }

    fn cfg_read32(cfg: &mut PciConfigIo, slot: u32, reg: u32) -> u32 {
        cfg.write(0xcf8, 0, &(CONFIG_ENABLE | slot << 11 | reg).to_le_bytes());
        let mut b = [0u8; 4];
        cfg.read(0xcf8, 4, &mut b);
        u32::from_le_bytes(b)
    }

    fn cfg_write32(cfg: &mut PciConfigIo, slot: u32, reg: u32, v: u32) {
        cfg.write(0xcf8, 0, &(CONFIG_ENABLE | slot << 11 | reg).to_le_bytes());
        cfg.write(0xcf8, 4, &v.to_le_bytes());
    }

    #[test]
    fn enumeration_through_mechanism_1() {
        let mut r = rig();
        assert_eq!(cfg_read32(&mut r.cfg, 0, 0), 0x1237_8086);
        assert_eq!(cfg_read32(&mut r.cfg, 0, 8) >> 8, 0x060000);
        assert_eq!(cfg_read32(&mut r.cfg, 1, 0), 0x1110_1af4);
        assert_eq!(cfg_read32(&mut r.cfg, 2, 0), 0xffff_ffff, "empty slot");
        // Function 1 and bus 1 are empty.
        r.cfg
            .write(0xcf8, 0, &(CONFIG_ENABLE | 1 << 11 | 1 << 8).to_le_bytes());
        let mut b = [0u8; 4];
        r.cfg.read(0xcf8, 4, &mut b);
        assert_eq!(b, [0xff; 4]);
        r.cfg
            .write(0xcf8, 0, &(CONFIG_ENABLE | 1 << 16).to_le_bytes());
        r.cfg.read(0xcf8, 4, &mut b);
        assert_eq!(b, [0xff; 4]);
        // Sub-dword reads through 0xcfe.
        r.cfg
            .write(0xcf8, 0, &(CONFIG_ENABLE | 1 << 11).to_le_bytes());
        let mut w = [0u8; 2];
        r.cfg.read(0xcf8, 6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x1110);
        // Disabled config cycles read all ones.
        r.cfg.write(0xcf8, 0, &0u32.to_le_bytes());
        r.cfg.read(0xcf8, 4, &mut b);
        assert_eq!(b, [0xff; 4]);
    }

    #[test]
    fn address_register_ignores_narrow_accesses() {
        let mut r = rig();
        r.cfg.write(0xcf8, 0, &0x8000_0000u32.to_le_bytes());
        r.cfg.write(0xcf8, 3, &[0x01]);
        r.cfg.write(0xcf8, 0, &[0x12, 0x34]);
        let mut b = [0u8; 4];
        r.cfg.read(0xcf8, 0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0000);
        let mut one = [0u8; 1];
        r.cfg.read(0xcf8, 0, &mut one);
        assert_eq!(one, [0xff]);
        // A dword access straddling the end of the data window is ignored.
        let mut b4 = [0u8; 4];
        r.cfg.read(0xcf8, 6, &mut b4);
        assert_eq!(b4, [0xff; 4]);
    }

    #[test]
    fn reset_control_register() {
        let mut r = rig();
        // Without a reset handle 0xcf9 is inert.
        r.cfg.write(0xcf8, 1, &[0x06]);
        let exit = Arc::new(VmExit::new().unwrap());
        let mut cfg = PciConfigIo::new(r.cfg.bus.clone()).with_reset(exit.clone());
        cfg.write(0xcf8, 1, &[0x02]);
        cfg.write(0xcf8, 1, &[0x06, 0]);
        assert!(!exit.requested(), "only byte writes with RST_CPU reset");
        cfg.write(0xcf8, 1, &[0x06]);
        assert_eq!(exit.reason(), Some(ExitReason::Reset));
    }

    #[test]
    fn firmware_assignment_maps_bars() {
        let r = rig();
        let d = r.dev.lock().unwrap();
        let bar0 = d.config.bar_address(0).unwrap();
        let bar2 = d.config.bar_address(2).unwrap();
        let bar4 = d.config.bar_address(4).unwrap();
        assert_eq!(bar0, crate::layout::PCI_MMIO32_START);
        assert!(bar2 >= crate::layout::PCI_MMIO64_MIN_START);
        assert_eq!(bar4, crate::layout::PCI_IO_START);
        assert_eq!(d.moves.len(), 3);
        drop(d);
        let mut b = [0u8; 1];
        assert!(r.mmio.read(bar0 + 5, &mut b));
        assert_eq!(b[0], 0x05);
        assert!(r.mmio.read(bar2 + 0xfffff, &mut b));
        assert!(r.io.read(bar4 + 3, &mut b));
        assert_eq!(b[0], 0x43);
        assert!(r.io.write(bar4, &[9, 9]));
        assert_eq!(r.dev.lock().unwrap().writes, vec![(4, 0, vec![9, 9])]);
    }

    #[test]
    fn guest_relocation_moves_the_range_and_calls_the_hook() {
        let mut r = rig();
        let bar0 = u32::try_from(BAR0).unwrap();
        let old = r.dev.lock().unwrap().config.bar_address(0).unwrap();
        // Linux style: decoding off, size, program, decoding on.
        let cmd = cfg_read32(&mut r.cfg, 1, 4) & 0xffff;
        cfg_write32(&mut r.cfg, 1, 4, cmd & !0x3);
        assert!(!r.mmio.read(old, &mut [0u8; 4]), "decoding off unmaps");
        cfg_write32(&mut r.cfg, 1, bar0, 0xffff_ffff);
        assert_eq!(cfg_read32(&mut r.cfg, 1, bar0), 0xffff_ff00);
        cfg_write32(&mut r.cfg, 1, bar0, 0xd000_0000);
        cfg_write32(&mut r.cfg, 1, 4, cmd);
        assert!(r.mmio.read(0xd000_0010, &mut [0u8; 4]));
        assert!(!r.mmio.read(old, &mut [0u8; 4]));
        let moves = r.dev.lock().unwrap().moves.clone();
        assert!(moves.contains(&(0, Some(old), None)));
        assert!(moves.contains(&(0, None, Some(0xd000_0000))));
        // Moving the 64-bit BAR takes both halves.
        cfg_write32(&mut r.cfg, 1, bar0 + 8, 0x4000_000c);
        cfg_write32(&mut r.cfg, 1, bar0 + 12, 0x20);
        assert!(r.mmio.read(0x20_4000_0000, &mut [0u8; 8]));
        assert_eq!(
            r.dev.lock().unwrap().moves.last(),
            Some(&(2, Some(0x10_4000_0000), Some(0x20_4000_0000)))
        );
    }

    #[test]
    fn overlapping_bar_is_left_unmapped() {
        let mut r = rig();
        let bar0 = u32::try_from(BAR0).unwrap();
        let host_io = Arc::new(Mutex::new(HostBridgeProbe));
        r.io.insert(0xe000, 0x10, host_io).unwrap();
        cfg_write32(&mut r.cfg, 1, bar0 + 16, 0xe000);
        let last = *r.dev.lock().unwrap().moves.last().unwrap();
        assert_eq!(last, (4, Some(crate::layout::PCI_IO_START), None));
        let mut b = [0u8; 1];
        assert!(r.io.read(0xe000, &mut b));
        assert_eq!(b[0], 0x77, "the existing device keeps its ports");
    }

    struct HostBridgeProbe;
    impl BusDevice for HostBridgeProbe {
        fn read(&mut self, _b: u64, _o: u64, data: &mut [u8]) {
            data.fill(0x77);
        }
        fn write(&mut self, _b: u64, _o: u64, _d: &[u8]) {}
    }

    #[test]
    fn slot_errors() {
        let io = Arc::new(Bus::new(BusKind::Io));
        let mmio = Arc::new(Bus::new(BusKind::Mmio));
        let mut pci = PciBus::new(io, mmio, BarAllocator::new(0));
        pci.add_device(Some(3), Arc::new(Mutex::new(HostBridge::new())))
            .unwrap();
        assert_eq!(
            pci.add_device(Some(3), Arc::new(Mutex::new(HostBridge::new()))),
            Err(PciBusError::SlotInUse(3))
        );
        assert!(pci
            .add_device(Some(32), Arc::new(Mutex::new(HostBridge::new())))
            .is_err());
    }

    #[test]
    fn data_window_takes_only_accesses_inside_0xcfc_0xcff() {
        assert_eq!(data_window(4, 4), Some(0));
        assert_eq!(data_window(6, 2), Some(2));
        assert_eq!(data_window(7, 1), Some(3));
        assert_eq!(data_window(6, 4), None);
        assert_eq!(data_window(3, 1), None);
        assert_eq!(data_window(8, 1), None);
        // Truncated to 32 bits, this offset would land on 0xcfc.
        assert_eq!(data_window((1 << 32) + 4, 1), None);
    }
}
