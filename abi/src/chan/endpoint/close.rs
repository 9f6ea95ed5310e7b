//! Ending a connection from this side: [`reconnect`](Endpoint::reconnect)
//! (start over at once as a new incarnation) and
//! [`close`](Endpoint::close) (leave for good; also run by `Drop`).
//!
//! Uses `super::super::{error, layout, shm}` from the channel and
//! `super::handshake` for the connection state.

use super::super::error::ChannelError;
use super::super::layout::{
    PEER_ACK, PEER_BROKEN, PEER_CLOSED, PEER_GENERATION, PEER_STATE, PEER_UP,
};
use super::super::shm::SharedMemory;
use super::handshake::Conn;
use super::Endpoint;

impl<M: SharedMemory> Endpoint<M> {
    /// Ends the current connection (or discards its undrained remainder) at
    /// once and starts over, so a new connection can be made without
    /// draining.
    ///
    /// This side becomes a new incarnation (new generation, `ack` cleared),
    /// exactly as if it had re-attached: that is how the peer learns the old
    /// connection is over even though both sides stay up. The peer drains
    /// what we wrote, reports end of file and connects again.
    pub fn reconnect(&mut self) -> Result<(), ChannelError> {
        self.check_usable()?;
        let r = self.reconnect_inner();
        self.latch(r)
    }

    fn reconnect_inner(&mut self) -> Result<(), ChannelError> {
        let had_connection = match self.conn {
            Conn::Connected { .. } => {
                self.stats.disconnections = self.stats.disconnections.wrapping_add(1);
                true
            }
            Conn::Draining | Conn::Waiting { epipe: true } => true,
            Conn::Waiting { epipe: false } | Conn::Handshake { .. } => false,
        };
        let gen = match self.my_gen.wrapping_add(1) {
            0 => 1,
            g => g,
        };
        // Ack cleared before the generation is published (release): see
        // `claim`.
        self.mem
            .store_u32_relaxed(self.my_entry.wrapping_add(PEER_ACK), 0)?;
        self.mem
            .store_u32_release(self.my_entry.wrapping_add(PEER_GENERATION), gen)?;
        // Re-publish UP with release so a peer that reads the state sees
        // the new generation and the cleared ack.
        self.mem
            .store_u32_release(self.my_entry.wrapping_add(PEER_STATE), PEER_UP)?;
        self.my_gen = gen;
        self.conn = Conn::Waiting {
            epipe: had_connection,
        };
        self.eof_owed = false;
        // Starting over is the user's own request for a new connection.
        self.held = false;
        self.pending_kick = true;
        self.sync()
    }

    /// Closes this side: publishes state CLOSED (our written data stays
    /// readable for the peer, which then sees end of file). Afterwards
    /// every call returns [`ChannelError::Closed`] except the
    /// `needs_doorbell*` methods, which report the pending notification.
    /// Idempotent. Also run by `Drop`.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // After a re-format our entry belongs to the new format: leave it
        // (also when the re-format is only now visible).
        if self.broken != Some(ChannelError::Reset) && self.check_header().is_ok() {
            let st = if self.broken.is_some() {
                PEER_BROKEN
            } else {
                PEER_CLOSED
            };
            // Release: everything we wrote is visible before CLOSED.
            let _ = self
                .mem
                .store_u32_release(self.my_entry.wrapping_add(PEER_STATE), st);
            self.pending_kick = true;
        }
    }
}

impl<M: SharedMemory> Drop for Endpoint<M> {
    fn drop(&mut self) {
        self.close();
    }
}
