//! Registers for the 32-bit entry both boot protocols share (PVH and the
//! Linux 32-bit boot protocol): protected mode, paging off, interrupts off,
//! flat segments from the boot GDT (CS 0x10, data 0x18, which is also what
//! Linux's protocol names __BOOT_CS/__BOOT_DS); EBX = PVH start info, or
//! ESI = Linux zero page with EBX, EBP, EDI 0.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use crate::boot::gdt::{self, BOOT_GDT, CODE_SELECTOR, DATA_SELECTOR, TSS_SELECTOR};
use crate::boot::BootInfo;

pub const X86_CR0_PE: u64 = 1 << 0;
pub const X86_CR0_ET: u64 = 1 << 4;
/// RFLAGS bit 1 is reserved and always set.
pub const RFLAGS_RESERVED: u64 = 1 << 1;

/// General registers at the entry; everything not named is 0 (RFLAGS.IF
/// included: both protocols enter with interrupts off).
pub fn boot_regs(entry: u64, info: BootInfo) -> kvm_regs {
    let regs = kvm_regs {
        rip: entry,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    match info {
        BootInfo::Pvh { start_info } => kvm_regs {
            rbx: start_info,
            ..regs
        },
        BootInfo::Linux { zero_page } => kvm_regs {
            rsi: zero_page,
            ..regs
        },
    }
}

/// `base` is what KVM_GET_SREGS returned (keeps the APIC base and the
/// rest KVM initialized); the segment, table and control registers are set.
pub fn boot_sregs(mut s: kvm_sregs, gdt_base: u64, gdt_limit: u16) -> kvm_sregs {
    let code = gdt::segment(BOOT_GDT[2], CODE_SELECTOR);
    let data = gdt::segment(BOOT_GDT[3], DATA_SELECTOR);
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = gdt::segment(BOOT_GDT[4], TSS_SELECTOR);
    s.gdt.base = gdt_base;
    s.gdt.limit = gdt_limit;
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = X86_CR0_PE | X86_CR0_ET;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
    s
}

/// x87 control word and MXCSR at their power-on values.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_mode_without_paging() {
        let s = boot_sregs(
            kvm_sregs {
                apic_base: 0xfee0_0900,
                ..Default::default()
            },
            0x500,
            39,
        );
        assert_eq!(s.cr0 & 0x8000_0001, 1, "PE on, PG off");
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!(
            (s.cs.selector, s.cs.db, s.cs.l, s.cs.limit),
            (0x10, 1, 0, 0xffff_ffff)
        );
        assert_eq!(
            (s.ss.selector, s.ss.type_ & 0x8),
            (0x18, 0),
            "SS is a data segment"
        );
        assert_eq!((s.gdt.base, s.gdt.limit), (0x500, 39));
        assert_eq!(s.apic_base, 0xfee0_0900, "untouched");
        let r = boot_regs(0x100_0000, BootInfo::Pvh { start_info: 0x6000 });
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0000, 0x6000, 2));
        assert_eq!(r.rsi, 0);
    }

    #[test]
    fn linux_entry_has_the_zero_page_in_esi() {
        let r = boot_regs(0x10_0000, BootInfo::Linux { zero_page: 0x7000 });
        assert_eq!((r.rip, r.rsi, r.rflags), (0x10_0000, 0x7000, 2));
        assert_eq!(
            (r.rbx, r.rbp, r.rdi),
            (0, 0, 0),
            "the protocol wants them 0"
        );
    }
}
