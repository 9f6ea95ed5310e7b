//! x86 port I/O.
//!
//! Every access is a VM exit. The functions are safe to call because this
//! guest owns the whole machine and every port it touches is a device it
//! drives; callers must still only use ports whose side effects they mean.
//! At CPL3 they work because `cpl3` enters ring 3 with IOPL=3.

use core::arch::asm;

pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: `in` only reads a device register; no memory is touched.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    value
}

pub fn outb(port: u16, value: u8) {
    // SAFETY: `out` only writes a device register; no memory is touched.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as in `inb`.
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    value
}

pub fn outl(port: u16, value: u32) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    };
}
