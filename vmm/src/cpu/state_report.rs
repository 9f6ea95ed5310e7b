//! A one-line account of what a vCPU is waiting for: its run state, whether
//! it takes interrupts, what its local APIC holds and when its timer fires.
//!
//! `kill -USR1 <ivc-vmm>` logs this for every vCPU (see `machine.rs`). It
//! answers the question a stuck guest raises: is it halted with a
//! deliverable interrupt pending (IRR above PPR, IF set) that nobody
//! delivers, or is no timer armed at all, or is it armed for a time that
//! never comes? The nested-KVM test hosts, where an emulator sits under the
//! KVM that runs our guests, ask it before they kill a guest that missed
//! its deadline.

use kvm_bindings::{
    kvm_lapic_state, kvm_msr_entry, Msrs, KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED,
    KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_SIPI_RECEIVED, KVM_MP_STATE_UNINITIALIZED,
    KVM_STATE_NESTED_FORMAT_SVM, KVM_STATE_NESTED_GIF_SET,
};
use kvm_ioctls::{KvmNestedStateBuffer, VcpuFd};

use super::lapic::get_reg;
use super::msrs::MSR_IA32_TSC;

const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;

const APIC_TPR: usize = 0x80;
const APIC_PPR: usize = 0xa0;
const APIC_ISR: usize = 0x100;
const APIC_IRR: usize = 0x200;
const APIC_LVTT: usize = 0x320;
const APIC_TMICT: usize = 0x380;
const APIC_TMCCT: usize = 0x390;
const APIC_TDCR: usize = 0x3e0;

/// RFLAGS.IF
const RFLAGS_IF: u64 = 1 << 9;

/// The state of vCPU `id`, as one line. Every part that KVM refuses to
/// give says so in place; the report itself never fails.
pub fn report(id: u8, fd: &VcpuFd) -> String {
    let mut parts = vec![format!("vcpu{id} state:")];
    parts.push(match fd.get_mp_state() {
        Ok(s) => format!("mp={}", mp_state_name(s.mp_state)),
        Err(e) => format!("mp=? ({e})"),
    });
    parts.push(match fd.get_regs() {
        Ok(r) => format!(
            "rip={:#x} rflags={:#x} (IF={})",
            r.rip,
            r.rflags,
            u8::from(r.rflags & RFLAGS_IF != 0)
        ),
        Err(e) => format!("regs=? ({e})"),
    });
    parts.push(match fd.get_vcpu_events() {
        Ok(ev) => format!(
            "shadow={} irq_injected={} nmi_pending={} nmi_masked={} exception_injected={}",
            ev.interrupt.shadow,
            if ev.interrupt.injected != 0 {
                format!("vector {}", ev.interrupt.nr)
            } else {
                "none".into()
            },
            ev.nmi.pending,
            ev.nmi.masked,
            ev.exception.injected
        ),
        Err(e) => format!("events=? ({e})"),
    });
    parts.push(gif_summary(fd));
    parts.push(match fd.get_lapic() {
        Ok(l) => lapic_summary(&l),
        Err(e) => format!("lapic=? ({e})"),
    });
    parts.push(tsc_summary(fd));
    parts.join(" ")
}

/// The global interrupt flag as KVM keeps it for this vCPU (reported by
/// KVM_GET_NESTED_STATE on AMD SVM even for a vCPU that is not running a
/// nested guest). With GIF clear, KVM holds every interrupt back, whatever
/// RFLAGS.IF says; under an emulated SVM whose #VMEXIT writes a wrong
/// `int_ctl` back, that is how a guest stops taking interrupts.
fn gif_summary(fd: &VcpuFd) -> String {
    let mut state = Box::new(KvmNestedStateBuffer::empty());
    match fd.nested_state(&mut state) {
        Ok(_) if u32::from(state.format) == KVM_STATE_NESTED_FORMAT_SVM => {
            let set = u32::from(state.flags) & KVM_STATE_NESTED_GIF_SET != 0;
            format!("gif={}", if set { "set" } else { "clear" })
        }
        Ok(_) => "gif=n/a".into(),
        Err(e) => format!("gif=? ({e})"),
    }
}

fn mp_state_name(s: u32) -> String {
    match s {
        KVM_MP_STATE_RUNNABLE => "runnable".into(),
        KVM_MP_STATE_UNINITIALIZED => "uninitialized".into(),
        KVM_MP_STATE_INIT_RECEIVED => "init-received".into(),
        KVM_MP_STATE_HALTED => "halted".into(),
        KVM_MP_STATE_SIPI_RECEIVED => "sipi-received".into(),
        other => format!("{other}"),
    }
}

/// The vectors set in one of the APIC's 256-bit registers (ISR, IRR), which
/// sit as eight 32-bit words 16 bytes apart.
fn vectors(l: &kvm_lapic_state, base: usize) -> Vec<u32> {
    let mut v = Vec::new();
    for word in 0..8u32 {
        let bits = get_reg(l, base + 16 * word as usize);
        for bit in 0..32 {
            if bits & (1 << bit) != 0 {
                v.push(word * 32 + bit);
            }
        }
    }
    v
}

fn timer_mode(lvtt: u32) -> &'static str {
    match (lvtt >> 17) & 3 {
        0 => "one-shot",
        1 => "periodic",
        2 => "tsc-deadline",
        _ => "reserved",
    }
}

fn lapic_summary(l: &kvm_lapic_state) -> String {
    let lvtt = get_reg(l, APIC_LVTT);
    format!(
        "lapic: tpr={:#x} ppr={:#x} isr={:?} irr={:?} lvtt={lvtt:#x} ({}, vector {}{}) tmict={} tmcct={} tdcr={:#x}",
        get_reg(l, APIC_TPR),
        get_reg(l, APIC_PPR),
        vectors(l, APIC_ISR),
        vectors(l, APIC_IRR),
        timer_mode(lvtt),
        lvtt & 0xff,
        if lvtt & (1 << 16) != 0 { ", masked" } else { "" },
        get_reg(l, APIC_TMICT),
        get_reg(l, APIC_TMCCT),
        get_reg(l, APIC_TDCR),
    )
}

/// The guest's TSC and its TSC-deadline timer, and how far apart they are:
/// a deadline far ahead of the TSC is a timer that will not fire soon.
fn tsc_summary(fd: &VcpuFd) -> String {
    let entry = |index| kvm_msr_entry {
        index,
        ..Default::default()
    };
    let Ok(mut msrs) = Msrs::from_entries(&[entry(MSR_IA32_TSC), entry(MSR_IA32_TSC_DEADLINE)])
    else {
        return "tsc=? (MSR list)".into();
    };
    match fd.get_msrs(&mut msrs) {
        Ok(2) => {
            let e = msrs.as_slice();
            let (tsc, deadline) = (e[0].data, e[1].data);
            let until = if deadline == 0 {
                "disarmed".to_string()
            } else {
                format!("{} cycles ahead", i128::from(deadline) - i128::from(tsc))
            };
            format!("tsc={tsc} tsc_deadline={deadline} ({until})")
        }
        Ok(n) => format!("tsc=? (KVM returned {n} of 2 MSRs)"),
        Err(e) => format!("tsc=? ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_reg(l: &mut kvm_lapic_state, off: usize, v: u32) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            l.regs[off + i] = b as _;
        }
    }

    #[test]
    fn irr_and_isr_vectors_are_decoded_from_their_eight_words() {
        let mut l = kvm_lapic_state::default();
        with_reg(&mut l, APIC_IRR + 16 * 7, 1 << 12); // vector 236
        with_reg(&mut l, APIC_IRR, 1 << 3); // vector 3
        with_reg(&mut l, APIC_ISR + 16, 1); // word 1, bit 0: vector 32
        assert_eq!(vectors(&l, APIC_IRR), vec![3, 236]);
        assert_eq!(vectors(&l, APIC_ISR), vec![32]);
    }

    #[test]
    fn the_lapic_summary_names_the_timer_mode_and_mask() {
        let mut l = kvm_lapic_state::default();
        with_reg(&mut l, APIC_LVTT, 0x0004_00ec);
        with_reg(&mut l, APIC_TPR, 0x10);
        let s = lapic_summary(&l);
        assert!(s.contains("tpr=0x10"), "{s}");
        assert!(s.contains("(tsc-deadline, vector 236)"), "{s}");
        with_reg(&mut l, APIC_LVTT, 0x0001_00ec);
        assert!(lapic_summary(&l).contains("(one-shot, vector 236, masked)"));
    }
}
