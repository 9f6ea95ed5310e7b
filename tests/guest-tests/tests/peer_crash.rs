//! Tier 3, a peer VM that dies mid-transfer: guest B's QEMU is killed while
//! it streams to guest A. B never closes the channel, so A learns of it from
//! B's heartbeat going quiet (`peer_timeout_ms`): A's reader gets what
//! arrived, then end of file, and A's driver logs why.

use std::time::Duration;

use ivc_guest_harness::{require_guest_env, Device, Guest, GuestSpec, ScratchDir};
use ivc_guest_tests::guest_sh::{run_reporting, DMESG_IVC, RMMOD};

#[test]
fn killed_peer_vm_ends_the_stream_with_eof() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let shm = Device::IvshmemPlain {
        mem_path: scratch.join("shm"),
        size: 1 << 20,
    };
    let insmod = "insmod /lib/ivc/ivc.ko peer_timeout_ms=1500 && echo IVC_INSMOD=ok\n";
    let survivor = Guest::spawn(
        &artifacts,
        GuestSpec::new(
            "survivor",
            format!(
                "{insmod}{}{DMESG_IVC}{RMMOD}",
                run_reporting("ivc-xfer recv /dev/ivc0 --bytes 4G --chunk 64K")
            ),
        )
        .device(shm.clone())
        .timeout(Duration::from_secs(180)),
    )
    .expect("boot survivor");
    let mut victim = Guest::spawn(
        &artifacts,
        GuestSpec::new(
            "victim",
            format!("{insmod}echo IVC_SENDING\nivc-xfer send /dev/ivc0 --bytes 4G --chunk 64K"),
        )
        .device(shm)
        .timeout(Duration::from_secs(180)),
    )
    .expect("boot victim");
    victim
        .wait_for_line("IVC_SENDING", Duration::from_secs(120))
        .expect("victim starts sending");
    // Let some data flow, then pull the plug on the whole VM.
    std::thread::sleep(Duration::from_secs(2));
    victim.kill().expect("kill the victim's QEMU");
    let o = survivor.wait().expect("survivor run");
    assert!(
        o.serial_contains("IVC_STDERR ivc-xfer: error: unexpected end of file after"),
        "the reader did not see end of file:\n{}",
        o.report()
    );
    assert!(o.serial_contains("IVC_RC=1"), "{}", o.report());
    assert!(
        o.serial_contains("peer heartbeat stalled"),
        "the driver did not say why:\n{}",
        o.report()
    );
    assert!(o.serial_contains("IVC_RMMOD=ok"), "{}", o.report());
    o.assert_success();
}
