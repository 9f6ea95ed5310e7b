//! Tier 3, file semantics over `shm-poll` and `shm-irq`: `ivc-polltest
//! checker` in guest A checks poll transitions, `O_NONBLOCK`, `EFAULT` on a
//! bad buffer moving nothing, a signal
//! interrupting a blocked read, EOF/POLLHUP/EPIPE after the peer guest powers
//! off, and a working channel again once a new peer guest boots on the same
//! region (or joins the same rendezvous server).

use std::time::Duration;

use ivc_guest_harness::{
    require_guest_env, Device, Guest, GuestArtifacts, GuestOutcome, GuestSpec,
};
use ivc_guest_tests::channel_env::ChannelEnv;
use ivc_guest_tests::guest_sh::{insmod_with, INSMOD};
use ivc_guest_tests::polltest::assert_all_passed;

fn assert_checks(o: &GuestOutcome) {
    assert_all_passed(o);
    o.assert_success();
    assert!(
        o.kernel_errors().is_empty(),
        "kernel trouble:\n{}",
        o.report()
    );
}

#[test]
fn shm_poll_semantics() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let env = ChannelEnv::plain(1 << 20);
    poll_nonblock_signals_eof_epipe_and_reconnect(&artifacts, &env.device, "poll", INSMOD);
    env.finish();
}

#[test]
fn shm_irq_semantics() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let env = ChannelEnv::doorbell(1 << 20);
    poll_nonblock_signals_eof_epipe_and_reconnect(&artifacts, &env.device, "irq", INSMOD);
    env.finish();
}

/// The same with the driver spinning before it arms a doorbell
/// (`irq_spin_us`): waits that end while spinning must not upset readiness,
/// signals or the end-of-file handling.
#[test]
fn shm_irq_semantics_spinning_first() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let env = ChannelEnv::doorbell(1 << 20);
    let insmod = insmod_with("irq_spin_us=50");
    poll_nonblock_signals_eof_epipe_and_reconnect(&artifacts, &env.device, "irq-spin", &insmod);
    env.finish();
}

/// The checker guest stays up while two peer guests come and go in turn.
/// Guest names carry `variant`, so the logs of the three tests, which run
/// concurrently, can be told apart.
fn poll_nonblock_signals_eof_epipe_and_reconnect(
    artifacts: &GuestArtifacts,
    dev: &Device,
    variant: &str,
    insmod: &str,
) {
    let timeout = Duration::from_secs(300);
    let checker = Guest::spawn(
        artifacts,
        GuestSpec::new(
            format!("checker-{variant}"),
            format!("{insmod}ivc-polltest checker /dev/ivc0 --reconnect"),
        )
        .device(dev.clone())
        .timeout(timeout),
    )
    .expect("boot checker");
    let peer_cmd = format!("{insmod}ivc-polltest peer /dev/ivc0");
    for round in ["peer1", "peer2"] {
        let peer = Guest::spawn(
            artifacts,
            GuestSpec::new(format!("{round}-{variant}"), &peer_cmd)
                .device(dev.clone())
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
