//! The connection state machine: how an [`Endpoint`] sees the peer's
//! entry in the peer table, accepts a peer generation, completes the
//! two-sided acknowledgement and notices the end of a connection. Every
//! operation runs [`sync`](Endpoint::sync) first.
//!
//! Uses `super::super::{error, layout, shm}` from the channel.

use super::super::error::ChannelError;
use super::super::layout::{
    HDR_EPOCH, HDR_MAGIC, MAGIC, PEER_ACK, PEER_ATTACHING, PEER_GENERATION, PEER_STATE, PEER_UP,
    RING_CONS, RING_DATA_WANTED, RING_PROD, RING_SPACE_WANTED,
};
use super::super::shm::SharedMemory;
use super::Endpoint;

/// The connection as seen from this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// No connection yet: waiting for a peer to attach (or to finish with
    /// its previous connection).
    Waiting,
    /// Handshake in progress; data does not flow yet.
    Connecting,
    /// Connected: data flows both ways.
    Connected,
    /// The connection ended (peer closed, restarted, broke or was marked
    /// absent). Data it left can still be read; writes fail with
    /// [`ChannelError::PeerGone`]. A new peer incarnation is accepted once
    /// the end was reported (see [`Endpoint::read`]) and the user came back
    /// (see [`Endpoint::resume`]).
    Gone,
}

/// Where the connection stands; private to the endpoint, read by every
/// operation's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Conn {
    /// No connection. `epipe`: a connection ended and writes fail until a
    /// new one is accepted.
    Waiting { epipe: bool },
    /// We accepted `peer_gen` (reset our indices, published our ack) and
    /// wait for the peer's ack of our generation.
    Handshake { peer_gen: u32 },
    /// Both acks are in place.
    Connected { peer_gen: u32 },
    /// Connection with `peer_gen` ended; draining what it left in RX.
    Draining,
}

/// One validated read of the peer's entry.
#[derive(Debug, Clone, Copy)]
struct PeerSnap {
    state: u32,
    gen: u32,
    ack: u32,
}

impl<M: SharedMemory> Endpoint<M> {
    /// One snapshot of the peer's entry; an unknown state is corruption.
    fn read_peer(&self) -> Result<PeerSnap, ChannelError> {
        // Acquire on each, in this order: state (published last at
        // attach); generation (published after the ack was cleared, so once
        // we see a new generation we cannot read a stale ack of its previous
        // incarnation); ack (published after the peer reset its indices, so
        // our later index reads see the reset).
        let state = self
            .mem
            .load_u32_acquire(self.peer_entry.wrapping_add(PEER_STATE))?;
        let gen = self
            .mem
            .load_u32_acquire(self.peer_entry.wrapping_add(PEER_GENERATION))?;
        let ack = self
            .mem
            .load_u32_acquire(self.peer_entry.wrapping_add(PEER_ACK))?;
        if state > PEER_ATTACHING {
            return Err(ChannelError::Corrupted);
        }
        Ok(PeerSnap { state, gen, ack })
    }

    /// Header still ours? A formatter changes the magic first and the epoch
    /// before restoring it.
    pub(super) fn check_header(&self) -> Result<(), ChannelError> {
        let magic = self.mem.load_u32_relaxed(HDR_MAGIC)?;
        let epoch = self.mem.load_u32_relaxed(HDR_EPOCH)?;
        if magic != MAGIC || epoch != self.layout.epoch {
            return Err(ChannelError::Reset);
        }
        Ok(())
    }

    /// Starts a connection with peer generation `peer_gen`: our indices go
    /// to the base value, the first record header of our TX ring is cleared
    /// (the ring still holds the previous connection's records, which the
    /// new reader must not take for its own), then our ack is published
    /// (release).
    fn accept(&mut self, peer_gen: u32) -> Result<(), ChannelError> {
        let base = self.layout.index_base;
        self.clear_tx_header(base)?;
        self.rx_len = 0;
        self.rx_off = 0;
        self.tx_lagging = false;
        self.tx_promised = 0;
        self.mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_PROD), base)?;
        self.mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_SPACE_WANTED), 0)?;
        self.mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_CONS), base)?;
        self.mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_DATA_WANTED), 0)?;
        self.prod = base;
        self.cons = base;
        self.peer_prod_seen = base;
        self.peer_cons_seen = base;
        self.kick_prod_from = base;
        self.kick_cons_from = base;
        self.mem
            .store_u32_release(self.my_entry.wrapping_add(PEER_ACK), peer_gen)?;
        self.pending_kick = true;
        self.conn = Conn::Handshake { peer_gen };
        Ok(())
    }

    /// Advances the connection state machine from one snapshot of the
    /// peer's entry. Runs at the start of every operation.
    pub(super) fn sync(&mut self) -> Result<(), ChannelError> {
        self.check_usable()?;
        self.check_header()?;
        let p = self.read_peer()?;
        if let Conn::Waiting { .. } = self.conn {
            // Accept a live peer unless it still uses our indices for a
            // connection with an older incarnation of us (its ack names a
            // generation of ours other than the current one), or the user
            // has not come back since the last end was reported (`held`).
            if !self.held
                && p.state == PEER_UP
                && p.gen != 0
                && (p.ack == 0 || p.ack == self.my_gen)
            {
                self.accept(p.gen)?;
            }
        }
        match self.conn {
            Conn::Waiting { .. } | Conn::Draining => {}
            Conn::Handshake { peer_gen } => {
                if p.state != PEER_UP || p.gen != peer_gen {
                    // It left during the handshake. If it had acked us it
                    // may have sent data: drain. Otherwise its indices are
                    // not known to be reset, so there is nothing to read.
                    if p.gen == peer_gen && p.ack == self.my_gen {
                        self.conn = Conn::Draining;
                    } else {
                        self.conn = Conn::Waiting { epipe: false };
                    }
                } else if p.ack == self.my_gen {
                    self.conn = Conn::Connected { peer_gen };
                    self.stats.connections = self.stats.connections.wrapping_add(1);
                }
            }
            Conn::Connected { peer_gen } => {
                if p.state != PEER_UP || p.gen != peer_gen || p.ack != self.my_gen {
                    self.conn = Conn::Draining;
                    self.stats.disconnections = self.stats.disconnections.wrapping_add(1);
                }
            }
        }
        Ok(())
    }

    /// Public view of the connection; also advances the handshake. Call it
    /// on every doorbell interrupt (or poll tick), then
    /// [`needs_doorbell`](Self::needs_doorbell).
    ///
    /// It is passive: after the end of a connection was reported it does not
    /// accept a new peer (see [`resume`](Self::resume)).
    pub fn peer_state(&mut self) -> Result<PeerState, ChannelError> {
        let r = self.sync();
        self.latch(r)?;
        Ok(match self.conn {
            Conn::Waiting { epipe: true } | Conn::Draining => PeerState::Gone,
            Conn::Waiting { .. } => PeerState::Waiting,
            Conn::Handshake { .. } => PeerState::Connecting,
            Conn::Connected { .. } => PeerState::Connected,
        })
    }

    /// The user is still using the channel after the end of a connection was
    /// reported (it polls, reads or writes again): a new peer incarnation may
    /// be accepted from now on. The data-path calls (`read*`, `write*`,
    /// `arm_*_wakeup`) do this themselves; an embedder calls it where a user
    /// asks without moving data, e.g. in `poll(2)`. Calls made for no user
    /// (a poller, an interrupt handler, a heartbeat) must not.
    pub fn resume(&mut self) {
        self.held = false;
    }
}
