//! Tier 3, `shm-poll`: two Linux guests with `ivc.ko` share one
//! `ivshmem-plain` region (no interrupts) and move byte streams through
//! `/dev/ivc0` in each direction and both at once, with several chunk sizes
//! and totals. Every byte is checked against the sender's stream by the
//! receiver, and the FNV checksums both sides print must match.

use std::time::Duration;

use ivc_guest_harness::{
    require_guest_env, run_guests, Device, GuestOutcome, GuestSpec, ScratchDir,
};
use ivc_guest_tests::guest_sh::INSMOD;
use ivc_guest_tests::transfer::{script, xfer_lines, Flow, Side, Transfer};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Asserts that every stream one side sent arrived at the other with the
/// same length and checksum.
pub fn assert_streams_match(a: &GuestOutcome, b: &GuestOutcome, plan: &[Transfer]) {
    a.assert_success();
    b.assert_success();
    for o in [a, b] {
        assert!(
            o.kernel_errors().is_empty(),
            "kernel trouble in {}:\n{}",
            o.name,
            o.report()
        );
    }
    let (la, lb) = (xfer_lines(&a.serial), xfer_lines(&b.serial));
    let expected: usize = plan
        .iter()
        .map(|t| if t.flow == Flow::Duplex { 2 } else { 1 })
        .sum();
    assert_eq!(la.len(), expected, "summary lines of A:\n{}", a.report());
    assert_eq!(lb.len(), expected, "summary lines of B:\n{}", b.report());
    let sent = |l: &[ivc_guest_tests::transfer::XferLine]| {
        l.iter()
            .filter(|x| x.dir == "sent")
            .map(|x| (x.bytes, x.fnv.clone()))
            .collect::<Vec<_>>()
    };
    let received = |l: &[ivc_guest_tests::transfer::XferLine]| {
        l.iter()
            .filter(|x| x.dir == "received")
            .map(|x| (x.bytes, x.fnv.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sent(&la),
        received(&lb),
        "A's streams differ from what B received"
    );
    assert_eq!(
        sent(&lb),
        received(&la),
        "B's streams differ from what A received"
    );
}

fn run_plan(plan: &[Transfer], shm_size: u64, timeout: Duration) {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let shm = Device::IvshmemPlain {
        mem_path: scratch.join("shm"),
        size: shm_size,
    };
    let spec = |name: &str, side: Side| {
        GuestSpec::new(name, format!("{INSMOD}{}", script(plan, side, "/dev/ivc0")))
            .device(shm.clone())
            .timeout(timeout)
    };
    let out = run_guests(&artifacts, [spec("a", Side::A), spec("b", Side::B)]).expect("guest run");
    assert_streams_match(&out[0], &out[1], plan);
}

#[test]
fn small_streams_with_tiny_chunks() {
    run_plan(
        &[
            Transfer::new(4 * KIB, 1, Flow::AtoB),
            Transfer::new(4 * KIB, 1, Flow::BtoA),
            Transfer::new(4 * KIB, 32, Flow::Duplex),
            Transfer::new(2 * MIB, 32, Flow::AtoB),
        ],
        1 << 20,
        Duration::from_secs(240),
    );
}

#[test]
fn two_mebibytes_each_way_and_duplex() {
    run_plan(
        &[
            Transfer::new(2 * MIB, 4 * KIB, Flow::AtoB),
            Transfer::new(2 * MIB, 64 * KIB, Flow::BtoA),
            Transfer::new(2 * MIB, 4 * KIB, Flow::Duplex),
        ],
        1 << 20,
        Duration::from_secs(240),
    );
}

#[test]
fn sixty_four_mebibytes_each_way_and_duplex() {
    run_plan(
        &[
            Transfer::new(64 * MIB, 64 * KIB, Flow::AtoB),
            Transfer::new(64 * MIB, 4 * KIB, Flow::BtoA),
            Transfer::new(64 * MIB, 64 * KIB, Flow::Duplex),
        ],
        4 << 20,
        Duration::from_secs(600),
    );
}
