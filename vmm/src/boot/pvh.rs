//! PVH boot: the `hvm_start_info` block (Xen's public/arch-x86/hvm/start_info.h,
//! version 1) with its memmap and module list, serialized little-endian.
//!
//! The kernel enters at its XEN_ELFNOTE_PHYS32_ENTRY address in 32-bit
//! protected mode with paging off and EBX = address of this block.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::e820::MemoryMapEntry;
use super::BootError;
use crate::layout::{PVH_MEMMAP, PVH_MEMMAP_MAX_ENTRIES, PVH_MODLIST, PVH_START_INFO};

pub const PVH_MAGIC: u32 = 0x336e_c578;
/// Version 1 added the memmap fields.
pub const PVH_VERSION: u32 = 1;
pub const START_INFO_SIZE: usize = 56;
pub const MODLIST_ENTRY_SIZE: usize = 32;
pub const MEMMAP_ENTRY_SIZE: usize = 24;

/// Where the pieces of the start info go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartInfo {
    pub cmdline_paddr: u64,
    /// (address, size) of the initramfs.
    pub initrd: Option<(u64, u64)>,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub modlist_paddr: u64,
}

impl StartInfo {
    pub fn to_bytes(&self) -> [u8; START_INFO_SIZE] {
        let mut b = [0u8; START_INFO_SIZE];
        b[0..4].copy_from_slice(&PVH_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&PVH_VERSION.to_le_bytes());
        // flags (8..12) stay 0: not a Xen privileged domain.
        let (nr_modules, modlist) = match self.initrd {
            Some(_) => (1u32, self.modlist_paddr),
            None => (0, 0),
        };
        b[12..16].copy_from_slice(&nr_modules.to_le_bytes());
        b[16..24].copy_from_slice(&modlist.to_le_bytes());
        b[24..32].copy_from_slice(&self.cmdline_paddr.to_le_bytes());
        // rsdp_paddr (32..40) stays 0: no ACPI.
        b[40..48].copy_from_slice(&self.memmap_paddr.to_le_bytes());
        b[48..52].copy_from_slice(&self.memmap_entries.to_le_bytes());
        b
    }
}

pub fn memmap_entry_bytes(e: &MemoryMapEntry) -> [u8; MEMMAP_ENTRY_SIZE] {
    let mut b = [0u8; MEMMAP_ENTRY_SIZE];
    b[0..8].copy_from_slice(&e.addr.to_le_bytes());
    b[8..16].copy_from_slice(&e.size.to_le_bytes());
    b[16..20].copy_from_slice(&e.kind.to_le_bytes());
    b
}

pub fn modlist_entry_bytes(addr: u64, size: u64) -> [u8; MODLIST_ENTRY_SIZE] {
    let mut b = [0u8; MODLIST_ENTRY_SIZE];
    b[0..8].copy_from_slice(&addr.to_le_bytes());
    b[8..16].copy_from_slice(&size.to_le_bytes());
    b
}

/// Writes start info, memmap and module list at their fixed addresses;
/// returns the start info address (the value for EBX).
pub fn write_start_info(
    mem: &GuestMemoryMmap,
    memmap: &[MemoryMapEntry],
    cmdline_paddr: u64,
    initrd: Option<(u64, u64)>,
) -> Result<u64, BootError> {
    if memmap.len() > PVH_MEMMAP_MAX_ENTRIES {
        return Err(BootError::TooManyMemmapEntries(memmap.len()));
    }
    for (i, e) in memmap.iter().enumerate() {
        let addr = PVH_MEMMAP + (i * MEMMAP_ENTRY_SIZE) as u64;
        mem.write_slice(&memmap_entry_bytes(e), GuestAddress(addr))
            .map_err(|e| BootError::GuestMemory("PVH memmap", e))?;
    }
    if let Some((addr, size)) = initrd {
        mem.write_slice(&modlist_entry_bytes(addr, size), GuestAddress(PVH_MODLIST))
            .map_err(|e| BootError::GuestMemory("PVH module list", e))?;
    }
    // reason: memmap.len() <= PVH_MEMMAP_MAX_ENTRIES, checked above.
    #[allow(clippy::cast_possible_truncation)]
    let memmap_entries = memmap.len() as u32;
    let info = StartInfo {
        cmdline_paddr,
        initrd,
        memmap_paddr: PVH_MEMMAP,
        memmap_entries,
        modlist_paddr: PVH_MODLIST,
    };
    mem.write_slice(&info.to_bytes(), GuestAddress(PVH_START_INFO))
        .map_err(|e| BootError::GuestMemory("PVH start info", e))?;
    Ok(PVH_START_INFO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::e820::{memory_map, E820_RESERVED};
    use linux_loader::loader::elf::start_info::{
        hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
    };

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn sizes_match_the_abi_headers() {
        assert_eq!(std::mem::size_of::<hvm_start_info>(), START_INFO_SIZE);
        assert_eq!(
            std::mem::size_of::<hvm_memmap_table_entry>(),
            MEMMAP_ENTRY_SIZE
        );
        assert_eq!(std::mem::size_of::<hvm_modlist_entry>(), MODLIST_ENTRY_SIZE);
    }

    #[test]
    fn start_info_in_guest_memory() {
        let mem = crate::memory::create_guest_memory(64 << 20).unwrap();
        let map = memory_map(64 << 20);
        let ebx = write_start_info(&mem, &map, 0x20000, Some((0x300_0000, 0x1234))).unwrap();
        assert_eq!(ebx, PVH_START_INFO);
        let mut b = [0u8; START_INFO_SIZE];
        mem.read_slice(&mut b, GuestAddress(ebx)).unwrap();
        assert_eq!(u32_at(&b, 0), 0x336e_c578);
        assert_eq!(u32_at(&b, 4), 1);
        assert_eq!(u32_at(&b, 12), 1, "one module");
        assert_eq!(u64_at(&b, 16), PVH_MODLIST);
        assert_eq!(u64_at(&b, 24), 0x20000);
        assert_eq!(u64_at(&b, 32), 0, "no RSDP");
        assert_eq!(u64_at(&b, 40), PVH_MEMMAP);
        assert_eq!(u32_at(&b, 48) as usize, map.len());
        let mut m = [0u8; MODLIST_ENTRY_SIZE];
        mem.read_slice(&mut m, GuestAddress(PVH_MODLIST)).unwrap();
        assert_eq!((u64_at(&m, 0), u64_at(&m, 8)), (0x300_0000, 0x1234));
        // The reserved legacy area is entry 1.
        let mut e = [0u8; MEMMAP_ENTRY_SIZE];
        mem.read_slice(&mut e, GuestAddress(PVH_MEMMAP + MEMMAP_ENTRY_SIZE as u64))
            .unwrap();
        assert_eq!(u64_at(&e, 0), 0x9fc00);
        assert_eq!(u32_at(&e, 16), E820_RESERVED);
    }

    #[test]
    fn no_initrd_means_no_modules() {
        let info = StartInfo {
            cmdline_paddr: 1,
            initrd: None,
            memmap_paddr: 2,
            memmap_entries: 3,
            modlist_paddr: 4,
        };
        let b = info.to_bytes();
        assert_eq!(u32_at(&b, 12), 0);
        assert_eq!(u64_at(&b, 16), 0);
    }

    #[test]
    fn too_many_memmap_entries_is_an_error() {
        let mem = crate::memory::create_guest_memory(1 << 20).unwrap();
        let map = vec![
            MemoryMapEntry {
                addr: 0,
                size: 1,
                kind: 1
            };
            PVH_MEMMAP_MAX_ENTRIES + 1
        ];
        assert!(matches!(
            write_start_info(&mem, &map, 0, None),
            Err(BootError::TooManyMemmapEntries(_))
        ));
    }
}
