//! [`Endpoint`]: one side of the channel — attach, connection handshake,
//! ring I/O, wake-up suppression, close.
//!
//! Hardening rules (see docs/protocol.md, "Trust"):
//! * Our own indices live in private shadows (`prod`, `cons`); the copies in
//!   shared memory are only ever written, never read back.
//! * Every value read from shared memory is read once into a local,
//!   validated, then used. Peer indices must stay within one ring size of
//!   our shadow and must not move backwards.
//! * Any violation latches [`ChannelError::Corrupted`]: every later call
//!   returns it. No loop depends on shared-memory contents, so no call can
//!   hang; all offsets come from the layout validated at attach, and the
//!   [`SharedMemory`] implementation bounds-checks every access anyway.
//!
//! This file holds the [`Endpoint`] type, its accessors and the error
//! latch every operation goes through; the operations live in one file per
//! concept, each adding an `impl Endpoint` block:
//!
//! | file | concept |
//! | --- | --- |
//! | `attach.rs` | [`AttachOptions`]; attaching to a slot (formatting the region if asked) |
//! | `handshake.rs` | [`PeerState`]; the connection state machine every operation advances |
//! | `heartbeat.rs` | our heartbeat counter and the peer's (liveness evidence) |
//! | `indices.rs` | validated reads of the peer's ring indices |
//! | `records.rs` | the record format of the ring data: headers read (validated) and written, pads |
//! | `ring_io.rs` | the data path: `write*`, `read*`, readable/writable byte counts |
//! | `wakeup.rs` | [`Readiness`]; wake-up suppression flags and doorbell decisions |
//! | `close.rs` | ending a connection from this side: `reconnect`, `close`, `Drop` |
//!
//! The files reach the channel's other modules as `super::super::x`
//! (never `crate::`: in the kernel module the crate root is ivc.ko's).
//! This file uses `super::shm`, `super::error` and `super::layout` from its
//! siblings.

mod attach;
mod close;
mod handshake;
mod heartbeat;
mod indices;
mod records;
mod ring_io;
mod wakeup;

pub use attach::AttachOptions;
pub use handshake::PeerState;
pub use wakeup::Readiness;

use super::error::ChannelError;
use super::layout::{Layout, RingGeometry, PEER_BROKEN, PEER_STATE};
use super::shm::SharedMemory;
use handshake::Conn;

/// Counters kept by the endpoint (wrapping; no atomics: the endpoint is
/// `&mut`). Embedders export them as they see fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// Bytes written into the TX ring.
    pub bytes_written: u64,
    /// Bytes read from the RX ring.
    pub bytes_read: u64,
    /// Doorbells requested by `needs_doorbell_*`.
    pub doorbells: u64,
    /// Connections established.
    pub connections: u64,
    /// Connections that ended.
    pub disconnections: u64,
}

/// One side of a channel over `M`.
///
/// All methods take `&mut self`: the embedder serialises access (a mutex or
/// spinlock in the kernel). No method blocks, loops on shared memory or
/// panics.
#[derive(Debug)]
pub struct Endpoint<M: SharedMemory> {
    mem: M,
    layout: Layout,
    slot: u32,
    my_entry: usize,
    peer_entry: usize,
    tx_ctrl: usize,
    tx: RingGeometry,
    rx_ctrl: usize,
    rx: RingGeometry,
    my_gen: u32,
    heartbeat: u32,
    /// Shadow of our TX producer index (the only copy we trust).
    prod: u32,
    /// Shadow of our RX consumer index: the start of the record being
    /// read (it moves past a record once all of its payload was read).
    cons: u32,
    /// Payload length of the RX record at `cons`, once its header was read
    /// and validated; 0 = not read yet.
    rx_len: u32,
    /// Payload bytes of that record already read (a record may be consumed
    /// by several reads: the byte-stream semantics of `/dev/ivcN`).
    rx_off: u32,
    /// TX: the consumer was found lagging in this lap of the ring, so no
    /// early pad to the ring's end until it wraps (see `records.rs`).
    tx_lagging: bool,
    /// TX ring bytes a caller was told it may fill over several writes
    /// (`writable_bytes_in_pieces`), less what it wrote since: no early pad
    /// may take them (see `records.rs`).
    tx_promised: u32,
    /// Last validated peer producer index (RX); it must not go backwards.
    peer_prod_seen: u32,
    /// Last validated peer consumer index (TX); it must not go backwards.
    peer_cons_seen: u32,
    /// `prod` at the last doorbell decision.
    kick_prod_from: u32,
    /// `cons` at the last doorbell decision.
    kick_cons_from: u32,
    conn: Conn,
    /// A lifecycle change the peer must hear about (attach, ack, close,
    /// broken): the next `needs_doorbell_*` returns true.
    pending_kick: bool,
    /// `read` owes its caller one end-of-file (the end of a connection was
    /// reported by `write` first).
    eof_owed: bool,
    /// The end of a connection was reported to the user (end of file or
    /// `PeerGone` from `write`) and the user has not come back since: no new
    /// peer incarnation is accepted until a data-path call or
    /// [`resume`](Endpoint::resume). Otherwise a reader that got end of file
    /// and is about to close could be connected, by a passive call such as
    /// a poller's `peer_state`, to a new peer that then writes into a
    /// connection nobody reads: its data would be lost when we close, or
    /// its first write would fail with `PeerGone`.
    held: bool,
    broken: Option<ChannelError>,
    closed: bool,
    stats: EndpointStats,
}

fn min_u32(a: u32, b: u32) -> u32 {
    if a < b {
        a
    } else {
        b
    }
}

impl<M: SharedMemory> Endpoint<M> {
    /// Our slot (0 or 1).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Our generation (changes at every attach).
    pub fn generation(&self) -> u32 {
        self.my_gen
    }

    /// The validated layout taken at attach.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Data size of the TX ring.
    pub fn tx_ring_size(&self) -> u32 {
        self.tx.size
    }

    /// Data size of the RX ring.
    pub fn rx_ring_size(&self) -> u32 {
        self.rx.size
    }

    /// Counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// The shared memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The latched error, if the endpoint is broken.
    pub fn broken(&self) -> Option<ChannelError> {
        self.broken
    }

    /// Latches fatal errors. `Corrupted` is also published (state BROKEN) so
    /// the peer stops instead of waiting for us.
    fn latch<T>(&mut self, r: Result<T, ChannelError>) -> Result<T, ChannelError> {
        if let Err(e) = r {
            if matches!(e, ChannelError::Corrupted | ChannelError::Reset) && self.broken.is_none() {
                self.broken = Some(e);
                if e == ChannelError::Corrupted && !self.closed {
                    // Best effort: the memory may be what is broken.
                    let _ = self
                        .mem
                        .store_u32_release(self.my_entry.wrapping_add(PEER_STATE), PEER_BROKEN);
                    self.pending_kick = true;
                }
            }
        }
        r
    }

    fn check_usable(&self) -> Result<(), ChannelError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        if self.closed {
            return Err(ChannelError::Closed);
        }
        Ok(())
    }
}
