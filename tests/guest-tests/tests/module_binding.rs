//! Tier 3: `ivc.ko` loads in a real Linux guest, binds the ivshmem device the
//! guest was given, and unloads cleanly; two guests sharing one region both
//! bind. Asserted from what each guest reports about itself (sysfs, dmesg).

use std::time::Duration;

use ivc_guest_harness::{require_guest_env, run_guests, Device, GuestSpec, ScratchDir};
use ivc_guest_tests::guest_sh::{script, DMESG_IVC, INSMOD, RMMOD, SHOW_BINDINGS};
use ivc_guest_tests::report::{bindings, value};

const SHM_SIZE: u64 = 1 << 20;

/// Prints `IVC_CLAIMED=<n>`: memory ranges claimed by the driver
/// (`pci_request_regions`).
const CLAIMED: &str = "echo IVC_CLAIMED=$(grep -c ': ivc$' /proc/iomem)\n";

fn probe_and_unload_script() -> String {
    script(&[
        INSMOD,
        SHOW_BINDINGS,
        CLAIMED,
        RMMOD,
        SHOW_BINDINGS,
        CLAIMED,
        DMESG_IVC,
    ])
}

/// Checks one guest's outcome: ran to completion, saw exactly one ivshmem
/// function, bound to `ivc` while loaded and unbound after `rmmod`.
fn assert_probe_and_unload(o: &ivc_guest_harness::GuestOutcome) {
    o.assert_success();
    assert!(
        o.kernel_errors().is_empty(),
        "kernel errors in {}:\n{}",
        o.name,
        o.report()
    );
    assert_eq!(value(&o.serial, "IVC_INSMOD"), Some("ok"), "{}", o.report());
    assert_eq!(value(&o.serial, "IVC_RMMOD"), Some("ok"), "{}", o.report());
    // ivshmem-plain: BAR0 registers and BAR2 shared memory, claimed while
    // bound and released by the removal.
    let claimed: Vec<&str> = o
        .serial
        .lines()
        .filter_map(|l| l.trim().strip_prefix("IVC_CLAIMED="))
        .collect();
    assert_eq!(claimed, ["2", "0"], "{}", o.report());
    let seen = bindings(&o.serial);
    assert_eq!(
        seen.len(),
        2,
        "expected one ivshmem function listed before and after rmmod:\n{}",
        o.report()
    );
    assert_eq!(seen[0].id, "0x1af4:0x1110", "{}", o.report());
    assert_eq!(
        seen[0].driver,
        "ivc",
        "not bound while loaded:\n{}",
        o.report()
    );
    assert_eq!(seen[1].bdf, seen[0].bdf);
    assert_eq!(
        seen[1].driver,
        "none",
        "still bound after rmmod:\n{}",
        o.report()
    );
    assert!(
        o.serial_contains("IVC_DMESG [") && o.serial_contains("ivc: probe ivc-shm"),
        "the driver did not log its probe:\n{}",
        o.report()
    );
    assert!(
        o.serial_contains("ivc: remove ivc-shm"),
        "no remove logged:\n{}",
        o.report()
    );
}

#[test]
fn one_guest_binds_ivshmem_plain_and_unloads() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let spec = GuestSpec::new("solo", probe_and_unload_script())
        .device(Device::IvshmemPlain {
            mem_path: scratch.join("shm"),
            size: SHM_SIZE,
        })
        .timeout(Duration::from_secs(120));
    let outcomes = run_guests(&artifacts, [spec]).expect("guest run");
    assert_probe_and_unload(&outcomes[0]);
}

#[test]
fn two_guests_sharing_one_region_both_bind() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let shm = Device::IvshmemPlain {
        mem_path: scratch.join("shm"),
        size: SHM_SIZE,
    };
    let specs = ["left", "right"]
        .map(|name| GuestSpec::new(name, probe_and_unload_script()).device(shm.clone()));
    let outcomes = run_guests(&artifacts, specs).expect("guest run");
    for o in &outcomes {
        assert_probe_and_unload(o);
    }
}

/// A module parameter out of its range fails the probe with a message that
/// names it and the range; the device stays unbound, the module unloads,
/// and a valid value binds again.
#[test]
fn out_of_range_parameters_fail_the_probe_and_say_which() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let cmd = format!(
        "for p in poll_max_ms=0 irq_spin_us=20000 poll_max_ms=1000; do\n\
         insmod /lib/ivc/ivc.ko $p || exit 10\n{SHOW_BINDINGS}rmmod ivc || exit 11\ndone\n{DMESG_IVC}"
    );
    let spec = GuestSpec::new("params", cmd)
        .device(Device::IvshmemPlain {
            mem_path: scratch.join("shm"),
            size: SHM_SIZE,
        })
        .timeout(Duration::from_secs(120));
    let outcomes = run_guests(&artifacts, [spec]).expect("guest run");
    let o = &outcomes[0];
    o.assert_success();
    let drivers: Vec<String> = bindings(&o.serial).into_iter().map(|b| b.driver).collect();
    assert_eq!(drivers, ["none", "none", "ivc"], "{}", o.report());
    for msg in [
        "poll_max_ms=0 is out of range 1..=1000",
        "irq_spin_us=20000 is out of range 0..=10000",
    ] {
        assert!(o.serial_contains(msg), "no '{msg}' in:\n{}", o.report());
    }
}
