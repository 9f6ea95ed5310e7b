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

/// `IN` from a register whose device reads or writes guest memory while it
/// handles the access (ivc-pio's descriptor `GO`): unlike [`inl`], the
/// compiler may not move memory accesses across it, so the descriptor and
/// buffer written before are in memory, and what the device wrote is read
/// after.
pub fn inl_dma(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as in `inb`; the device touches only memory the caller handed
    // it (the asm may read and write memory, so nothing is cached across).
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nostack, preserves_flags))
    };
    value
}

pub fn outl(port: u16, value: u32) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    };
}

pub fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as in `inb`.
    unsafe {
        asm!("in ax, dx", out("ax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    value
}

pub fn outw(port: u16, value: u16) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    };
}

/// `rep insb`: fills `buf` from `port` (KVM hands the VMM many bytes per
/// exit, e.g. a page).
pub fn insb(port: u16, buf: &mut [u8]) {
    // SAFETY: writes exactly buf.len() bytes to buf (RDI/RCX from the
    // slice); DF is clear per the ABI.
    unsafe {
        asm!("rep insb", in("dx") port, inout("rdi") buf.as_mut_ptr() => _,
             inout("rcx") buf.len() => _, options(nostack, preserves_flags))
    };
}

/// `rep outsb`: writes `buf` to `port`.
pub fn outsb(port: u16, buf: &[u8]) {
    // SAFETY: reads exactly buf.len() bytes from buf; DF is clear.
    unsafe {
        asm!("rep outsb", in("dx") port, inout("rsi") buf.as_ptr() => _,
             inout("rcx") buf.len() => _, options(nostack, preserves_flags, readonly))
    };
}

/// `rep outsd`: writes `buf` (a multiple of 4 bytes; the rest is ignored)
/// to `port` as dwords. KVM emulates OUTS one element per exit (only INS is
/// batched), so dwords take a quarter of the exits `rep outsb` needs.
pub fn outsd(port: u16, buf: &[u8]) {
    // SAFETY: reads exactly (buf.len() / 4) * 4 bytes from buf; DF is clear.
    unsafe {
        asm!("rep outsd", in("dx") port, inout("rsi") buf.as_ptr() => _,
             inout("rcx") buf.len() / 4 => _, options(nostack, preserves_flags, readonly))
    };
}
