//! Tier 4, data between two Linux guests in ivc-vmm over each channel kind:
//! checked streams each way and duplex, 4 KiB and 2 MiB, in 1 B, 4 KiB and
//! 64 KiB calls, every byte compared (FNV-1a of each stream on both sides,
//! and `ivc-xfer recv` checks each byte against the sender's generator).
//! Over `pio` this is the driver's port-I/O transport end to end, in each of
//! its modes (descriptor mode, the default, and string I/O, forced with
//! `pio_string_io=1`; each guest's log must name the mode); over `shm-irq`
//! the guests must have taken MSI-X interrupts routed by ivc-vmm.

use std::time::Duration;

use ivc_guest_harness::{require_vmm_env, run_scenario, Scenario};
use ivc_guest_tests::report::irqs;
use ivc_guest_tests::transfer::{assert_streams_match, xfer_lines, Flow, Side, Transfer};
use ivc_guest_tests::vmm_channel::Channel;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The shared-memory grid; each transfer opens the device, moves the stream
/// and closes it, so the plan also runs close, end of file and a new
/// connection between transfers (and the two programs of each side pair up
/// however their opens and closes interleave).
const SHM_PLAN: &[Transfer] = &[
    Transfer::new(4 * KIB, 1, Flow::AtoB),
    Transfer::new(4 * KIB, 1, Flow::BtoA),
    Transfer::new(4 * KIB, 4 * KIB, Flow::Duplex),
    Transfer::new(2 * MIB, 64 * KIB, Flow::AtoB),
    Transfer::new(2 * MIB, 4 * KIB, Flow::BtoA),
    Transfer::new(2 * MIB, 64 * KIB, Flow::Duplex),
];

/// Port I/O with string instructions moves 4 bytes per VM exit on the way
/// out (KVM emulates `rep outs` one element per exit), and a nested exit costs ~0.4 ms with both
/// VMs on the L1's one vCPU: 2 MiB one way took 233 s. So the 2 MiB streams
/// go both ways at once, in one duplex transfer, which covers each direction
/// at that size in half the time; 1 B and 4 KiB calls run at 4 KiB.
const PIO_PLAN: &[Transfer] = &[
    Transfer::new(4 * KIB, 1, Flow::AtoB),
    Transfer::new(4 * KIB, 1, Flow::BtoA),
    Transfer::new(4 * KIB, 4 * KIB, Flow::Duplex),
    Transfer::new(2 * MIB, 64 * KIB, Flow::Duplex),
];

fn streams(ch: Channel) {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    // Descriptor mode moves a call's bytes in one exit: the full grid.
    let plan = if ch == Channel::PioString {
        PIO_PLAN
    } else {
        SHM_PLAN
    };
    let timeout = Duration::from_secs(if ch == Channel::PioString { 1200 } else { 300 });
    let spec = |name: &str, side: Side| ch.transfer_guest(name, plan, side, "", timeout);
    let scenario = ch
        .with_server(Scenario::new())
        .guest(spec("a", Side::A))
        .and_then(|s| s.guest(spec("b", Side::B)))
        .expect("valid scenario")
        .fail_fast();
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    let (a, b) = (outcome.guest("a"), outcome.guest("b"));
    assert_streams_match(a, b, plan);
    if let Some(mode) = ch.pio_mode_log() {
        for g in [a, b] {
            assert!(g.serial_contains(mode), "not in {mode}:\n{}", g.report());
        }
    }
    if ch == Channel::ShmIrq {
        for g in [a, b] {
            assert!(
                g.serial_contains("doorbell interrupts (MSI-X)"),
                "driver not in doorbell mode:\n{}",
                g.report()
            );
            assert!(
                irqs(&g.serial) > 0,
                "no MSI-X interrupt in {}:\n{}",
                g.name,
                g.report()
            );
        }
    }
    for l in xfer_lines(&a.serial) {
        eprintln!(
            "vmm_transfer {}: a {} {} bytes at {} MiB/s",
            ch.name(),
            l.dir,
            l.bytes,
            l.mib_s
        );
    }
}

#[test]
fn pio_descriptor_streams_each_way_and_duplex() {
    streams(Channel::Pio);
}

#[test]
fn pio_string_io_streams_each_way_and_duplex() {
    streams(Channel::PioString);
}

#[test]
fn shm_poll_streams_each_way_and_duplex() {
    streams(Channel::ShmPoll);
}

#[test]
fn shm_irq_streams_each_way_and_duplex() {
    streams(Channel::ShmIrq);
}
