//! Tier 3, `shm-irq`: two Linux guests with QEMU's `ivshmem-doorbell`
//! connected to our rendezvous server (ivshmem-server protocol). The driver
//! runs in doorbell mode: a writer rings the reader's doorbell only when the
//! reader asked for it, and the reader sleeps until the MSI-X interrupt. The
//! streams must arrive intact and each guest must have taken doorbell
//! interrupts (its `/proc/interrupts` line for `ivc`).

use std::time::Duration;

use ivc_guest_harness::{require_guest_env, run_guests, GuestSpec};
use ivc_guest_tests::channel_env::ChannelEnv;
use ivc_guest_tests::guest_sh::{COUNT_IRQS, DMESG_IVC, INSMOD};
use ivc_guest_tests::report::irqs;
use ivc_guest_tests::transfer::{assert_streams_match, script, Flow, Side, Transfer};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

#[test]
fn doorbell_streams_each_way_and_duplex() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let env = ChannelEnv::doorbell(4 << 20);
    let plan = [
        Transfer::new(4 * KIB, 1, Flow::AtoB),
        Transfer::new(4 * KIB, 1, Flow::BtoA),
        Transfer::new(2 * MIB, 32, Flow::BtoA),
        Transfer::new(2 * MIB, 4 * KIB, Flow::AtoB),
        Transfer::new(2 * MIB, 64 * KIB, Flow::Duplex),
        Transfer::new(64 * MIB, 64 * KIB, Flow::AtoB),
        Transfer::new(64 * MIB, 4 * KIB, Flow::BtoA),
        Transfer::new(64 * MIB, 64 * KIB, Flow::Duplex),
    ];

    let dev = env.device.clone();
    let spec = |name: &str, side: Side| {
        GuestSpec::new(
            name,
            format!(
                "{INSMOD}{}{COUNT_IRQS}{DMESG_IVC}",
                script(&plan, side, "/dev/ivc0")
            ),
        )
        .device(dev.clone())
        .timeout(Duration::from_secs(600))
    };
    let out = run_guests(&artifacts, [spec("a", Side::A), spec("b", Side::B)]).expect("guest run");
    assert_streams_match(&out[0], &out[1], &plan);
    for o in &out {
        assert!(
            o.serial_contains("doorbell interrupts (MSI-X)"),
            "driver not in doorbell mode:\n{}",
            o.report()
        );
        assert!(
            irqs(&o.serial) > 0,
            "no doorbell interrupt in {}:\n{}",
            o.name,
            o.report()
        );
    }
    env.finish();
}
