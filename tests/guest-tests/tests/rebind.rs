//! Tier 3, device lifetime: the device is unbound and bound again 50 times
//! while a reader and a writer are blocked on it and while one file stays
//! open across every unbind. Each unbind must wake both with `ENODEV`; the
//! old file must keep failing with `ENODEV` (its registers and shared memory
//! were revoked with the binding, so it never touches the new one); the
//! final binding must carry a checked stream from a host peer; no oops, no
//! warning; `rmmod` at the end.

use std::time::Duration;

use ivc_abi::AtomicMem;
use ivc_guest_harness::{require_guest_env, Device, Guest, GuestSpec, HostMapping, ScratchDir};
use ivc_guest_tests::guest_sh::{run_reporting, DMESG_IVC, INSMOD, RMMOD};
use ivc_guest_tests::host_peer;
use ivc_kit::stream::fill;

const SHM_SIZE: u64 = 1 << 20;
const CYCLES: u32 = 50;
const STREAM: usize = 64 * 1024;

#[test]
fn unbind_and_rebind_fifty_times_with_files_open() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let path = scratch.join("shm");
    let map = HostMapping::open(&path, SHM_SIZE).expect("map shared memory");
    let cmd = format!(
        r#"{INSMOD}dev=$(basename $(readlink /sys/class/misc/ivc0/device))
exec 3<>/dev/ivc0
i=0
while [ $i -lt {CYCLES} ]; do
  ivc-xfer recv /dev/ivc0 --bytes 1M >/tmp/r.log 2>&1 & r=$!
  ivc-xfer send /dev/ivc0 --bytes 1M >/tmp/w.log 2>&1 & w=$!
  sleep 0.2
  echo $dev > /sys/bus/pci/drivers/ivc/unbind || {{ echo IVC_UNBIND_FAILED=$i; exit 20; }}
  wait $r; rr=$?; wait $w; wr=$?
  grep -q 'No such device' /tmp/r.log && grep -q 'No such device' /tmp/w.log || echo "IVC_NOT_ENODEV=$i $rr $wr $(cat /tmp/r.log /tmp/w.log)"
  echo $dev > /sys/bus/pci/drivers/ivc/bind || {{ echo IVC_BIND_FAILED=$i; exit 21; }}
  n=0; while [ ! -e /dev/ivc0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
  i=$((i+1))
done
echo IVC_CYCLES=$i
dd bs=1 count=1 <&3 >/dev/null 2>/tmp/old.err; echo "IVC_OLD_FD=$? $(cat /tmp/old.err)"
exec 3>&-
echo IVC_READER_START
{}{DMESG_IVC}{RMMOD}"#,
        run_reporting(&format!(
            "ivc-xfer recv /dev/ivc0 --bytes {STREAM} --chunk 4K --seed 1"
        ))
    );
    let mut guest = Guest::spawn(
        &artifacts,
        GuestSpec::new("rebind", cmd)
            .device(Device::IvshmemPlain {
                mem_path: path.clone(),
                size: SHM_SIZE,
            })
            .timeout(Duration::from_secs(600)),
    )
    .expect("boot guest");
    guest
        .wait_for_line("IVC_READER_START", Duration::from_secs(540))
        .expect("the cycles end and the reader starts");

    // The last binding works: a host peer sends a checked stream.
    let mut ep = host_peer::connect(AtomicMem::from_words(map.words()), Duration::from_secs(60));
    let mut data = vec![0u8; STREAM];
    fill(1, 0, &mut data);
    host_peer::send_all(&mut ep, &data, Duration::from_secs(60));
    let o = guest.wait().expect("guest run");
    for want in [
        format!("IVC_CYCLES={CYCLES}"),
        "IVC_OLD_FD=1 dd: standard input: No such device".to_string(),
        "IVC_RC=0".to_string(),
        "IVC_RMMOD=ok".to_string(),
    ] {
        assert!(o.serial_contains(&want), "missing {want}:\n{}", o.report());
    }
    for bad in ["IVC_NOT_ENODEV", "IVC_UNBIND_FAILED", "IVC_BIND_FAILED"] {
        assert!(!o.serial_contains(bad), "{bad}:\n{}", o.report());
    }
    assert!(
        o.kernel_errors().is_empty(),
        "kernel trouble:\n{}",
        o.report()
    );
    o.assert_success();
}
