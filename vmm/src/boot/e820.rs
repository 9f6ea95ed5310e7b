//! The guest's physical memory map as the firmware would report it
//! (e820 types); PVH hands it to the kernel as the start-info memmap.

use crate::layout::{LOW_RESERVED_END, MPTABLE_START};
use crate::memory::ram_ranges;

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryMapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// RAM with the legacy area 0x9fc00..1 MiB (MP table, VGA hole, BIOS ROM)
/// cut out and reported reserved, so the kernel neither allocates over the
/// MP table nor treats the ROM hole as RAM.
pub fn memory_map(mem_size: u64) -> Vec<MemoryMapEntry> {
    let mut map = Vec::new();
    for (start, len) in ram_ranges(mem_size) {
        let end = start + len;
        if start < LOW_RESERVED_END {
            let below = end.min(MPTABLE_START);
            if below > start {
                map.push(MemoryMapEntry {
                    addr: start,
                    size: below - start,
                    kind: E820_RAM,
                });
            }
            map.push(MemoryMapEntry {
                addr: MPTABLE_START,
                size: LOW_RESERVED_END - MPTABLE_START,
                kind: E820_RESERVED,
            });
            if end > LOW_RESERVED_END {
                map.push(MemoryMapEntry {
                    addr: LOW_RESERVED_END,
                    size: end - LOW_RESERVED_END,
                    kind: E820_RAM,
                });
            }
        } else {
            map.push(MemoryMapEntry {
                addr: start,
                size: len,
                kind: E820_RAM,
            });
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_map() {
        let m = memory_map(128 << 20);
        assert_eq!(
            m,
            vec![
                MemoryMapEntry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: E820_RAM
                },
                MemoryMapEntry {
                    addr: 0x9fc00,
                    size: 0x60400,
                    kind: E820_RESERVED
                },
                MemoryMapEntry {
                    addr: 0x10_0000,
                    size: (128 << 20) - 0x10_0000,
                    kind: E820_RAM
                },
            ]
        );
    }

    #[test]
    fn large_guest_map_has_high_ram_and_no_overlaps() {
        let m = memory_map(5 << 30);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[3],
            MemoryMapEntry {
                addr: 4 << 30,
                size: 2 << 30,
                kind: E820_RAM
            }
        );
        for w in m.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr);
        }
        let ram: u64 = m
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, (5 << 30) - 0x60400);
    }
}
