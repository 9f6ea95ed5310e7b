//! Guest RAM: where it goes and how it is created.
//!
//! RAM fills guest physical memory from 0 up to the 32-bit MMIO hole at
//! 3 GiB; whatever does not fit continues at 4 GiB.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::layout::{MMIO32_HOLE_START, RAM_ABOVE_4G_START};

/// The guest's RAM ranges (start, length) for `mem_size` bytes of RAM.
pub fn ram_ranges(mem_size: u64) -> Vec<(u64, u64)> {
    let low = mem_size.min(MMIO32_HOLE_START);
    let mut v = vec![(0, low)];
    if mem_size > low {
        v.push((RAM_ABOVE_4G_START, mem_size - low));
    }
    v
}

/// End (exclusive) of RAM below 4 GiB.
pub fn low_ram_end(mem_size: u64) -> u64 {
    mem_size.min(MMIO32_HOLE_START)
}

/// First address above all RAM.
pub fn ram_end(mem_size: u64) -> u64 {
    ram_ranges(mem_size)
        .last()
        .map(|&(s, l)| s + l)
        .unwrap_or(0)
}

/// Anonymous private mappings backing the RAM.
pub fn create_guest_memory(
    mem_size: u64,
) -> Result<GuestMemoryMmap, vm_memory::mmap::FromRangesError> {
    // mem_size comes from the user: a range this host cannot map is an error.
    let ranges = ram_ranges(mem_size)
        .into_iter()
        .map(|(s, l)| {
            usize::try_from(l)
                .map(|l| (GuestAddress(s), l))
                .map_err(|_| vm_memory::mmap::FromRangesError::InvalidGuestRegion)
        })
        .collect::<Result<Vec<_>, _>>()?;
    GuestMemoryMmap::from_ranges(&ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_range() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(ram_end(256 << 20), 256 << 20);
    }

    #[test]
    fn large_guest_is_split_around_the_hole() {
        let r = ram_ranges(4 << 30);
        assert_eq!(r, vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
        assert_eq!(ram_end(4 << 30), 5 << 30);
        assert_eq!(low_ram_end(4 << 30), 3 << 30);
    }
}
