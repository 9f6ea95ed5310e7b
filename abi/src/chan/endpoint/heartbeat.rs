//! Heartbeat counters in the peer table: ours, bumped by the embedder, and
//! the peer's, which the embedder compares over time to notice a peer that
//! died without closing (the policy is `super::super::liveness`).
//!
//! Uses `super::super::{error, layout, shm}` from the channel.

use super::super::error::ChannelError;
use super::super::layout::PEER_HEARTBEAT;
use super::super::shm::SharedMemory;
use super::Endpoint;

impl<M: SharedMemory> Endpoint<M> {
    /// The peer's heartbeat counter (compare over time to detect a peer
    /// that died without closing; the policy is the embedder's).
    pub fn peer_heartbeat(&self) -> Result<u32, ChannelError> {
        self.check_usable()?;
        Ok(self
            .mem
            .load_u32_relaxed(self.peer_entry.wrapping_add(PEER_HEARTBEAT))?)
    }

    /// Bumps our heartbeat counter.
    pub fn heartbeat(&mut self) -> Result<(), ChannelError> {
        self.check_usable()?;
        self.heartbeat = self.heartbeat.wrapping_add(1);
        let r = self
            .mem
            .store_u32_relaxed(self.my_entry.wrapping_add(PEER_HEARTBEAT), self.heartbeat)
            .map_err(ChannelError::from);
        self.latch(r)
    }
}
