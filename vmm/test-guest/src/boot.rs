//! PVH boot: the ELF note, the 32-bit entry stub and the switch to long mode.
//!
//! The assembly lives in `boot.S`; this file fills in the constants it needs
//! from the Rust definitions so the selector values and the GDT exist only once
//! (in [`crate::gdt`]).

use crate::gdt;
use crate::paging;

/// Bytes of the stack the boot code and all CPL0 test code run on.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    include_str!("boot.S"),
    boot_stack_size = const BOOT_STACK_SIZE,
    kernel_cs = const gdt::KERNEL_CS,
    kernel_ds = const gdt::KERNEL_DS,
    pte_table = const paging::PTE_TABLE,
    pte_large = const paging::PTE_LARGE,
    gdt = sym gdt::GDT,
    gdt_limit = const gdt::GDT_LIMIT,
    rust_entry = sym crate::ivc_main,
    options(att_syntax)
);

extern "C" {
    // Defined by linker.ld: the first byte after the loaded image and stacks.
    static __image_end: u8;
}

/// First address above everything the image occupies (code, data, stacks).
pub fn image_end() -> u64 {
    core::ptr::addr_of!(__image_end) as u64
}
