//! Counting interrupt handlers for interrupt tests (MSI-X doorbells).
//!
//! [`FIRST_VECTOR`]..[`FIRST_VECTOR`] + [`VECTORS`] count their arrivals and
//! remember the TSC of the latest one; tests point MSI-X entries at them and
//! wait with [`wait_for`]. Interrupts stay disabled outside [`wait_for`].

use core::ptr::{addr_of, read_volatile};

use crate::{apic, idt, pic, tsc};

/// The first IDT vector with a counting handler (above the 32 exceptions).
pub const FIRST_VECTOR: u8 = 0x40;
/// How many consecutive vectors count.
pub const VECTORS: usize = 32;

static mut COUNT: [u64; VECTORS] = [0; VECTORS];
static mut TSC: [u64; VECTORS] = [0; VECTORS];

core::arch::global_asm!(
    include_str!("irq.S"),
    count = sym COUNT,
    tsc = sym TSC,
    eoi = const apic::EOI,
    options(att_syntax)
);

extern "C" {
    // Handler addresses (irq.S).
    static ivc_irq_stubs: [u64; VECTORS];
    fn ivc_irq_spurious();
}

/// Silences the legacy PICs and installs the counting handlers and the
/// spurious-interrupt handlers.
pub fn init() {
    pic::disable();
    for vector in pic::BASE..pic::BASE + 16 {
        idt::set_gate(vector, ivc_irq_spurious as *const () as u64);
    }
    // SAFETY: a read-only table of VECTORS entries defined in irq.S.
    let stubs = unsafe { &*addr_of!(ivc_irq_stubs) };
    for (n, &stub) in stubs.iter().enumerate() {
        idt::set_gate(FIRST_VECTOR + n as u8, stub);
    }
    idt::set_gate(apic::SPURIOUS_VECTOR, ivc_irq_spurious as *const () as u64);
}

/// Arrivals on vector `FIRST_VECTOR + n` so far.
pub fn count(n: usize) -> u64 {
    // SAFETY: in bounds (indexing panics otherwise); the handlers write with
    // single instructions, so a volatile read sees a whole value.
    unsafe { read_volatile(addr_of!(COUNT[n])) }
}

/// Where [`count`] of vector `FIRST_VECTOR + n` lives (for a CPL0 service
/// that must read it with interrupts off).
pub fn count_ptr(n: usize) -> *const u64 {
    // SAFETY: only the address is taken; indexing panics out of bounds.
    unsafe { addr_of!(COUNT[n]) }
}

/// TSC at the latest arrival on vector `FIRST_VECTOR + n` (0 if none).
pub fn last_tsc(n: usize) -> u64 {
    // SAFETY: as in `count`.
    unsafe { read_volatile(addr_of!(TSC[n])) }
}

/// Enables interrupts until vector `FIRST_VECTOR + n` has counted `target`
/// arrivals or `timeout_cycles` TSC cycles have passed. Returns whether the
/// target was reached. Interrupts are off again on return.
pub fn wait_for(n: usize, target: u64, timeout_cycles: u64) -> bool {
    let start = tsc::rdtsc();
    // SAFETY: every vector a test can route to has a handler (init), the
    // rest of the IDT reports; STI only allows delivery.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    let reached = spin_until(n, target, start, timeout_cycles);
    // SAFETY: CLI only blocks delivery again.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    reached
}

/// Spins until vector `FIRST_VECTOR + n` has counted `target` arrivals or
/// more than `timeout_cycles` TSC cycles have passed since `start`; whether
/// the target was reached. Leaves the interrupt flag alone, so CPL3 code
/// that runs with interrupts on waits with it too.
pub fn spin_until(n: usize, target: u64, start: u64, timeout_cycles: u64) -> bool {
    loop {
        if count(n) >= target {
            return true;
        }
        if tsc::rdtsc().wrapping_sub(start) > timeout_cycles {
            return false;
        }
        core::hint::spin_loop();
    }
}
