//! The harness against real guests: QEMU TCG with the kernel and initramfs
//! from scripts/build-guest.sh. Skipped (with a message) when those are
//! missing, unless IVC_REQUIRE_GUEST=1.

use std::time::Duration;

use ivc_guest_harness::{require_guest_env, run_guests, Device, Guest, GuestSpec, ScratchDir};

#[test]
fn command_output_and_exit_status() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let outcome = Guest::spawn(&artifacts, GuestSpec::new("hello", "echo hello; exit 3"))
        .expect("spawn")
        .wait()
        .expect("wait");
    assert_eq!(outcome.exit_status, Some(3), "{}", outcome.report());
    assert!(outcome.serial_contains("hello"), "{}", outcome.report());
    assert!(!outcome.timed_out);
    // The init's `reboot -f` with -no-reboot ends QEMU normally.
    assert!(outcome.vm_status.success(), "{}", outcome.report());
    assert!(outcome.kernel_errors().is_empty(), "{}", outcome.report());
}

#[test]
fn cpus_memory_and_kernel_args_reach_the_guest() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let spec = GuestSpec::new(
        "shape",
        "echo cpus=$(nproc); grep MemTotal /proc/meminfo; cat /proc/cmdline",
    )
    .cpus(2)
    .memory_mib(192)
    .kernel_arg("ivc_harness_probe=1");
    let outcome = Guest::spawn(&artifacts, spec)
        .expect("spawn")
        .wait()
        .expect("wait");
    outcome.assert_success();
    assert!(outcome.serial_contains("cpus=2"), "{}", outcome.report());
    let mem_kib: u64 = outcome
        .serial
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal\n{}", outcome.report()));
    assert!(
        (150 * 1024..=192 * 1024).contains(&mem_kib),
        "MemTotal {mem_kib} kB"
    );
    assert!(outcome.serial_contains("ivc_harness_probe=1"));
}

#[test]
fn wait_for_line_sees_the_guest_before_it_ends() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    // The guest waits for a file that never comes; the test sees its first
    // line, then kills it.
    let mut guest = Guest::spawn(
        &artifacts,
        GuestSpec::new("live", "echo waiting-for-host; sleep 1000"),
    )
    .expect("spawn");
    let line = guest
        .wait_for_line("waiting-for-host", Duration::from_secs(60))
        .expect("line");
    assert_eq!(line, "waiting-for-host");
    guest.kill().expect("kill");
    let outcome = guest.wait().expect("wait");
    assert_eq!(outcome.exit_status, None);
}

#[test]
fn timeout_kills_a_stuck_guest() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    // The guest's limit is enforced by wait(), so waiting for its line first
    // keeps the short limit from failing the test on a slow, loaded host.
    let limit = Duration::from_secs(4);
    let spec = GuestSpec::new("stuck", "echo stuck; sleep 1000").timeout(limit);
    let mut guest = Guest::spawn(&artifacts, spec).expect("spawn");
    guest
        .wait_for_line("stuck", Duration::from_secs(60))
        .expect("booted");
    let outcome = guest.wait().expect("wait");
    assert!(outcome.timed_out, "{}", outcome.report());
    assert_eq!(outcome.exit_status, None);
    assert!(outcome.elapsed >= limit);
    assert!(outcome.serial_contains("stuck"), "{}", outcome.report());
}

/// Two guests share one ivshmem-plain region: both see the ivshmem PCI
/// device (1af4:1110) with a 1 MiB BAR2, and QEMU created the backing file.
#[test]
fn ivshmem_plain_is_shared_by_two_guests() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch");
    let shm = Device::IvshmemPlain {
        mem_path: scratch.join("shm"),
        size: 1 << 20,
    };
    // Prints "<vendor> <device> <BAR2 size>" for every ivshmem function.
    let probe = r#"for d in /sys/bus/pci/devices/*; do
        if [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ]; then
            set -- $(sed -n 3p $d/resource)
            echo "ivshmem $(cat $d/vendor) $(cat $d/device) size=$(( $2 - $1 + 1 ))"
            found=1
        fi
    done
    [ -n "$found" ]"#;
    let outcomes = run_guests(
        &artifacts,
        [
            GuestSpec::new("a", probe).device(shm.clone()),
            GuestSpec::new("b", probe).device(shm),
        ],
    )
    .expect("run");
    for o in &outcomes {
        o.assert_success();
        assert!(
            o.serial_contains("ivshmem 0x1af4 0x1110 size=1048576"),
            "{}",
            o.report()
        );
    }
    let len = std::fs::metadata(scratch.join("shm"))
        .expect("QEMU created the backing file")
        .len();
    assert_eq!(len, 1 << 20);
}
