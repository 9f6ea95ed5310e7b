//! Initial vCPU state: CPUID, MSRs, registers, local APIC.
//!
//! Order matters: CPUID first (KVM validates MSRs and control registers
//! against it), then MSRs, then registers and special registers, FPU, LAPIC.

pub mod cpuid;
pub mod lapic;
pub mod msrs;
pub mod regs;
