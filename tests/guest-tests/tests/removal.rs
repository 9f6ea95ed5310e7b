//! Tier 3, removal while in use: with a reader and a writer blocked on
//! `/dev/ivc0` (no peer, so both wait forever), `rmmod` must refuse (the
//! open files pin the module), unbinding the device through sysfs must wake
//! both with an error, and afterwards `rmmod` must succeed — no oops, no hang.

use std::time::Duration;

use ivc_guest_harness::{require_guest_env, Device, Guest, GuestSpec, ScratchDir};
use ivc_guest_tests::guest_sh::{DMESG_IVC, INSMOD, RMMOD};

#[test]
fn unbind_and_rmmod_with_blocked_reader_and_writer() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let script = format!(
        r#"{INSMOD}
ivc-xfer recv /dev/ivc0 --bytes 1M > /tmp/reader.log 2>&1 &
reader=$!
ivc-xfer send /dev/ivc0 --bytes 1M > /tmp/writer.log 2>&1 &
writer=$!
sleep 1
kill -0 $reader && kill -0 $writer && echo IVC_BOTH_BLOCKED
if rmmod ivc 2>/dev/null; then echo IVC_RMMOD_WHILE_OPEN=succeeded; else echo IVC_RMMOD_WHILE_OPEN=refused; fi
dev=$(basename $(readlink /sys/class/misc/ivc0/device))
echo "$dev" > /sys/bus/pci/drivers/ivc/unbind && echo IVC_UNBOUND=ok
wait $reader; echo IVC_READER_RC=$?
wait $writer; echo IVC_WRITER_RC=$?
sed 's/^/IVC_READER_LOG /' /tmp/reader.log
sed 's/^/IVC_WRITER_LOG /' /tmp/writer.log
{DMESG_IVC}{RMMOD}"#
    );
    let guest = Guest::spawn(
        &artifacts,
        GuestSpec::new("removal", script)
            .device(Device::IvshmemPlain {
                mem_path: scratch.join("shm"),
                size: 1 << 20,
            })
            .timeout(Duration::from_secs(120)),
    )
    .expect("boot guest");
    let o = guest.wait().expect("guest run");
    for want in [
        "IVC_BOTH_BLOCKED",
        "IVC_RMMOD_WHILE_OPEN=refused",
        "IVC_UNBOUND=ok",
        "IVC_READER_RC=1",
        "IVC_WRITER_RC=1",
        "IVC_RMMOD=ok",
    ] {
        assert!(o.serial_contains(want), "missing {want}:\n{}", o.report());
    }
    assert!(
        o.serial_contains("IVC_READER_LOG ivc-xfer: error: read after 0 bytes: No such device"),
        "reader did not get ENODEV:\n{}",
        o.report()
    );
    assert!(
        o.serial_contains("IVC_WRITER_LOG ivc-xfer: error: write at offset 0: No such device"),
        "{}",
        o.report()
    );
    o.assert_success();
}

/// `rmmod` right after heavy poller use: a polled channel opened, the
/// poller backed off to its longest interval (`poll_max_ms=1000`) with a
/// pass queued, the file closed and the module removed at once, ten times
/// over. The removal runs the queued pass instead of leaving its timer
/// behind (a timer firing into an unloaded module is an oops).
#[test]
fn rmmod_right_after_the_poller_backed_off() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let script = format!(
        r#"for i in 1 2 3 4 5 6 7 8 9 10; do
insmod /lib/ivc/ivc.ko mode=1 poll_max_ms=1000 || exit 10
ivc-xfer recv /dev/ivc0 --bytes 1M > /dev/null 2>&1 &
sleep 2; kill $!; wait $!
rmmod ivc || exit 11
done
echo IVC_CYCLES=done
{DMESG_IVC}"#
    );
    let guest = Guest::spawn(
        &artifacts,
        GuestSpec::new("poller-removal", script)
            .device(Device::IvshmemPlain {
                mem_path: scratch.join("shm"),
                size: 1 << 20,
            })
            .timeout(Duration::from_secs(180)),
    )
    .expect("boot guest");
    let o = guest.wait().expect("guest run");
    o.assert_success();
    assert!(o.serial_contains("IVC_CYCLES=done"), "{}", o.report());
    assert!(
        o.kernel_errors().is_empty(),
        "kernel errors:\n{}",
        o.report()
    );
}
