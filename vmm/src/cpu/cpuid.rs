//! CPUID for each vCPU: KVM_GET_SUPPORTED_CPUID, adjusted per CPU.

use kvm_bindings::kvm_cpuid_entry2;

/// Leaf 1 ECX bit 31: "running under a hypervisor".
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX bit 24: the local APIC timer has TSC-deadline mode.
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 EDX bit 28: HTT (EBX[23:16] is valid).
const LEAF1_EDX_HTT: u32 = 1 << 28;

/// Adjusts KVM's supported CPUID for vCPU `cpu_id` of `num_cpus`:
/// the initial APIC ID (leaf 1 EBX[31:24], leaves 0xb/0x1f EDX) must equal
/// the APIC ID the MP table gives this CPU, the logical-processor count must
/// cover all CPUs, and the hypervisor bit tells the guest it is virtualized.
///
/// `tsc_deadline` (KVM has `KVM_CAP_TSC_DEADLINE_TIMER`; its in-kernel
/// LAPIC emulates the mode, but `KVM_GET_SUPPORTED_CPUID` leaves the bit to
/// the VMM) advertises TSC-deadline mode. A Linux guest then programs its
/// timer in TSC ticks and skips calibrating the LAPIC timer against the PIT,
/// which fails under nested virtualization ("APIC timer disabled due to
/// verification failure") and leaves it on the PIT broadcast.
pub fn filter(entries: &mut [kvm_cpuid_entry2], cpu_id: u8, num_cpus: u8, tsc_deadline: bool) {
    for e in entries.iter_mut() {
        match e.function {
            1 => {
                e.ebx =
                    (e.ebx & 0x0000_ffff) | (u32::from(cpu_id) << 24) | (u32::from(num_cpus) << 16);
                e.ecx |= LEAF1_ECX_HYPERVISOR;
                if tsc_deadline {
                    e.ecx |= LEAF1_ECX_TSC_DEADLINE;
                }
                if num_cpus > 1 {
                    e.edx |= LEAF1_EDX_HTT;
                }
            }
            0xb | 0x1f => e.edx = u32::from(cpu_id),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apic_ids_and_hypervisor_bit() {
        let mut v = vec![
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xff55_1234,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                edx: 7,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 7,
                ebx: 0xabcd,
                ..Default::default()
            },
        ];
        let mut without = v.clone();
        filter(&mut v, 3, 4, true);
        assert_eq!(v[0].ebx, 0x0304_1234);
        assert_ne!(v[0].ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(v[0].ecx & LEAF1_ECX_TSC_DEADLINE, 0);
        filter(&mut without, 3, 4, false);
        assert_eq!(
            without[0].ecx & LEAF1_ECX_TSC_DEADLINE,
            0,
            "only when KVM has it"
        );
        assert_ne!(v[0].edx & LEAF1_EDX_HTT, 0);
        assert_eq!(v[1].edx, 3);
        assert_eq!(v[2].ebx, 0xabcd, "other leaves untouched");
    }
}
