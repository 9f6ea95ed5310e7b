//! Time stamp counter: cycle counts for the cost measurements.

use core::arch::asm;

/// Reads the TSC. Works at CPL3 because boot.S leaves CR4.TSD clear.
pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC only reads the counter into EDX:EAX.
    unsafe {
        asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    };
    (high as u64) << 32 | low as u64
}

/// CPUID leaf `leaf`, subleaf 0: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: CPUID only writes EAX-EDX. LLVM reserves RBX, so it cannot be
    // an operand: we swap it through a scratch register instead.
    unsafe {
        asm!(
            "mov {scratch:r}, rbx",
            "cpuid",
            "xchg {scratch:r}, rbx",
            scratch = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") 0u32 => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags)
        )
    };
    (eax, ebx, ecx, edx)
}

/// TSC frequency in kHz if the CPU (or hypervisor) tells us: the hypervisor
/// timing leaf 0x40000010 (KVM/VMware convention), then CPUID 0x15
/// (crystal ratio), then 0x16 (base MHz, Intel). `None` means unknown; the
/// cost test then reports cycles only.
///
/// Under PVM CPUID reports the host's values, which for the TSC is exactly
/// what we want.
pub fn khz() -> Option<u64> {
    let (_, _, features, _) = cpuid(1);
    let hypervisor = features & (1 << 31) != 0;
    let (max_hv, ..) = cpuid(0x4000_0000);
    if hypervisor && (0x4000_0010..0x4001_0000).contains(&max_hv) {
        let (khz, ..) = cpuid(0x4000_0010);
        if khz != 0 {
            return Some(khz as u64);
        }
    }
    let (max_std, ..) = cpuid(0);
    if max_std >= 0x15 {
        let (denominator, numerator, crystal_hz, _) = cpuid(0x15);
        if denominator != 0 && numerator != 0 && crystal_hz != 0 {
            return Some(crystal_hz as u64 * numerator as u64 / denominator as u64 / 1000);
        }
    }
    if max_std >= 0x16 {
        let (base_mhz, ..) = cpuid(0x16);
        if base_mhz != 0 {
            return Some(base_mhz as u64 * 1000);
        }
    }
    None
}
