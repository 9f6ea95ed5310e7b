//! Base address registers: sizing, and assigning addresses the way firmware
//! does when nobody did it before us.
//!
//! Sizing follows the standard protocol: with decoding turned off in the
//! command register (so a half-programmed BAR never claims addresses), write
//! all-ones, read back the mask of writable address bits, restore the
//! original value. The size is the two's complement of the mask.

use core::fmt;

use super::{command, reg, Bdf, Function};
use crate::paging::{self, MapError};
use crate::pvh::MemmapEntry;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
}

impl fmt::Display for BarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BarKind::Io => "io",
            BarKind::Mem32 => "mem32",
            BarKind::Mem64 => "mem64",
        })
    }
}

/// One implemented BAR (a 64-bit BAR occupies `index` and `index + 1`).
#[derive(Clone, Copy, Debug)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    pub prefetchable: bool,
    /// Address the BAR decodes, as read back from the device.
    pub addr: u64,
    pub size: u64,
    /// True when this guest gave the BAR its address (it read as 0).
    pub assigned_by_guest: bool,
}

impl Bar {
    /// Makes a memory BAR reachable through the identity map (a no-op below
    /// 4 GiB) and returns its address for volatile MMIO access.
    pub fn map(&self) -> Result<u64, MapError> {
        if self.kind == BarKind::Io || self.addr == 0 {
            return Err(MapError::NotMemory);
        }
        paging::map_identity(self.addr, self.size)?;
        Ok(self.addr)
    }
}

/// The BARs of one function; `None` for unimplemented slots and for the
/// upper half of a 64-bit BAR.
pub type Bars = [Option<Bar>; 6];

/// A range addresses are handed out from, bottom up.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub next: u64,
    pub end: u64,
}

/// Address windows for unassigned BARs. The defaults sit where a small
/// guest's RAM never reaches, below the IOAPIC/LAPIC at 0xfec00000, so the
/// boot-time identity map covers them.
///
/// Like firmware, the allocator never hands out a range that is already
/// taken: nothing in the loader's memory map (RAM, reserved areas) and
/// nothing [`reserve`](Allocator::reserve)d (BARs that already have an
/// address).
pub struct Allocator {
    pub io: Window,
    pub mem32: Window,
    /// Tried first for 64-bit BARs; large ones fall through to `mem64_high`.
    pub mem64: Window,
    /// Above 4 GiB; tests must `paging::map_identity` what they use there.
    pub mem64_high: Window,
    memmap: &'static [MemmapEntry],
    reserved_io: Ranges,
    reserved_mem: Ranges,
}

pub const DEFAULT_IO_BASE: u64 = 0xc000;
pub const DEFAULT_MEM32_BASE: u64 = 0xe000_0000;
pub const DEFAULT_MEM64_BASE: u64 = 0xf000_0000;
const IO_END: u64 = 0x1_0000;
const LOW_MMIO_END: u64 = 0xfec0_0000;
const HIGH_MMIO_BASE: u64 = 0x1_0000_0000;
/// The highest address `paging::map_identity` can reach (512 GiB).
const HIGH_MMIO_END: u64 = 512 << 30;
/// Preassigned BARs remembered per address space; bus 0 has at most
/// 32 devices x 8 functions x 6 BARs, but real configurations are tiny.
const MAX_RESERVED: usize = 64;

/// A fixed-capacity list of `[start, end)` ranges (no allocator here).
struct Ranges {
    ranges: [(u64, u64); MAX_RESERVED],
    len: usize,
}

impl Ranges {
    const fn new() -> Self {
        Ranges {
            ranges: [(0, 0); MAX_RESERVED],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }
}

impl Allocator {
    pub fn new(
        io_base: u64,
        mem32_base: u64,
        mem64_base: u64,
        memmap: &'static [MemmapEntry],
    ) -> Self {
        // Each window ends where the next one starts when they are in the
        // usual order; otherwise at the top of its address space.
        let mem32_end = if mem64_base > mem32_base {
            mem64_base.min(LOW_MMIO_END)
        } else {
            LOW_MMIO_END
        };
        // A 64-bit base above 4 GiB (ivc-vmm puts its window at 64 GiB)
        // makes the first window the high one.
        let mem64_end = if mem64_base >= HIGH_MMIO_BASE {
            HIGH_MMIO_END
        } else {
            LOW_MMIO_END
        };
        Allocator {
            io: Window {
                next: io_base,
                end: IO_END,
            },
            mem32: Window {
                next: mem32_base,
                end: mem32_end,
            },
            mem64: Window {
                next: mem64_base,
                end: mem64_end,
            },
            mem64_high: Window {
                next: HIGH_MMIO_BASE,
                end: HIGH_MMIO_END,
            },
            memmap,
            reserved_io: Ranges::new(),
            reserved_mem: Ranges::new(),
        }
    }

    /// Marks an already assigned BAR's range as taken. Returns false when
    /// the table is full (the range may then be handed out again).
    pub fn reserve(&mut self, bar: &Bar) -> bool {
        if bar.addr == 0 || bar.size == 0 {
            return true;
        }
        let list = if bar.kind == BarKind::Io {
            &mut self.reserved_io
        } else {
            &mut self.reserved_mem
        };
        if list.len == MAX_RESERVED {
            return false;
        }
        list.ranges[list.len] = (bar.addr, bar.addr.saturating_add(bar.size));
        list.len += 1;
        true
    }

    /// Firmware's first pass: reserves every BAR on bus 0 that already has
    /// an address (from the VMM or a BIOS), so none is handed out twice.
    /// Returns false if there were more than the table holds.
    pub fn reserve_preassigned(&mut self) -> bool {
        let mut complete = true;
        for function in super::enumerate_bus0() {
            for bar in probe(&function).iter().flatten() {
                complete &= self.reserve(bar);
            }
        }
        complete
    }

    /// An address for a BAR of `kind` and `size` (a power of two), aligned to
    /// its size, or `None` when the windows are full.
    pub fn alloc(&mut self, kind: BarKind, size: u64) -> Option<u64> {
        match kind {
            BarKind::Io => {
                let mut window = self.io;
                let found = self.take(&mut window, true, size.max(4));
                self.io = window;
                found
            }
            BarKind::Mem32 => {
                let mut window = self.mem32;
                let found = self.take(&mut window, false, size.max(16));
                self.mem32 = window;
                found
            }
            BarKind::Mem64 => {
                let (mut low, mut high) = (self.mem64, self.mem64_high);
                let found = self
                    .take(&mut low, false, size.max(16))
                    .or_else(|| self.take(&mut high, false, size.max(16)));
                (self.mem64, self.mem64_high) = (low, high);
                found
            }
        }
    }

    /// The end of the first taken range overlapping `[start, end)`.
    fn blocker(&self, io: bool, start: u64, end: u64) -> Option<u64> {
        let overlaps = |&(s, e): &(u64, u64)| s < end && start < e;
        let memmap = self
            .memmap
            .iter()
            .filter(|_| !io)
            .map(|m| (m.addr, m.addr.saturating_add(m.size)));
        let reserved = if io {
            self.reserved_io.as_slice()
        } else {
            self.reserved_mem.as_slice()
        };
        memmap
            .chain(reserved.iter().copied())
            .find(overlaps)
            .map(|(_, e)| e)
    }

    /// Carves `size` bytes aligned to `size` out of `window`, stepping over
    /// taken ranges.
    fn take(&self, window: &mut Window, io: bool, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let align = |addr: u64| addr.checked_add(size - 1).map(|a| a & !(size - 1));
        let mut start = align(window.next)?;
        // Every step moves `start` past the end of one taken range, and no
        // range can block twice, so this many steps always suffice.
        let ranges = self.memmap.len() + self.reserved_io.len + self.reserved_mem.len;
        for _ in 0..=ranges {
            let end = start.checked_add(size)?;
            if end > window.end {
                return None;
            }
            match self.blocker(io, start, end) {
                None => {
                    window.next = end;
                    return Some(start);
                }
                Some(blocked_until) => start = align(blocked_until)?,
            }
        }
        None
    }
}

/// Writes all-ones to the BAR dword at `offset`, returns what sticks, and
/// restores the original value.
fn size_mask(bdf: Bdf, offset: u8, original: u32) -> u32 {
    bdf.write32(offset, 0xffff_ffff);
    let mask = bdf.read32(offset);
    bdf.write32(offset, original);
    mask
}

/// Which BARs [`setup`] gives an address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Assign {
    /// Only size; leave every BAR as it is.
    Never,
    /// BARs that read as 0, like firmware on a machine nobody set up.
    Unset,
    /// Every BAR, replacing what firmware or the VMM chose (exercises the
    /// allocator and BAR relocation under QEMU, where SeaBIOS assigns all).
    All,
}

/// Sizes every BAR of `function` and leaves it as it was (addresses and
/// command register).
pub fn probe(function: &Function) -> Bars {
    let bdf = function.bdf;
    let original_command = bdf.command();
    bdf.set_command(original_command & !(command::IO | command::MEMORY));
    let bars = size_all(function);
    bdf.set_command(original_command);
    bars
}

/// Sizes every BAR of `function`, gives addresses from `allocator` as
/// `assign` says, and enables I/O and memory decoding for the kinds of BAR
/// that have an address, as firmware would leave them.
pub fn setup(function: &Function, allocator: &mut Allocator, assign: Assign) -> Bars {
    let bdf = function.bdf;
    let original_command = bdf.command();
    // Decoding stays off while BARs hold all-ones or half-written addresses.
    bdf.set_command(original_command & !(command::IO | command::MEMORY));
    let mut bars = size_all(function);
    for bar in bars.iter_mut().flatten() {
        let wanted = match assign {
            Assign::Never => false,
            Assign::Unset => bar.addr == 0,
            Assign::All => true,
        };
        if wanted {
            match allocator.alloc(bar.kind, bar.size) {
                Some(addr) => program(bdf, bar, addr),
                // Leave no stale address behind: that one may now be
                // another BAR's.
                None if bar.addr != 0 => program(bdf, bar, 0),
                None => {}
            }
            bar.assigned_by_guest = bar.addr != 0;
        }
    }
    let mut decode = 0;
    for bar in bars.iter().flatten().filter(|b| b.addr != 0) {
        decode |= if bar.kind == BarKind::Io {
            command::IO
        } else {
            command::MEMORY
        };
    }
    bdf.set_command(original_command | decode);
    bars
}

/// Sizes the BARs (decoding must be off) and reads their addresses.
fn size_all(function: &Function) -> Bars {
    let bdf = function.bdf;
    let mut bars: Bars = [None; 6];
    let slots = function.bar_slots();
    let mut index = 0;
    while index < slots {
        let offset = reg::BAR0 + 4 * index;
        let low = bdf.read32(offset);
        let low_mask = size_mask(bdf, offset, low);
        let bar = if low & 1 == 1 {
            // Some devices implement only 16 I/O address bits.
            let mut mask = low_mask & !0x3;
            if mask != 0 && mask & 0xffff_0000 == 0 {
                mask |= 0xffff_0000;
            }
            Bar {
                index,
                kind: BarKind::Io,
                prefetchable: false,
                addr: (low & !0x3) as u64,
                size: if mask == 0 {
                    0
                } else {
                    (!mask).wrapping_add(1) as u64
                },
                assigned_by_guest: false,
            }
        } else if (low >> 1) & 0x3 == 0x2 && index + 1 < slots {
            let high_offset = offset + 4;
            let high = bdf.read32(high_offset);
            let high_mask = size_mask(bdf, high_offset, high);
            let mut mask = (high_mask as u64) << 32 | (low_mask & !0xf) as u64;
            // A device that hardwires the upper half decodes only below
            // 4 GiB; its size is then that of the 32-bit mask.
            if high_mask == 0 && mask != 0 {
                mask |= 0xffff_ffff_0000_0000;
            }
            Bar {
                index,
                kind: BarKind::Mem64,
                prefetchable: low & 0x8 != 0,
                addr: (high as u64) << 32 | (low & !0xf) as u64,
                size: if mask == 0 {
                    0
                } else {
                    (!mask).wrapping_add(1)
                },
                assigned_by_guest: false,
            }
        } else {
            let mask = low_mask & !0xf;
            Bar {
                index,
                kind: BarKind::Mem32,
                prefetchable: low & 0x8 != 0,
                addr: (low & !0xf) as u64,
                size: if mask == 0 {
                    0
                } else {
                    (!mask).wrapping_add(1) as u64
                },
                assigned_by_guest: false,
            }
        };
        let width = if bar.kind == BarKind::Mem64 { 2 } else { 1 };
        if bar.size != 0 {
            bars[index as usize] = Some(bar);
        }
        index += width;
    }
    bars
}

/// Writes `addr` into the BAR and records what the device reports back.
fn program(bdf: Bdf, bar: &mut Bar, addr: u64) {
    let offset = reg::BAR0 + 4 * bar.index;
    // The low bits of a BAR are read-only type flags; writing zeros there is
    // what the specification expects.
    bdf.write32(offset, addr as u32);
    if bar.kind == BarKind::Mem64 {
        bdf.write32(offset + 4, (addr >> 32) as u32);
    }
    let low = bdf.read32(offset);
    bar.addr = match bar.kind {
        BarKind::Io => (low & !0x3) as u64,
        BarKind::Mem32 => (low & !0xf) as u64,
        BarKind::Mem64 => (bdf.read32(offset + 4) as u64) << 32 | (low & !0xf) as u64,
    };
}
