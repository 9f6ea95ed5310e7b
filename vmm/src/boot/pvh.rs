//! PVH boot: the `hvm_start_info` block (Xen's public/arch-x86/hvm/start_info.h,
//! version 1) with its memmap and module list, as linux-loader's structures
//! written by its `PvhBootConfigurator`.
//!
//! The kernel enters at its XEN_ELFNOTE_PHYS32_ENTRY address in 32-bit
//! protected mode with paging off and EBX = address of this block.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::e820::MemoryMapEntry;
use super::BootError;
use crate::layout::{PVH_MEMMAP, PVH_MEMMAP_MAX_ENTRIES, PVH_MODLIST, PVH_START_INFO};

pub const PVH_MAGIC: u32 = 0x336e_c578;
/// Version 1 added the memmap fields.
pub const PVH_VERSION: u32 = 1;

/// The start info for `memmap_entries` entries at `PVH_MEMMAP` and, with an
/// initramfs, one module at `PVH_MODLIST`.
pub fn start_info(cmdline_paddr: u64, memmap_entries: u32, initrd: bool) -> hvm_start_info {
    let (nr_modules, modlist_paddr) = if initrd { (1, PVH_MODLIST) } else { (0, 0) };
    hvm_start_info {
        magic: PVH_MAGIC,
        version: PVH_VERSION,
        // Not a Xen privileged domain.
        flags: 0,
        nr_modules,
        modlist_paddr,
        cmdline_paddr,
        // No ACPI.
        rsdp_paddr: 0,
        memmap_paddr: PVH_MEMMAP,
        memmap_entries,
        reserved: 0,
    }
}

pub fn memmap_entry(e: &MemoryMapEntry) -> hvm_memmap_table_entry {
    hvm_memmap_table_entry {
        addr: e.addr,
        size: e.size,
        type_: e.kind,
        reserved: 0,
    }
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
    // reason: memmap.len() <= PVH_MEMMAP_MAX_ENTRIES, checked above.
    #[allow(clippy::cast_possible_truncation)]
    let memmap_entries = memmap.len() as u32;
    let info = start_info(cmdline_paddr, memmap_entries, initrd.is_some());
    let mut params = BootParams::new(&info, GuestAddress(PVH_START_INFO));
    let entries: Vec<hvm_memmap_table_entry> = memmap.iter().map(memmap_entry).collect();
    params.set_sections(&entries, GuestAddress(PVH_MEMMAP));
    if let Some((paddr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr,
            size,
            cmdline_paddr: 0,
            reserved: 0,
        };
        params.set_modules(&[module], GuestAddress(PVH_MODLIST));
    }
    PvhBootConfigurator::write_bootparams(&params, mem)
        .map_err(|e| BootError::Configurator("PVH start info", e))?;
    Ok(PVH_START_INFO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::e820::{memory_map, E820_RESERVED};
    use vm_memory::{ByteValued, Bytes};

    /// Sizes in Xen's start_info.h ABI.
    const START_INFO_SIZE: usize = 56;
    const MODLIST_ENTRY_SIZE: usize = 32;
    const MEMMAP_ENTRY_SIZE: usize = 24;

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
        let info = start_info(1, 3, false);
        let b = info.as_slice();
        assert_eq!(u32_at(b, 12), 0);
        assert_eq!(u64_at(b, 16), 0);
        // And none in guest memory either: the module list stays untouched.
        let mem = crate::memory::create_guest_memory(1 << 20).unwrap();
        mem.write_slice(&[0xa5; MODLIST_ENTRY_SIZE], GuestAddress(PVH_MODLIST))
            .unwrap();
        write_start_info(&mem, &memory_map(1 << 20), 0x20000, None).unwrap();
        let mut s = [0u8; START_INFO_SIZE];
        mem.read_slice(&mut s, GuestAddress(PVH_START_INFO))
            .unwrap();
        assert_eq!((u32_at(&s, 12), u64_at(&s, 16)), (0, 0));
        let mut m = [0u8; MODLIST_ENTRY_SIZE];
        mem.read_slice(&mut m, GuestAddress(PVH_MODLIST)).unwrap();
        assert_eq!(m, [0xa5; MODLIST_ENTRY_SIZE]);
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
