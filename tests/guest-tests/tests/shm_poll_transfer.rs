//! Tier 3, `shm-poll`: two Linux guests with `ivc.ko` share one
//! `ivshmem-plain` region (no interrupts) and move byte streams through
//! `/dev/ivc0` in each direction and both at once, with several chunk sizes
//! and totals. Every byte is checked against the sender's stream by the
//! receiver, and the FNV checksums both sides print must match.

use std::time::Duration;

use ivc_guest_harness::{require_guest_env, run_guests, Device, GuestSpec, ScratchDir};
use ivc_guest_tests::guest_sh::INSMOD;
use ivc_guest_tests::transfer::{assert_streams_match, script, Flow, Side, Transfer};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

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
