//! Tier 4, Linux in ivc-vmm booted from the bzImage (the Linux 32-bit boot
//! protocol) instead of the PVH vmlinux the other `vmm_*` tests boot: two
//! guests load `ivc.ko` and move checked streams over `shm-irq` (every byte
//! compared, MSI-X interrupts taken), and each guest's own zero page shows
//! it came in through the boot protocol (loader type 0xff, ours; a PVH boot
//! gets the 0xb0 the kernel's own PVH code writes there).

use std::time::Duration;

use ivc_guest_harness::{require_vmm_env, run_scenario, KernelImage, Scenario};
use ivc_guest_tests::report::{irqs, value};
use ivc_guest_tests::transfer::{assert_streams_match, xfer_lines, Flow, Side, Transfer};
use ivc_guest_tests::vmm_channel::Channel;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Small calls each way, then a 2 MiB duplex stream.
const PLAN: &[Transfer] = &[
    Transfer::new(4 * KIB, 1, Flow::AtoB),
    Transfer::new(4 * KIB, 4 * KIB, Flow::BtoA),
    Transfer::new(2 * MIB, 64 * KIB, Flow::Duplex),
];

/// Prints the uptime at the command's start, and `type_of_loader` (offset
/// 0x210 of the zero page, which the kernel exports in sysfs) as two hex
/// digits.
const BOOT_FACTS: &str = "echo IVC_UPTIME=$(cut -d' ' -f1 /proc/uptime)\n\
     echo IVC_LOADER=$(od -An -tx1 -j528 -N1 /sys/kernel/boot_params/data | tr -d ' ')\n";

#[test]
fn bzimage_guests_move_checked_streams_over_shm_irq() {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    let ch = Channel::ShmIrq;
    let spec = |name: &str, side: Side| {
        ch.transfer_guest(name, PLAN, side, BOOT_FACTS, Duration::from_secs(300))
    };
    let scenario = ch
        .with_server(Scenario::new())
        .guest(spec("a", Side::A))
        .and_then(|s| s.guest(spec("b", Side::B)))
        .expect("valid scenario")
        .kernel(KernelImage::BzImage)
        .fail_fast();
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    let (a, b) = (outcome.guest("a"), outcome.guest("b"));
    assert_streams_match(a, b, PLAN);
    for g in [a, b] {
        assert_eq!(
            value(&g.serial, "IVC_LOADER"),
            Some("ff"),
            "guest {} was not booted through the Linux boot protocol:\n{}",
            g.name,
            g.report()
        );
        assert!(
            irqs(&g.serial) > 0,
            "no MSI-X interrupt in {}:\n{}",
            g.name,
            g.report()
        );
        eprintln!(
            "vmm_bzimage: guest {} at userspace after {} s of guest uptime, whole run {:.1?}; {}",
            g.name,
            value(&g.serial, "IVC_UPTIME").unwrap_or("?"),
            g.elapsed,
            outcome.backend
        );
    }
    for l in xfer_lines(&a.serial) {
        eprintln!(
            "vmm_bzimage: a {} {} bytes at {} MiB/s",
            l.dir, l.bytes, l.mib_s
        );
    }
}
