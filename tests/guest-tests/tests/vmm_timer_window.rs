//! Tier 4: the nested host keeps delivering timer interrupts while an L2
//! guest makes its KVM ask for interrupt windows on most VM entries.
//!
//! The bare-metal test guest's `timer-window` test (docs/test-guest.md) runs
//! a periodic local-APIC timer while it keeps interrupts off between short
//! windows, under ivc-vmm in the nested host. Its ticks are the L1's
//! hrtimer, so they stop when the L1's own timer interrupt is lost. QEMU
//! 10.0.2 as packaged lost it within seconds of this load (3 runs of 4 on
//! 2026-12-07: no tick for 10 s, the test gave up), through a lock missing
//! around one update of the vCPU's interrupt-request word in its VMRUN
//! emulation; `scripts/build-qemu.sh` builds QEMU with that lock, and this
//! test is what says the fix holds. docs/testing.md has the story.

use std::time::Duration;

use ivc_guest_harness::{report_skip, require_vmm_env, run_scenario, Scenario, VmmBackend};

/// How long the guest keeps the load up.
const SECONDS: u64 = 60;
/// A gap between ticks this long is a failure. A lost interrupt is a gap
/// that never ends; gaps of 1.5-2.5 s that ended by themselves came with
/// the fixed QEMU too when this 2-core host was busy with builds (the L1's
/// QEMU threads waiting for a core), so the limit sits above those.
const STALL_MS: u64 = 5000;

#[test]
fn timer_ticks_keep_coming_under_interrupt_window_load() {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    if let VmmBackend::Direct { .. } = backend {
        report_skip(
            "ivc-vmm runs on this host's own KVM: there is no emulated L1 whose timer \
             interrupt this test watches",
        );
        return;
    }
    let scenario = Scenario::new().host_command(
        "timer-window",
        // The guest times itself with the TSC; the L1 measured its rate at
        // boot (the guest's CPUID does not say it under ivc-vmm).
        format!(
            "khz=$(dmesg | sed -n 's/.*Refined TSC clocksource calibration: \\([0-9]*\\)\\.\\([0-9][0-9][0-9]\\) MHz.*/\\1\\2/p' | tail -n1); \
             /opt/ivc/bin/ivc-vmm run --kernel /opt/ivc/tier2/ivc-test-guest --mem 64M \
             --cmdline \"test=timer-window seconds={SECONDS} stall_ms={STALL_MS} ${{khz:+tsc_khz=$khz}}\""
        ),
        Duration::from_secs(SECONDS * 3 + 60),
    );
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    let h = outcome.host("timer-window");
    let summary = h
        .output
        .lines()
        .find(|l| l.contains("timer-window ticks="))
        .unwrap_or("(no summary line)");
    eprintln!("timer-window under the nested host: {summary}");
    assert!(
        !h.output.contains("stall:"),
        "timer ticks stopped (the L1 lost its timer interrupt?):\n{}",
        h.output
    );
    assert!(summary.contains("stalls=0"), "{}", h.output);
    h.assert_success();
}
