//! Firmware-style BAR placement.
//!
//! Our guests have no BIOS to assign BARs, so the VMM does it when a device
//! is added: naturally aligned addresses from one window per BAR type.
//! Guests may move them later; the bus follows.

use crate::layout;

use super::config_space::BarKind;

/// A bump allocator for naturally aligned blocks in `[next, end)`.
#[derive(Debug, Clone)]
pub struct WindowAllocator {
    next: u64,
    end: u64,
}

impl WindowAllocator {
    pub fn new(start: u64, end: u64) -> Self {
        WindowAllocator { next: start, end }
    }

    /// A `size`-aligned block of `size` bytes (size a power of two).
    pub fn allocate(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let addr = self.next.checked_next_multiple_of(size)?;
        let end = addr.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(addr)
    }
}

/// One window per BAR type.
#[derive(Debug, Clone)]
pub struct BarAllocator {
    io: WindowAllocator,
    mmio32: WindowAllocator,
    mmio64: WindowAllocator,
}

impl BarAllocator {
    /// Windows for a guest whose RAM ends at `ram_end`.
    pub fn new(ram_end: u64) -> Self {
        let mmio64 = layout::pci_mmio64_start(ram_end);
        BarAllocator {
            io: WindowAllocator::new(layout::PCI_IO_START, layout::PCI_IO_END),
            mmio32: WindowAllocator::new(layout::PCI_MMIO32_START, layout::PCI_MMIO32_END),
            mmio64: WindowAllocator::new(mmio64, mmio64 + layout::PCI_MMIO64_SIZE),
        }
    }

    pub fn allocate(&mut self, kind: BarKind, size: u64) -> Option<u64> {
        match kind {
            BarKind::Io => self.io.allocate(size),
            BarKind::Mmio32 => self.mmio32.allocate(size),
            BarKind::Mmio64 { .. } => self.mmio64.allocate(size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_bounded() {
        let mut w = WindowAllocator::new(0x1100, 0x4000);
        assert_eq!(w.allocate(0x100), Some(0x1100));
        assert_eq!(w.allocate(0x1000), Some(0x2000));
        assert_eq!(w.allocate(0x4), Some(0x3000));
        assert_eq!(w.allocate(0x1000), None);
        assert_eq!(w.allocate(3), None);
    }

    #[test]
    fn each_kind_uses_its_window() {
        let mut a = BarAllocator::new(2 << 30);
        assert_eq!(a.allocate(BarKind::Io, 0x20), Some(layout::PCI_IO_START));
        assert_eq!(
            a.allocate(BarKind::Mmio32, 0x1000),
            Some(layout::PCI_MMIO32_START)
        );
        let p = a
            .allocate(BarKind::Mmio64 { prefetchable: true }, 1 << 30)
            .unwrap();
        assert!(p >= layout::PCI_MMIO64_MIN_START && p % (1 << 30) == 0);
    }
}
