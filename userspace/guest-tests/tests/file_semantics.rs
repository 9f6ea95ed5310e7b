//! Tier 3, file semantics over `shm-poll`: `ivc-polltest checker` in guest A
//! checks poll transitions, `O_NONBLOCK`, a signal interrupting a blocked
//! read, EOF/POLLHUP/EPIPE after the peer guest powers off, and a working
//! channel again once a new peer guest boots on the same region.

use std::time::Duration;

use ivc_guest_harness::{require_guest_env, Device, Guest, GuestOutcome, GuestSpec, ScratchDir};
use ivc_guest_tests::guest_sh::INSMOD;

const CHECKS: &[&str] = &[
    "nonblock_read_eagain",
    "pollout_when_peer_connects",
    "no_pollin_while_empty",
    "pollin_when_data_arrives",
    "signal_interrupts_blocked_read",
    "nonblock_write_eagain_and_no_pollout_when_full",
    "pollout_when_peer_drains",
    "stream_intact_after_fill",
    "eof_after_peer_leaves",
    "pollhup_after_peer_leaves",
    "epipe_after_peer_leaves",
    "reconnect_after_peer_returns",
    "eof_after_second_peer_leaves",
];

fn assert_checks(o: &GuestOutcome) {
    for name in CHECKS {
        assert!(
            o.serial_contains(&format!("IVC_CHECK {name}=ok")),
            "check {name} did not pass:\n{}",
            o.report()
        );
    }
    o.assert_success();
    assert!(
        o.kernel_errors().is_empty(),
        "kernel trouble:\n{}",
        o.report()
    );
}

#[test]
fn poll_nonblock_signals_eof_epipe_and_reconnect() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let shm = Device::IvshmemPlain {
        mem_path: scratch.join("shm"),
        size: 1 << 20,
    };
    let timeout = Duration::from_secs(300);
    let checker = Guest::spawn(
        &artifacts,
        GuestSpec::new(
            "checker",
            format!("{INSMOD}ivc-polltest checker /dev/ivc0 --reconnect"),
        )
        .device(shm.clone())
        .timeout(timeout),
    )
    .expect("boot checker");
    let peer_cmd = format!("{INSMOD}ivc-polltest peer /dev/ivc0");
    for round in ["peer1", "peer2"] {
        let peer = Guest::spawn(
            &artifacts,
            GuestSpec::new(round, &peer_cmd)
                .device(shm.clone())
                .timeout(timeout),
        )
        .expect("boot peer");
        let o = peer.wait().expect("peer run");
        o.assert_success();
        assert!(
            o.serial_contains("ivc-polltest: peer quits"),
            "{}",
            o.report()
        );
    }
    assert_checks(&checker.wait().expect("checker run"));
}
