//! Tier 3, hostile peer: the test process itself is the guest's peer on an
//! `ivshmem-plain` region. It connects with the host build of the same
//! channel code, sends a little valid data, then scribbles random words over
//! part of the channel's control area while the guest reads. The reader
//! must get exactly the valid data and then an end, the guest kernel must
//! not oops, and the module must still unload.
//!
//! Which end depends on what a scribble hits first. A random ring index
//! breaks the protocol: `EIO`, and the driver logs it. But a new value in the
//! peer's generation or ack word, or a magic or epoch change in the header,
//! is exactly how a peer says it restarted or left (protocol.md), so there the
//! reader legitimately sees end of file. Scribbling over the whole control
//! area accepts either end; scribbling over the ring control lines alone must
//! give `EIO`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ivc_abi::layout::{CONTROL_SIZE, RING_CTRL};
use ivc_abi::{AtomicMem, Endpoint};
use ivc_guest_harness::{
    require_guest_env, Device, Guest, GuestArtifacts, GuestOutcome, GuestSpec, HostMapping,
    ScratchDir,
};
use ivc_guest_tests::guest_sh::{run_reporting, DMESG_IVC, INSMOD, RMMOD};
use ivc_guest_tests::host_peer;
use ivc_kit::stream::{fill, Rng};

const SHM_SIZE: u64 = 1 << 20;

/// How the guest's reader may see the channel end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// `EIO`, with the violation in the kernel log.
    Eio,
    /// `EIO` as above, or end of file (the scribble read as the peer
    /// leaving or restarting).
    EioOrEof,
}

const EIO_LINE: &str = "IVC_STDERR ivc-xfer: error: read after 65536 bytes: I/O error (os error 5)";
const EOF_LINE: &str = "IVC_STDERR ivc-xfer: error: unexpected end of file after 65536 of ";

#[test]
fn scribbling_over_the_whole_control_area_ends_the_channel_cleanly() {
    scribbling_peer_cannot_harm_the_guest(0, End::EioOrEof);
}

#[test]
fn scribbling_over_ring_indices_gives_eio() {
    // Header and peer table intact: the guest must catch bad indices, not
    // just notice a peer that seems to have gone.
    scribbling_peer_cannot_harm_the_guest(RING_CTRL, End::Eio);
}

/// Runs the scenario, scribbling over control bytes `[from, CONTROL_SIZE)`.
fn scribbling_peer_cannot_harm_the_guest(from: usize, end: End) {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch dir");
    let path = scratch.join("shm");
    let map = HostMapping::open(&path, SHM_SIZE).expect("map shared memory");
    let mut guest = boot_reader(&artifacts, &path);

    // Be a well-behaved peer first: the guest must accept the connection
    // and the data before the scribbling starts.
    let ep = send_valid_data(&map);
    // Now turn hostile (the endpoint stays attached while it does).
    let (seen, writes) = scribble_until_the_reader_ends(&mut guest, map.words(), from);
    drop(ep);
    seen.expect("reader finished");
    let o = guest.wait().expect("guest run");
    eprintln!("host scribbled {writes} words over the control area");
    check_the_end(&o, end, from);
}

/// Boots the guest with the region as an ivshmem-plain device and waits
/// until its reader (`ivc-xfer recv`, checking the stream) is about to start.
fn boot_reader(artifacts: &GuestArtifacts, path: &Path) -> Guest {
    let cmd = format!(
        "{INSMOD}echo IVC_READER_START\n{}{DMESG_IVC}{RMMOD}",
        run_reporting("ivc-xfer recv /dev/ivc0 --bytes 64M --chunk 4K --seed 1")
    );
    let mut guest = Guest::spawn(
        artifacts,
        GuestSpec::new("victim", cmd)
            .device(Device::IvshmemPlain {
                mem_path: path.to_path_buf(),
                size: SHM_SIZE,
            })
            .timeout(Duration::from_secs(180)),
    )
    .expect("boot guest");
    guest
        .wait_for_line("IVC_READER_START", Duration::from_secs(120))
        .expect("guest reader starts");
    guest
}

/// Connects as the guest's peer, sends 64 KiB of the stream and waits
/// until the guest has read all of it (our ring is empty again).
fn send_valid_data(map: &HostMapping) -> Endpoint<AtomicMem<'_>> {
    let mem = AtomicMem::from_words(map.words());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ep = host_peer::connect(mem, Duration::from_secs(60));
    let mut data = vec![0u8; 64 * 1024];
    fill(1, 0, &mut data);
    host_peer::send_all(&mut ep, &data, Duration::from_secs(60));
    let sent = data.len();

    while ep.writable_bytes().expect("host ring state") < ep.tx_capacity() {
        assert!(
            Instant::now() < deadline,
            "guest did not read the valid data"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "host peer: sent {sent} bytes, {} writable of {}, stats {:?}",
        ep.writable_bytes().expect("host ring state"),
        ep.tx_ring_size(),
        ep.stats()
    );
    ep
}

/// Random words over control bytes `[from, CONTROL_SIZE)`, in bursts, until
/// the guest's reader reports its end. Returns that wait's result and how
/// many words were written.
fn scribble_until_the_reader_ends(
    guest: &mut Guest,
    words: &[AtomicU32],
    from: usize,
) -> (ivc_guest_harness::Result<String>, u64) {
    let (first, words_in_range) = (from / 4, (CONTROL_SIZE - from) / 4);
    let mut rng = Rng::new(0x1bad_c0de_f00d_5eed);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    let i = first + (rng.next_u64() as usize) % words_in_range;
                    words[i].store(rng.next_u64() as u32, Ordering::Relaxed);
                    writes += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            writes
        });
        let seen = guest.wait_for_line("IVC_RC=", Duration::from_secs(120));
        stop.store(true, Ordering::Relaxed);
        let writes = h.join().expect("scribbler thread");
        (seen, writes)
    })
}

/// Exactly the 64 KiB of valid data arrived before the end (ivc-xfer
/// checks every byte against the stream as it reads), the end is one `end`
/// allows, and the guest kernel and module came through unharmed.
fn check_the_end(o: &GuestOutcome, end: End, from: usize) {
    let eio = o.serial_contains(EIO_LINE);
    let eof = o.serial_contains(EOF_LINE);
    assert!(
        eio || (eof && end == End::EioOrEof),
        "the reader did not get the valid data and then {}:\n{}",
        if end == End::Eio { "EIO" } else { "EIO or EOF" },
        o.report()
    );
    assert!(o.serial_contains("IVC_RC=1"), "{}", o.report());
    assert!(
        !eio || o.serial_contains("broke the channel protocol"),
        "EIO, but the driver did not log the violation:\n{}",
        o.report()
    );
    let what = if eio { "EIO" } else { "end of file" };
    eprintln!("scribbling from {from:#x}: the reader saw {what}");
    assert!(
        o.serial_contains("IVC_RMMOD=ok"),
        "module did not unload:\n{}",
        o.report()
    );
    assert!(
        o.kernel_errors().is_empty(),
        "kernel trouble:\n{}",
        o.report()
    );
    o.assert_success();
}
