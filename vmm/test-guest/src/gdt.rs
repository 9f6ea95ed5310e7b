//! The global descriptor table and the task state segment.
//!
//! One GDT serves the whole life of the guest: `boot.S` loads it in 32-bit
//! mode (the data descriptor doubles as a flat 32-bit data segment), long mode
//! uses the 64-bit code descriptors, and [`init_tss`] adds the TSS that gives
//! the CPU a ring-0 stack for exceptions taken while running at CPL3.

use core::mem::size_of;
use core::ptr::addr_of_mut;

/// Ring-0 64-bit code.
pub const KERNEL_CS: u16 = 0x08;
/// Ring-0 data (also used as the 32-bit flat data segment during boot).
pub const KERNEL_DS: u16 = 0x10;
/// Ring-3 data, with RPL 3.
pub const USER_DS: u16 = 0x18 | 3;
/// Ring-3 64-bit code, with RPL 3.
pub const USER_CS: u16 = 0x20 | 3;
/// The 64-bit TSS (a 16-byte system descriptor, slots 5 and 6).
pub const TSS_SEL: u16 = 0x28;

const ENTRIES: usize = 7;
/// Limit field of the GDT pseudo-descriptor (bytes - 1).
pub const GDT_LIMIT: usize = ENTRIES * 8 - 1;

/// The GDT. Mutable because [`init_tss`] writes the TSS descriptor and `ltr`
/// sets its busy bit; the accessed bits are preset so the CPU never has to
/// write the other descriptors.
#[repr(C, align(16))]
pub struct Gdt([u64; ENTRIES]);

pub static mut GDT: Gdt = Gdt([
    0,
    // 64-bit code, DPL0: P, S, code+readable+accessed, L.
    0x00af_9b00_0000_ffff,
    // Data, DPL0: P, S, writable+accessed, 4 GiB flat (G, D/B) for 32-bit boot.
    0x00cf_9300_0000_ffff,
    // Data, DPL3.
    0x00cf_f300_0000_ffff,
    // 64-bit code, DPL3.
    0x00af_fb00_0000_ffff,
    // TSS, filled in by init_tss.
    0,
    0,
]);

/// Bytes of an I/O permission bitmap covering all 65536 ports, plus the
/// all-ones byte the CPU requires after it.
const IO_BITMAP_BYTES: usize = 65536 / 8 + 1;

/// The 64-bit task state segment, followed by an I/O permission bitmap.
///
/// RSP0 is the stack the CPU switches to when an exception arrives while CPL3
/// code runs. The bitmap (all zeros: every port allowed) is how CPL3 port I/O
/// works under PVM: there guest user code runs natively with the hardware
/// IOPL forced to 0 (measured: the IOPL=3 we put in RFLAGS is gone by the
/// time CPL3 code runs), and an `in`/`out` is then checked against this
/// bitmap. Elsewhere (TCG, hardware virtualization) IOPL=3 already grants
/// access and the bitmap is never consulted.
#[repr(C, packed)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
    io_bitmap: [u8; IO_BITMAP_BYTES],
}

static mut TSS: Tss = Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: core::mem::offset_of!(Tss, io_bitmap) as u16,
    io_bitmap: io_bitmap(),
};

/// Every port allowed (0 bits), then the terminating 0xff byte.
const fn io_bitmap() -> [u8; IO_BITMAP_BYTES] {
    let mut bitmap = [0; IO_BITMAP_BYTES];
    bitmap[IO_BITMAP_BYTES - 1] = 0xff;
    bitmap
}

/// Points the TSS's RSP0 at `rsp0`, installs the TSS descriptor and loads the
/// task register. Call once, at CPL0, before entering CPL3.
pub fn init_tss(rsp0: u64) {
    let tss = addr_of_mut!(TSS);
    let base = tss as u64;
    let limit = (size_of::<Tss>() - 1) as u64;
    // Available 64-bit TSS (type 9), present, DPL0.
    let low = (limit & 0xffff)
        | ((base & 0x00ff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    let high = base >> 32;
    // SAFETY: single CPU, no concurrent users of TSS/GDT; the TSS is only read
    // by the CPU on privilege changes, which cannot happen during this write
    // (we run at CPL0 with interrupts off). The raw pointer writes avoid
    // creating references to the static mut.
    unsafe {
        (*tss).rsp[0] = rsp0;
        let gdt = addr_of_mut!(GDT);
        (*gdt).0[(TSS_SEL / 8) as usize] = low;
        (*gdt).0[(TSS_SEL / 8) as usize + 1] = high;
        core::arch::asm!("ltr {0:x}", in(reg) TSS_SEL, options(nostack, preserves_flags));
    }
}
