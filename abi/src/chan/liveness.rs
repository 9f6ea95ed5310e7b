//! [`Liveness`]: noticing, from its heartbeat, a peer that died without
//! closing (a killed VM, a VMM without a rendezvous server to announce its
//! exit). One rule for every embedder: the kernel module's poller and
//! ivc-vmm's ivc-pio heartbeat thread both call [`Liveness::check`].
//!
//! Uses `super::endpoint`, `super::layout` and `super::shm` from its
//! siblings.

use super::endpoint::{Endpoint, PeerState};
use super::layout::mark_absent;
use super::shm::SharedMemory;

/// What the last look saw of a connected peer's heartbeat counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    /// The peer's heartbeat at the last look, while connected.
    beat: Option<u32>,
    /// When (`now_ms` of [`check`](Self::check)) it last changed.
    since_ms: u64,
}

impl Liveness {
    /// Nothing seen yet.
    pub const fn new() -> Self {
        Self {
            beat: None,
            since_ms: 0,
        }
    }

    /// One look at `now_ms` (milliseconds on any monotonic clock).
    ///
    /// A connected peer whose heartbeat has not moved for more than
    /// `timeout_ms` (0: never give up) died without closing: its slot is
    /// marked absent, as its own close would have, so this side drains what
    /// the peer sent, then reads end of file, and a new incarnation of the
    /// peer can attach to the slot. Returns `true` when it did that (for
    /// the caller to log). The clock starts at the first look that sees a
    /// given heartbeat value.
    pub fn check<M: SharedMemory>(
        &mut self,
        ep: &mut Endpoint<M>,
        now_ms: u64,
        timeout_ms: u64,
    ) -> bool {
        let beat = match ep.peer_state() {
            Ok(PeerState::Connected) => ep.peer_heartbeat().ok(),
            _ => None,
        };
        let Some(beat) = beat else {
            self.beat = None;
            return false;
        };
        if self.beat != Some(beat) {
            self.beat = Some(beat);
            self.since_ms = now_ms;
            return false;
        }
        if timeout_ms == 0 || now_ms.wrapping_sub(self.since_ms) <= timeout_ms {
            return false;
        }
        // The slot comes from a validated endpoint, so marking cannot fail;
        // if it did, giving the connection up ourselves ends it the same way.
        if mark_absent(ep.memory(), ep.slot() ^ 1).is_err() {
            let _ = ep.reconnect();
        }
        let _ = ep.peer_state();
        self.beat = None;
        true
    }
}
