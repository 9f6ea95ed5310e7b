//! Tier 4, file semantics over `pio` (the driver transport that only ivc-vmm
//! offers): the same `ivc-polltest checker` as tier 3 runs over shared
//! memory (blocking read woken by data, `O_NONBLOCK` -> `EAGAIN`,
//! `poll`/`epoll` readiness both ways, `EFAULT`, signals, end of file after
//! the peer closes, `EPIPE` after it is gone, a new peer afterwards), `rmmod`
//! refused while the device is open and clean after; and a peer VM killed
//! mid-transfer, which the survivor sees as end of file (reading) or `EPIPE`
//! (writing) once the peer's heartbeat has stalled. Both in each of the
//! driver's pio modes (descriptor mode and string I/O); a rebind with a file
//! kept open, in descriptor mode (whose staging buffers the device writes);
//! the mapped path refused (`ENODEV`: no shared memory to map).

use std::time::Duration;

use ivc_guest_harness::{require_vmm_env, run_scenario, GuestSpec, Scenario};
use ivc_guest_tests::guest_sh::{run_reporting, DMESG_IVC, INSMOD, RMMOD};
use ivc_guest_tests::polltest::assert_all_passed;
use ivc_guest_tests::report::value;
use ivc_guest_tests::vmm_channel::Channel;

/// With the device held open (fd 3), `rmmod` must fail; closed, it works.
const RMMOD_WHILE_OPEN: &str = "exec 3<>/dev/ivc0\n\
    if rmmod ivc 2>/dev/null; then echo IVC_RMMOD_WHILE_OPEN=removed; else echo IVC_RMMOD_WHILE_OPEN=refused; fi\n\
    exec 3>&-\n";

#[test]
fn pio_descriptor_poll_nonblock_signals_eof_epipe_reconnect_and_rmmod() {
    file_semantics(Channel::Pio);
}

#[test]
fn pio_string_io_poll_nonblock_signals_eof_epipe_reconnect_and_rmmod() {
    file_semantics(Channel::PioString);
}

fn file_semantics(pio: Channel) {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    let timeout = Duration::from_secs(420);
    let insmod = pio.insmod();
    let checker = GuestSpec::new(
        "checker",
        format!("{insmod}ivc-polltest checker /dev/ivc0 --reconnect || exit $?\n{RMMOD_WHILE_OPEN}{DMESG_IVC}{RMMOD}"),
    )
    .device(pio.device())
    .timeout(timeout);
    let peer = |name: &str| {
        GuestSpec::new(name, format!("{insmod}ivc-polltest peer /dev/ivc0"))
            .device(pio.device())
            .timeout(Duration::from_secs(240))
    };
    // A small region: the checker fills the ring until EAGAIN while the peer
    // sleeps 3 s, and port I/O writes 4 bytes per VM exit (0.4-0.9 ms
    // nested), so the default region's 2 MiB ring would take minutes, and
    // even a 16 KiB ring (64 KiB region) was not full when the peer woke and
    // drained it (measured: no EAGAIN in 232 s, the reader's 1 KiB per exit
    // outran the writer). 8 KiB gives 2 KiB rings: 512 exits.
    let scenario = Scenario::new()
        .server(pio.name(), 8 << 10, 1)
        .guest(checker)
        .and_then(|s| s.guest(peer("peer1")))
        .and_then(|s| s.guest_after_exit(peer("peer2"), "peer1"))
        .expect("valid scenario");
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    for p in ["peer1", "peer2"] {
        let o = outcome.guest(p);
        o.assert_success();
        assert!(
            o.serial_contains("ivc-polltest: peer quits"),
            "{}",
            o.report()
        );
    }
    let c = outcome.guest("checker");
    assert_all_passed(c);
    if let Some(mode) = pio.pio_mode_log() {
        assert!(c.serial_contains(mode), "not in {mode}:\n{}", c.report());
    }
    assert_eq!(
        value(&c.serial, "IVC_RMMOD_WHILE_OPEN"),
        Some("refused"),
        "{}",
        c.report()
    );
    assert_eq!(value(&c.serial, "IVC_RMMOD"), Some("ok"), "{}", c.report());
    c.assert_success();
}

/// Two pairs at once, each on its own server: in one the sender's VM is
/// killed (the reader must get end of file), in the other the reader's (the
/// writer must get `EPIPE`, not `EIO`: the rest of a string write the
/// device granted is dropped quietly). Neither victim closes anything. Over
/// `pio` the channel endpoint is the survivor's VMM, which learns of the
/// death from the rendezvous server (the dead VMM's socket closes: "peer N
/// left; channel slot S marked absent") or, failing that, from the stalled
/// heartbeat (`PEER_TIMEOUT_MS`, 5 s); either way it says so at `info`.
#[test]
fn pio_descriptor_peer_vm_killed_mid_transfer() {
    peer_vm_killed(Channel::Pio);
}

#[test]
fn pio_string_io_peer_vm_killed_mid_transfer() {
    peer_vm_killed(Channel::PioString);
}

fn peer_vm_killed(pio: Channel) {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    let insmod = pio.insmod();
    let guest = |name: &str, server: &str, cmd: String| {
        GuestSpec::new(name, cmd)
            .device(ivc_guest_harness::Device::ivc_pio(server))
            .timeout(Duration::from_secs(300))
    };
    let mut scenario = Scenario::new()
        .server("eof", ivc_guest_tests::vmm_channel::SHM_SIZE, 1)
        .server("epipe", ivc_guest_tests::vmm_channel::SHM_SIZE, 1)
        .guest(guest(
            "reader",
            "eof",
            format!(
                "{insmod}{}{DMESG_IVC}{RMMOD}",
                run_reporting("ivc-xfer recv /dev/ivc0 --bytes 1G --chunk 4K")
            ),
        ))
        .and_then(|s| {
            s.guest(guest(
                "sender-victim",
                "eof",
                format!("{insmod}echo IVC_SENDING\nivc-xfer send /dev/ivc0 --bytes 1G --chunk 4K"),
            ))
        })
        .and_then(|s| {
            s.guest(guest(
                "writer",
                "epipe",
                format!(
                    "{insmod}{}{DMESG_IVC}{RMMOD}",
                    run_reporting("ivc-xfer send /dev/ivc0 --bytes 1G --chunk 4K")
                ),
            ))
        })
        .and_then(|s| {
            s.guest(guest(
                "reader-victim",
                "epipe",
                format!(
                    "{insmod}echo IVC_RECEIVING\nivc-xfer recv /dev/ivc0 --bytes 1G --chunk 4K"
                ),
            ))
        })
        .expect("valid scenario")
        .kill_when("sender-victim", "IVC_SENDING", Duration::from_secs(3))
        .kill_when("reader-victim", "IVC_RECEIVING", Duration::from_secs(3));
    // The survivors' VMMs say at `info` how they learned of the death.
    scenario.vmm_log = Some("info".into());
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    let r = outcome.guest("reader");
    assert!(
        r.serial_contains("IVC_STDERR ivc-xfer: error: unexpected end of file after"),
        "the reader did not see end of file:\n{}",
        r.report()
    );
    let w = outcome.guest("writer");
    if let Some(mode) = pio.pio_mode_log() {
        for g in [r, w] {
            assert!(g.serial_contains(mode), "not in {mode}:\n{}", g.report());
        }
    }
    assert!(
        w.serial_contains("IVC_STDERR ivc-xfer: error: write at offset")
            && w.serial_contains("Broken pipe"),
        "the writer did not see EPIPE:\n{}",
        w.report()
    );
    for s in [r, w] {
        assert!(s.serial_contains("IVC_RC=1"), "{}", s.report());
        assert!(
            s.vm_stderr.contains("marked absent") || s.vm_stderr.contains("heartbeat stood still"),
            "the survivor's VMM did not say why:\n{}\n{}",
            s.report(),
            s.vm_stderr
        );
        assert_eq!(value(&s.serial, "IVC_RMMOD"), Some("ok"), "{}", s.report());
        s.assert_success();
    }
    for v in ["sender-victim", "reader-victim"] {
        let o = outcome.guest(v);
        assert_eq!(
            o.vm_status.to_string(),
            "signal: 9 (SIGKILL)",
            "{v} was killed by its rule:\n{}",
            o.report()
        );
    }
}

/// A file kept open across an unbind and rebind belongs to the old binding:
/// reading it gives `ENODEV`, and its last close must not reach the device,
/// which by then carries the new binding's connection (before the registers
/// were revoked at removal, that close wrote `CONTROL_CLOSE` to the same
/// ports and cut the new connection).
#[test]
fn pio_a_file_kept_open_across_a_rebind_leaves_the_new_binding_alone() {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    let pio = Channel::Pio;
    let rebinder = format!(
        r#"{INSMOD}dev=$(basename $(readlink /sys/class/misc/ivc0/device))
exec 3<>/dev/ivc0
sleep 8
echo $dev > /sys/bus/pci/drivers/ivc/unbind
echo $dev > /sys/bus/pci/drivers/ivc/bind
n=0; while [ ! -e /dev/ivc0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
dd bs=1 count=1 <&3 >/dev/null 2>/tmp/old.err; echo "IVC_OLD_FD=$? $(cat /tmp/old.err)"
ivc-xfer recv /dev/ivc0 --bytes 256K --chunk 4K --seed 7 2>/tmp/ivc-cmd.err 3>&- & r=$!
sleep 1
exec 3>&-
wait $r; echo IVC_RC=$?
sed 's/^/IVC_STDERR /' /tmp/ivc-cmd.err
{DMESG_IVC}{RMMOD}"#
    );
    // The file the rebinder holds joins the channel too, and the rebinder
    // keeps it 8 s before the unbind, so the sender connects to the old
    // binding first, fills the ring and gets EPIPE when that binding goes.
    // It sends again until a whole stream went through: the new binding's.
    // (Without the wait the order was a race, and a sender that lost it
    // left the new binding's reader waiting for nothing.)
    let sender = format!(
        "{INSMOD}n=0\nuntil ivc-xfer send /dev/ivc0 --bytes 256K --chunk 4K --seed 7; do\n\
         n=$((n+1)); [ $n -ge 20 ] && exit 1; sleep 0.5\ndone\n"
    );
    // A 64 KiB region (16 KiB rings): a sender on the old binding cannot
    // finish its 256 KiB into the ring before that binding goes.
    let scenario = Scenario::new()
        .server(pio.name(), 64 << 10, 1)
        .guest(
            GuestSpec::new("rebinder", rebinder)
                .device(pio.device())
                .timeout(Duration::from_secs(300)),
        )
        .and_then(|s| {
            s.guest(
                GuestSpec::new("sender", sender)
                    .device(pio.device())
                    .timeout(Duration::from_secs(300)),
            )
        })
        .expect("valid scenario");
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    let r = outcome.guest("rebinder");
    for want in [
        "IVC_OLD_FD=1 dd: standard input: No such device",
        "IVC_RC=0",
        "IVC_RMMOD=ok",
    ] {
        assert!(r.serial_contains(want), "missing {want}:\n{}", r.report());
    }
    assert!(r.kernel_errors().is_empty(), "{}", r.report());
    r.assert_success();
    outcome.guest("sender").assert_success();
}

/// `pio` has no shared memory the guest can see: the mapped path
/// (docs/driver.md, "Mapping the ring") is refused with `ENODEV` — the
/// exclusive open, `mmap` on a plain file, `IVC_IOC_INFO` — and the plain
/// file works on (`rmmod` after). One guest: no peer needed.
#[test]
fn pio_refuses_the_mapped_path() {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    let pio = Channel::Pio;
    let guest = GuestSpec::new(
        "mapper",
        format!(
            "{}ivc-maptest pio /dev/ivc0 || exit 20\n{DMESG_IVC}{RMMOD}",
            pio.insmod()
        ),
    )
    .device(pio.device())
    .timeout(Duration::from_secs(300));
    let scenario = Scenario::new()
        .server(pio.name(), 64 << 10, 1)
        .guest(guest)
        .expect("valid scenario");
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    let g = outcome.guest("mapper");
    for check in [
        "pio_exclusive_open_is_enodev",
        "pio_mmap_is_enodev",
        "pio_info_is_enodev",
    ] {
        assert!(
            g.serial_contains(&format!("IVC_MAPCHECK {check}=ok")),
            "{check}:\n{}",
            g.report()
        );
    }
    assert_eq!(value(&g.serial, "IVC_RMMOD"), Some("ok"), "{}", g.report());
    g.assert_success();
}
