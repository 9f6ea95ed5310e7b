//! The local APIC, just enough to receive MSI/MSI-X interrupts: enable it,
//! know its ID (the MSI destination), acknowledge with EOI.
//!
//! xAPIC MMIO mode at the architectural default base, which every VMM we run
//! under (ivc-vmm, QEMU, with KVM's in-kernel APIC or TCG) uses. All of this
//! runs at CPL0 (MSR access).

use core::ptr::{read_volatile, write_volatile};

/// The default xAPIC base; also the MSI address prefix.
pub const BASE: u64 = 0xfee0_0000;
/// End-of-interrupt register (write 0).
pub const EOI: u64 = BASE + 0xb0;
const ID: u64 = BASE + 0x20;
const TPR: u64 = BASE + 0x80;
const SVR: u64 = BASE + 0xf0;
const LVT_TIMER: u64 = BASE + 0x320;
const TIMER_INITIAL_COUNT: u64 = BASE + 0x380;
const TIMER_DIVIDE: u64 = BASE + 0x3e0;
const LVT_TIMER_PERIODIC: u32 = 1 << 17;
const LVT_MASKED: u32 = 1 << 16;
/// TDCR value for "divide by 1".
const DIVIDE_BY_1: u32 = 0xb;
const SVR_ENABLE: u32 = 1 << 8;
/// Spurious-interrupt vector: the last one, never used for anything else.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

#[derive(Debug, Clone, Copy)]
pub enum ApicError {
    /// IA32_APIC_BASE (the value) points elsewhere, or x2APIC mode is on.
    Unsupported(u64),
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApicError::Unsupported(base) => {
                write!(f, "IA32_APIC_BASE=0x{base:x}: not an xAPIC at 0x{BASE:x}")
            }
        }
    }
}

fn read(reg: u64) -> u32 {
    // SAFETY: `reg` is one of the xAPIC registers in the identity-mapped
    // page at BASE; the APIC's MMIO is always present once enabled.
    unsafe { read_volatile(reg as *const u32) }
}

fn write(reg: u64, value: u32) {
    // SAFETY: as in `read`.
    unsafe { write_volatile(reg as *mut u32, value) }
}

fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; reading it has no
    // side effects. CPL0 only.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high,
            options(nomem, nostack, preserves_flags));
    }
    (high as u64) << 32 | low as u64
}

fn wrmsr(msr: u32, value: u64) {
    // SAFETY: only used to set the global enable bit of IA32_APIC_BASE,
    // keeping the base address. CPL0 only.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
            options(nomem, nostack, preserves_flags));
    }
}

/// Enables the local APIC in xAPIC mode at [`BASE`], accepting every
/// priority. Returns its APIC ID.
pub fn init() -> Result<u8, ApicError> {
    let base = rdmsr(IA32_APIC_BASE);
    if base & 0xf_ffff_f000 != BASE || base & APIC_BASE_X2APIC != 0 {
        return Err(ApicError::Unsupported(base));
    }
    if base & APIC_BASE_ENABLE == 0 {
        wrmsr(IA32_APIC_BASE, base | APIC_BASE_ENABLE);
    }
    write(SVR, SVR_ENABLE | SPURIOUS_VECTOR as u32);
    write(TPR, 0);
    Ok((read(ID) >> 24) as u8)
}

/// Starts the local APIC timer in periodic mode: vector `vector` every
/// `count` bus cycles (divide by 1; KVM's and QEMU's APIC bus runs at
/// 1 GHz, so a count is nanoseconds there).
pub fn start_periodic_timer(vector: u8, count: u32) {
    write(TIMER_DIVIDE, DIVIDE_BY_1);
    write(LVT_TIMER, LVT_TIMER_PERIODIC | vector as u32);
    write(TIMER_INITIAL_COUNT, count);
}

/// Stops and masks the local APIC timer.
pub fn stop_timer() {
    write(TIMER_INITIAL_COUNT, 0);
    write(LVT_TIMER, LVT_MASKED);
}
