//! The guest physical memory map and port map, in one place.
//!
//! Everything that puts a structure at a fixed guest address names it here so
//! that overlaps are visible at a glance (docs/vmm.md repeats this table).

/// GDT used for the 32-bit PVH entry (the guest loads its own soon after).
pub const BOOT_GDT_START: u64 = 0x500;
/// `hvm_start_info` for the PVH entry; EBX points here.
pub const PVH_START_INFO: u64 = 0x6000;
/// `hvm_modlist_entry` array (the initramfs, if any).
pub const PVH_MODLIST: u64 = 0x6100;
/// `hvm_memmap_table_entry` array.
pub const PVH_MEMMAP: u64 = 0x6200;
/// Room for the memmap: the entries must end before the zero page.
pub const PVH_MEMMAP_MAX_ENTRIES: usize = 64;
/// `boot_params` ("zero page", 4 KiB) for the Linux boot protocol (bzImage);
/// ESI points here.
pub const ZERO_PAGE: u64 = 0x7000;
pub const ZERO_PAGE_SIZE: u64 = 0x1000;
/// Kernel command line (NUL terminated).
pub const CMDLINE_START: u64 = 0x20000;
/// x86 Linux's COMMAND_LINE_SIZE, NUL included.
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the last KiB of base memory: one of the places Linux scans for the
/// MP floating pointer, so the whole MP table lives here.
pub const MPTABLE_START: u64 = 0x9fc00;
/// End of conventional memory; 0x9fc00..0x100000 is reported as reserved.
pub const LOW_RESERVED_END: u64 = 0x10_0000;
/// Start of usable RAM above the legacy hole.
pub const HIGH_RAM_START: u64 = 0x10_0000;

/// RAM below 4 GiB stops here; the rest of the guest's RAM goes above 4 GiB.
pub const MMIO32_HOLE_START: u64 = 0xc000_0000;
/// PCI 32-bit MMIO BAR window (below the IOAPIC).
pub const PCI_MMIO32_START: u64 = 0xc000_0000;
pub const PCI_MMIO32_END: u64 = 0xfec0_0000;
/// IOAPIC and local APIC (emulated in KVM).
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// Identity map and TSS pages KVM needs on Intel hosts (real-mode emulation).
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// RAM above the hole starts at 4 GiB.
pub const RAM_ABOVE_4G_START: u64 = 0x1_0000_0000;
/// The 64-bit PCI MMIO window starts at the larger of this and the end of RAM
/// (rounded up to 1 GiB).
pub const PCI_MMIO64_MIN_START: u64 = 0x10_0000_0000;
pub const PCI_MMIO64_SIZE: u64 = 0x10_0000_0000;

/// PCI I/O BAR window (above every legacy ISA port we emulate).
pub const PCI_IO_START: u64 = 0xc000;
pub const PCI_IO_END: u64 = 0x1_0000;

/// Legacy ports.
pub const SERIAL_COM1_PORT: u64 = 0x3f8;
pub const SERIAL_COM1_IRQ: u32 = 4;
pub const I8042_DATA_PORT: u64 = 0x60;
pub const I8042_COMMAND_PORT: u64 = 0x64;
pub const DEBUG_EXIT_PORT: u64 = 0xf4;
pub const PCI_CONFIG_ADDRESS_PORT: u64 = 0xcf8;

/// GSIs 0..24 are the IOAPIC pins (0..16 also the PICs); MSI routes start after.
pub const IOAPIC_NUM_PINS: u32 = 24;
pub const FIRST_MSI_GSI: u32 = IOAPIC_NUM_PINS;

/// Hard limit on vCPUs: every CPU needs a 20-byte MP-table entry and the whole
/// table must fit in the 1 KiB at `MPTABLE_START`.
pub const MAX_VCPUS: u8 = 32;

// The fixed structures must not overlap: checked when the crate compiles.
const _: () = {
    let memmap_end = PVH_MEMMAP + 24 * PVH_MEMMAP_MAX_ENTRIES as u64;
    assert!(BOOT_GDT_START + 8 * 5 <= PVH_START_INFO);
    assert!(PVH_START_INFO + 0x38 <= PVH_MODLIST);
    assert!(PVH_MODLIST + 32 <= PVH_MEMMAP);
    assert!(memmap_end <= ZERO_PAGE);
    assert!(ZERO_PAGE + ZERO_PAGE_SIZE <= CMDLINE_START);
    assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= MPTABLE_START);
    assert!(MPTABLE_START + 1024 <= LOW_RESERVED_END);
    assert!(PCI_MMIO32_END <= IOAPIC_ADDR);
};

/// Start of the 64-bit MMIO window for a guest whose RAM ends at `ram_end`.
pub fn pci_mmio64_start(ram_end: u64) -> u64 {
    const GIB: u64 = 1 << 30;
    let rounded = ram_end.div_ceil(GIB).saturating_mul(GIB);
    rounded.max(PCI_MMIO64_MIN_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio64_window_sits_above_ram() {
        assert_eq!(pci_mmio64_start(0), PCI_MMIO64_MIN_START);
        assert_eq!(pci_mmio64_start(RAM_ABOVE_4G_START), PCI_MMIO64_MIN_START);
        let big = PCI_MMIO64_MIN_START + 5;
        assert_eq!(pci_mmio64_start(big), PCI_MMIO64_MIN_START + (1 << 30));
    }
}
