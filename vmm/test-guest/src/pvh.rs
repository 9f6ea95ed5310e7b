//! The PVH start info (`struct hvm_start_info`, Xen's
//! `xen/include/public/arch-x86/hvm/start_info.h`), version 0 and 1.
//!
//! The loader is not fully trusted: every address and count is checked
//! before it is dereferenced, and the command line is bounded.

use core::mem::size_of;

const MAGIC: u32 = 0x336e_c578;
/// Longest command line we read; more than any test needs.
const MAX_CMDLINE: usize = 4096;
/// More entries than any VMM produces; bounds a corrupt count.
const MAX_MEMMAP: u32 = 128;

#[repr(C)]
struct RawStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    // Version 1 and later:
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// One `hvm_memmap_table_entry`. Types follow the E820 numbering.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}

/// E820 type of usable RAM.
pub const MEMMAP_RAM: u32 = 1;

/// What the loader told us, validated.
pub struct StartInfo {
    pub paddr: u64,
    pub version: u32,
    /// Empty when the loader gave none (or an unreadable one).
    pub cmdline: &'static str,
    /// Empty for version 0 start info.
    pub memmap: &'static [MemmapEntry],
    pub rsdp_paddr: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvhError {
    /// EBX pointed outside the identity-mapped memory (or was 0).
    BadAddress(u64),
    BadMagic(u32),
}

/// True when `[addr, addr + len)` lies inside the memory `boot.S` mapped,
/// so dereferencing it cannot fault.
fn is_mapped(addr: u64, len: u64) -> bool {
    addr != 0
        && addr
            .checked_add(len)
            .is_some_and(|end| end <= crate::paging::BOOT_MAPPED_END)
}

/// Reads the start info at guest-physical `paddr` (from EBX at entry).
pub fn parse(paddr: u64) -> Result<StartInfo, PvhError> {
    if !is_mapped(paddr, size_of::<RawStartInfo>() as u64) {
        return Err(PvhError::BadAddress(paddr));
    }
    // SAFETY: the range is identity-mapped (checked above); the ABI does not
    // promise alignment, hence the unaligned read. We copy the structure out
    // once and validate the copy.
    let raw = unsafe { core::ptr::read_unaligned(paddr as *const RawStartInfo) };
    if raw.magic != MAGIC {
        return Err(PvhError::BadMagic(raw.magic));
    }
    let _ = (raw.flags, raw.nr_modules, raw.modlist_paddr, raw.reserved);
    Ok(StartInfo {
        paddr,
        version: raw.version,
        cmdline: read_cmdline(raw.cmdline_paddr),
        memmap: if raw.version >= 1 {
            read_memmap(raw.memmap_paddr, raw.memmap_entries)
        } else {
            &[]
        },
        rsdp_paddr: raw.rsdp_paddr,
    })
}

fn read_cmdline(paddr: u64) -> &'static str {
    if paddr == 0 {
        return "";
    }
    let mut len = 0;
    while len < MAX_CMDLINE && is_mapped(paddr + len as u64, 1) {
        // SAFETY: the byte is inside the identity map (checked in the loop
        // condition); reading memory has no side effects.
        let byte = unsafe { core::ptr::read_volatile((paddr + len as u64) as *const u8) };
        if byte == 0 {
            break;
        }
        len += 1;
    }
    // SAFETY: the `len` bytes were just read one by one, so they are mapped;
    // nothing in this guest writes the loader's command line, so the
    // 'static shared borrow stays valid.
    let bytes = unsafe { core::slice::from_raw_parts(paddr as *const u8, len) };
    // A command line that is not UTF-8 cannot hold our ASCII parameters.
    core::str::from_utf8(bytes).unwrap_or("")
}

/// The memory map as a slice. Loaders place it 8-byte aligned (Xen, QEMU,
/// ivc-vmm); a misaligned one is treated as absent rather than copied, which
/// keeps this allocation-free.
fn read_memmap(paddr: u64, entries: u32) -> &'static [MemmapEntry] {
    let entries = entries.min(MAX_MEMMAP) as usize;
    let bytes = (entries * size_of::<MemmapEntry>()) as u64;
    if entries == 0 || !is_mapped(paddr, bytes) || paddr % 8 != 0 {
        return &[];
    }
    // SAFETY: mapped and aligned (checked above); MemmapEntry is plain data
    // valid for any bit pattern; nothing in the guest writes this table.
    unsafe { core::slice::from_raw_parts(paddr as *const MemmapEntry, entries) }
}

impl StartInfo {
    /// Finds `len` bytes of usable RAM at or above `min_addr`, aligned to
    /// `align` (a power of two), inside one memory map entry.
    pub fn find_ram(&self, min_addr: u64, len: u64, align: u64) -> Option<u64> {
        self.memmap
            .iter()
            .filter(|e| e.kind == MEMMAP_RAM)
            .find_map(|e| {
                let start = e.addr.max(min_addr).checked_add(align - 1)? & !(align - 1);
                let end = e.addr.checked_add(e.size)?;
                (start.checked_add(len)? <= end).then_some(start)
            })
    }
}
