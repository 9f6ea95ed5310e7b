//! Tier 3, `open` does not sleep under the kernel's misc mutex: both slots
//! of the region are held by endpoints whose heartbeat never moves (a
//! previous incarnation that died), so attaching means waiting to tell a
//! stale slot from a live one (3 s with the default `peer_timeout_ms`).
//! `open` runs under `misc_mtx`, which every misc-device open in the guest
//! takes, so it must return at once and leave that wait to the first read
//! (or the poller), which then takes the stale slot over.

use std::time::Duration;

use ivc_abi::{AtomicMem, AttachOptions, Endpoint};
use ivc_guest_harness::{require_guest_env, Device, Guest, GuestSpec, HostMapping, ScratchDir};
use ivc_guest_tests::guest_sh::{DMESG_IVC, INSMOD};

const SHM_SIZE: u64 = 1 << 20;

#[test]
fn open_returns_at_once_and_the_first_read_takes_a_stale_slot_over() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let path = scratch.join("shm");
    let map = HostMapping::open(&path, SHM_SIZE).expect("map shared memory");
    let mem = AtomicMem::from_words(map.words());
    // Two endpoints that never beat: both slots taken, both stale.
    let held: Vec<_> = (0..2)
        .map(|_| Endpoint::attach_any(mem, &AttachOptions::default()).expect("host attach"))
        .collect();
    let cmd = format!(
        r#"{INSMOD}t0=$(cut -d' ' -f1 /proc/uptime)
exec 3<>/dev/ivc0
t1=$(cut -d' ' -f1 /proc/uptime)
echo "IVC_OPEN_SECONDS=$(awk "BEGIN {{ print $t1 - $t0 }}")"
timeout 10 dd bs=1 count=1 <&3 >/dev/null 2>&1
{DMESG_IVC}"#
    );
    let guest = Guest::spawn(
        &artifacts,
        GuestSpec::new("stale", cmd)
            .device(Device::IvshmemPlain {
                mem_path: path.clone(),
                size: SHM_SIZE,
            })
            .timeout(Duration::from_secs(180)),
    )
    .expect("boot guest");
    let o = guest.wait().expect("guest run");
    drop(held);
    let open_s: f64 = o
        .serial
        .lines()
        .find_map(|l| l.trim().strip_prefix("IVC_OPEN_SECONDS="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no open time:\n{}", o.report()));
    // The takeover waits 3 s; an open that did it would take at least that.
    assert!(
        open_s < 1.5,
        "open took {open_s} s: it waited for the stale slots\n{}",
        o.report()
    );
    assert!(
        o.serial_contains("looks abandoned") && o.serial_contains("taking it over"),
        "the first read did not take the stale slot over:\n{}",
        o.report()
    );
    assert!(o.kernel_errors().is_empty(), "{}", o.report());
    o.assert_success();
}
