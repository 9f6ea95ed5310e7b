//! Initial vCPU state: CPUID, MSRs, registers, local APIC; and a report of
//! a running vCPU's interrupt state (`state_report`).
//!
//! Order matters: CPUID first (KVM validates MSRs and control registers
//! against it), then MSRs, then registers and special registers, FPU, LAPIC.

pub mod cpuid;
pub mod lapic;
pub mod msrs;
pub mod regs;
pub mod state_report;
