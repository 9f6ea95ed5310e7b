//! Tier 4, the tier-2 device tests once more under the nested host's SVM
//! KVM: the same test programs (`vmm/tests/test_guest.rs`, `ivc_devices.rs`,
//! `hand_assembled_guests.rs`, built static into the nested image) with the
//! bare-metal test guest. Unlike this host's paravirtual KVM, SVM applies
//! `KVM_SET_CPUID2` and has real MSR and APIC semantics, so this checks the
//! VMM's device model against a second KVM. On a host with hardware
//! virtualization tier 2 runs there directly, and this test says so.

use std::time::Duration;

use ivc_guest_harness::{report_skip, require_vmm_env, run_scenario, Scenario, VmmBackend};

/// The tier-2 programs in the nested image (scripts/build-nested.sh,
/// TIER2_TESTS), one after the other, each test alone (`--test-threads 1`:
/// two L1 vCPUs and several VMs per test).
const PROGRAMS: [&str; 3] = ["test_guest", "ivc_devices", "hand_assembled_guests"];

#[test]
fn tier2_device_tests_pass_under_nested_svm_kvm() {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    if let VmmBackend::Direct { .. } = backend {
        report_skip(
            "this host's own KVM has hardware virtualization, where tier 2 (vmm/tests) runs directly",
        );
        return;
    }
    let mut scenario = Scenario::new();
    for p in PROGRAMS {
        scenario = scenario.host_command(
            p,
            format!(
                "cd /tmp && IVC_TEST_GUEST=/opt/ivc/tier2/ivc-test-guest IVC_VMM_BIN=/opt/ivc/bin/ivc-vmm \
                 /opt/ivc/tier2/{p} --test-threads 1"
            ),
            Duration::from_secs(600),
        );
    }
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    for p in PROGRAMS {
        let h = outcome.host(p);
        let result = h
            .output
            .lines()
            .find(|l| l.starts_with("test result:"))
            .unwrap_or("(no test result line)");
        eprintln!(
            "tier 2 under nested SVM KVM: {p}: {result} ({:.1?})",
            h.elapsed
        );
        h.assert_success();
        // Every test ran: nothing may skip for want of KVM under a real one.
        let skips: Vec<&str> = h.output.lines().filter(|l| l.contains("skipped")).collect();
        assert!(
            skips.is_empty(),
            "{p}: tests skipped under nested KVM: {skips:?}"
        );
        assert!(result.contains(" 0 failed"), "{p}: {result}");
        assert!(!result.contains(" 0 passed"), "{p}: {result}");
    }
}
