//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::AtomicU32;

use ivc_abi::{
    AtomicMem, AttachOptions, ChannelError, Endpoint, FormatOptions, PeerState, SharedMemory,
};

/// Owned, zeroed, 4-byte aligned memory.
pub struct Region {
    words: Vec<AtomicU32>,
}

impl Region {
    pub fn new(bytes: usize) -> Self {
        Region {
            words: (0..bytes / 4).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub fn mem(&self) -> AtomicMem<'_> {
        AtomicMem::from_words(&self.words)
    }
}

pub fn opts(ring_size: Option<u32>, index_base: u32) -> AttachOptions {
    AttachOptions {
        doorbell_id: None,
        format: Some(FormatOptions {
            ring_size,
            index_base,
        }),
    }
}

/// Drives both handshakes until both sides are connected, as two users who
/// want a connection (both `resume`, so an end reported earlier does not
/// hold them back).
pub fn connect<M: SharedMemory>(a: &mut Endpoint<M>, b: &mut Endpoint<M>) {
    for _ in 0..4 {
        a.resume();
        b.resume();
        let sa = a.peer_state().expect("a state");
        let sb = b.peer_state().expect("b state");
        if sa == PeerState::Connected && sb == PeerState::Connected {
            return;
        }
    }
    panic!(
        "no connection: a={:?} b={:?}",
        a.peer_state(),
        b.peer_state()
    );
}

/// Attaches slot 0 and 1 over `mem` with `o` and connects them.
pub fn pair<'a>(
    mem: AtomicMem<'a>,
    o: &AttachOptions,
) -> (Endpoint<AtomicMem<'a>>, Endpoint<AtomicMem<'a>>) {
    let mut a = Endpoint::attach_with(mem, 0, o).expect("attach a");
    let mut b = Endpoint::attach_with(mem, 1, o).expect("attach b");
    connect(&mut a, &mut b);
    (a, b)
}

/// Writes all of `data`, draining `reader` into `sink` whenever full.
pub fn write_all<M: SharedMemory>(
    w: &mut Endpoint<M>,
    r: &mut Endpoint<M>,
    mut data: &[u8],
    sink: &mut Vec<u8>,
) -> Result<(), ChannelError> {
    let mut buf = [0u8; 97];
    while !data.is_empty() {
        let n = w.write(data)?;
        data = &data[n..];
        let m = r.read(&mut buf)?;
        sink.extend_from_slice(&buf[..m]);
    }
    Ok(())
}

/// Proptest case count: `PROPTEST_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
