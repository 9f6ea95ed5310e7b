//! The test process as a guest's peer on an `ivshmem-plain` region, with the
//! host build of the channel code: attach, wait for the guest, send.

use std::time::{Duration, Instant};

use ivc_abi::{AtomicMem, AttachOptions, Endpoint, PeerState};

/// Attaches to `mem` (retrying while the guest formats it) and waits until
/// the guest is connected; panics after `timeout`.
pub fn connect(mem: AtomicMem<'_>, timeout: Duration) -> Endpoint<AtomicMem<'_>> {
    let deadline = Instant::now() + timeout;
    let mut ep = loop {
        match Endpoint::attach_any(mem, &AttachOptions::default()) {
            Ok(ep) => break ep,
            Err(e) => {
                assert!(Instant::now() < deadline, "host peer cannot attach: {e:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    while ep.peer_state().expect("peer state") != PeerState::Connected {
        assert!(Instant::now() < deadline, "guest never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    ep
}

/// Writes all of `data`, spinning while the ring is full; panics after
/// `timeout` (the guest stopped reading).
pub fn send_all(ep: &mut Endpoint<AtomicMem<'_>>, data: &[u8], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut sent = 0;
    while sent < data.len() {
        sent += ep.write(&data[sent..]).expect("host write");
        assert!(Instant::now() < deadline, "guest did not drain the data");
    }
}
