//! Identity paging.
//!
//! `boot.S` maps the first 4 GiB with 2 MiB pages before long mode starts,
//! which covers RAM and the usual 32-bit PCI MMIO window. Every entry is
//! user-accessible (U/S=1) so code running at CPL3 can reach memory and MMIO
//! exactly like ring 0 does. [`map_identity`] extends the map for BARs a VMM
//! placed above 4 GiB.

use core::ptr::addr_of_mut;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const LARGE: u64 = 1 << 7;

/// Flags of a PML4/PDPT entry pointing at the next table.
pub const PTE_TABLE: u64 = PRESENT | WRITABLE | USER;
/// Flags of a 2 MiB page directory entry.
pub const PTE_LARGE: u64 = PRESENT | WRITABLE | USER | LARGE;

const LARGE_PAGE: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
/// Everything below this is mapped at boot.
pub const BOOT_MAPPED_END: u64 = 4 * GIB;
/// One PML4 entry (and so one PDPT) covers 512 GiB; we never need more.
const MAX_MAPPABLE: u64 = 512 * GIB;
/// Page directories available for mappings above 4 GiB (1 GiB each).
const SPARE_PDS: usize = 4;

#[repr(C, align(4096))]
struct Table([u64; 512]);

static mut SPARE: [Table; SPARE_PDS] = [const { Table([0; 512]) }; SPARE_PDS];
static mut SPARE_USED: usize = 0;

extern "C" {
    // Defined in boot.S.
    static mut ivc_pdpt: Table;
}

/// Why a range could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Beyond the 512 GiB one PDPT covers.
    TooHigh,
    /// All spare page directories are in use.
    OutOfTables,
    /// Not a memory range (an I/O BAR, or one without an address).
    NotMemory,
}

/// Makes `[addr, addr + len)` accessible at the same virtual address,
/// user-accessible, with 2 MiB pages. Ranges below 4 GiB are already mapped.
pub fn map_identity(addr: u64, len: u64) -> Result<(), MapError> {
    if len == 0 {
        return Ok(());
    }
    let end = addr.checked_add(len).ok_or(MapError::TooHigh)?;
    if end > MAX_MAPPABLE {
        return Err(MapError::TooHigh);
    }
    let mut page = addr & !(LARGE_PAGE - 1);
    let mut changed = false;
    while page < end {
        if page >= BOOT_MAPPED_END {
            let gib = (page / GIB) as usize;
            // SAFETY: single CPU, CPL0; the page tables are only modified here
            // and in boot.S. Raw pointers avoid references to static muts. A
            // new PD is fully written before the PDPT entry makes it visible.
            unsafe {
                let pdpt = addr_of_mut!(ivc_pdpt);
                if (*pdpt).0[gib] & PRESENT == 0 {
                    let used = addr_of_mut!(SPARE_USED);
                    if *used == SPARE_PDS {
                        return Err(MapError::OutOfTables);
                    }
                    let pd = addr_of_mut!(SPARE[*used]);
                    *used += 1;
                    (*pd).0 = [0; 512];
                    (*pdpt).0[gib] = pd as u64 | PTE_TABLE;
                }
                let pd = ((*pdpt).0[gib] & !0xfff) as *mut Table;
                let slot = ((page % GIB) / LARGE_PAGE) as usize;
                if (*pd).0[slot] & PRESENT == 0 {
                    (*pd).0[slot] = page | PTE_LARGE;
                    changed = true;
                }
            }
        }
        page += LARGE_PAGE;
    }
    if changed {
        // x86 does not cache not-present entries in the TLB, but reloading CR3
        // also drops paging-structure caches, which costs nothing here.
        // SAFETY: rewriting CR3 with its own value keeps the same address
        // space; only cached translations are discarded.
        unsafe {
            core::arch::asm!(
                "mov {0}, cr3",
                "mov cr3, {0}",
                out(reg) _,
                options(nostack, preserves_flags)
            );
        }
    }
    Ok(())
}
