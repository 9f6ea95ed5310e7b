//! Tier 3, the mapped path (docs/driver.md, "Mapping the ring"): a process
//! maps `/dev/ivc0`'s ring (exclusive open + `mmap`, the `ivc-mapped` crate)
//! and runs the channel itself.
//!
//! - One guest moves its streams through the mapping (`ivc-xfer --mmap`),
//!   the other with plain `read`/`write`, each way and both at once, every
//!   byte checked, over `shm-poll` and over `shm-irq` (doorbells rung by
//!   the mapped side with `IVC_IOC_DOORBELL`, slept on with `poll(2)`).
//! - The rules of the exclusive file (`ivc-maptest rules`): `EBUSY` for
//!   other opens and for `read`/`write`, the `mmap` checks, `poll`.
//! - A process that scribbles over its own mapped ring gets `EIO`; the
//!   kernel stays well (no oops, the device opens again, `rmmod` works).

use std::time::Duration;

use ivc_guest_harness::{require_guest_env, run_guests, GuestOutcome, GuestSpec};
use ivc_guest_tests::channel_env::ChannelEnv;
use ivc_guest_tests::guest_sh::{run_reporting, COUNT_IRQS, DMESG_IVC, INSMOD, RMMOD};
use ivc_guest_tests::report::irqs;
use ivc_guest_tests::transfer::{assert_streams_match, script_with, Flow, Side, Transfer};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const SHM: u64 = 1 << 20;

const PLAN: [Transfer; 4] = [
    Transfer::new(64 * KIB, 1, Flow::AtoB),
    Transfer::new(2 * MIB, 4 * KIB, Flow::AtoB),
    Transfer::new(2 * MIB, 32, Flow::BtoA),
    Transfer::new(2 * MIB, 64 * KIB, Flow::Duplex),
];

/// Runs [`PLAN`] with `mapped` using the mapping and the other side plain.
fn mixed(env: &ChannelEnv, mapped: Side) -> Vec<GuestOutcome> {
    let Some(artifacts) = require_guest_env() else {
        return Vec::new();
    };
    let spec = |name: &str, side: Side| {
        let extra = if side == mapped { " --mmap" } else { "" };
        GuestSpec::new(
            name,
            format!(
                "{INSMOD}{}{COUNT_IRQS}{DMESG_IVC}",
                script_with(&PLAN, side, "/dev/ivc0", extra)
            ),
        )
        .device(env.device.clone())
        .timeout(Duration::from_secs(600))
    };
    let out = run_guests(&artifacts, [spec("a", Side::A), spec("b", Side::B)]).expect("guest run");
    assert_streams_match(&out[0], &out[1], &PLAN);
    out
}

#[test]
fn mapped_a_and_read_write_b_over_shm_poll() {
    let env = ChannelEnv::plain(SHM);
    mixed(&env, Side::A);
    env.finish();
}

#[test]
fn read_write_a_and_mapped_b_over_shm_irq() {
    let env = ChannelEnv::doorbell(SHM);
    let out = mixed(&env, Side::B);
    for o in &out {
        assert!(
            o.serial_contains("doorbell interrupts (MSI-X)"),
            "driver not in doorbell mode:\n{}",
            o.report()
        );
        // Both sides slept and were rung: the plain side by the mapped
        // side's IVC_IOC_DOORBELL, the mapped side in poll(2).
        assert!(
            irqs(&o.serial) > 0,
            "no doorbell interrupt in {}:\n{}",
            o.name,
            o.report()
        );
    }
    env.finish();
}

/// Every `IVC_MAPCHECK` line of `o`: all `=ok`, and at least `min` of them.
fn assert_checks(o: &GuestOutcome, min: usize) {
    let lines: Vec<&str> = o
        .serial
        .lines()
        .filter_map(|l| l.trim().strip_prefix("IVC_MAPCHECK "))
        .collect();
    let failed: Vec<&&str> = lines.iter().filter(|l| !l.ends_with("=ok")).collect();
    assert!(
        failed.is_empty() && lines.len() >= min,
        "{} checks, failed: {failed:?}\n{}",
        lines.len(),
        o.report()
    );
}

fn rules_on(env: &ChannelEnv, min_checks: usize) {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let cmd = format!("{INSMOD}ivc-maptest rules /dev/ivc0 || exit 20\n{RMMOD}");
    let out = run_guests(
        &artifacts,
        [GuestSpec::new("rules", cmd)
            .device(env.device.clone())
            .timeout(Duration::from_secs(240))],
    )
    .expect("guest run");
    out[0].assert_success();
    assert_checks(&out[0], min_checks);
    assert!(
        out[0].serial_contains("IVC_RMMOD=ok"),
        "{}",
        out[0].report()
    );
}

#[test]
fn exclusive_file_rules_over_shm_poll() {
    let env = ChannelEnv::plain(SHM);
    rules_on(&env, 17);
    env.finish();
}

#[test]
fn exclusive_file_rules_over_shm_irq() {
    let env = ChannelEnv::doorbell(SHM);
    rules_on(&env, 16);
    env.finish();
}

#[test]
fn scribbling_over_the_mapped_ring_gives_eio_and_spares_the_kernel() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let env = ChannelEnv::plain(SHM);
    let a = format!(
        "{INSMOD}{}{DMESG_IVC}{RMMOD}",
        run_reporting("ivc-maptest scribble /dev/ivc0")
    );
    // The peer reads until the channel ends (end of file or an error: the
    // mapped side leaves broken).
    let b = format!("{INSMOD}cat /dev/ivc0 >/dev/null; echo IVC_PEER_RC=$?\n{DMESG_IVC}{RMMOD}");
    let spec = |name: &str, cmd: String| {
        GuestSpec::new(name, cmd)
            .device(env.device.clone())
            .timeout(Duration::from_secs(300))
    };
    let out = run_guests(&artifacts, [spec("a", a), spec("b", b)]).expect("guest run");
    for o in &out {
        o.assert_success();
        assert!(o.serial_contains("IVC_RMMOD=ok"), "{}", o.report());
    }
    assert!(out[0].serial_contains("IVC_RC=0"), "{}", out[0].report());
    assert_checks(&out[0], 6);
    env.finish();
}
