//! Wake-up suppression: before sleeping, a side arms a flag and a wake
//! index in the ring's control block; after moving data, the other side
//! decides from them whether the doorbell must be rung, and whose
//! ([`peer_doorbell_id`](Endpoint::peer_doorbell_id)).
//!
//! Uses `super::super::{error, layout, shm}` from the channel,
//! `super::handshake` for the connection state and `super::indices` for
//! the peer's indices.

use super::super::error::ChannelError;
use super::super::layout::{
    PEER_DOORBELL_ID, REC_HEADER, RING_DATA_WAKE_AT, RING_DATA_WANTED, RING_SPACE_WAKE_AT,
    RING_SPACE_WANTED,
};
use super::super::shm::SharedMemory;
use super::handshake::Conn;
use super::{min_u32, Endpoint};

/// Result of arming a wake-up: whether the caller may go to sleep.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The condition already holds (or something changed): do not sleep,
    /// retry the operation.
    Ready,
    /// Nothing to do now; the peer will ring the doorbell when the condition
    /// may hold. Sleep until a doorbell (or a timeout) and retry.
    MaySleep,
}

/// `v` clamped to `1..=max` (`u32::clamp` would assert `1 <= max`).
fn clamp_min(v: u32, max: u32) -> u32 {
    min_u32(if v == 0 { 1 } else { v }, max)
}

impl<M: SharedMemory> Endpoint<M> {
    /// Asks the peer to ring our doorbell once at least `min_bytes` (clamped
    /// to 1..=the largest record payload) are readable, then re-checks. The
    /// doorbell may come early (the producer index also counts record
    /// headers and pads): re-check and arm again.
    ///
    /// Protocol: store "wanted" and the wake index, full fence, re-read the
    /// producer index. The producer does the mirror image (publish index,
    /// full fence, read our flag), so at least one of us sees the other's
    /// store: either we see the data and return `Ready`, or it sees our
    /// request and rings. Call immediately before sleeping, every time.
    pub fn arm_read_wakeup(&mut self, min_bytes: u32) -> Result<Readiness, ChannelError> {
        let r = self.arm_read_inner(min_bytes);
        self.latch(r)
    }

    fn arm_read_inner(&mut self, min_bytes: u32) -> Result<Readiness, ChannelError> {
        self.held = false;
        self.sync()?;
        if self.eof_owed {
            return Ok(Readiness::Ready);
        }
        match self.conn {
            Conn::Connected { .. } => {}
            // Data or EOF is there to collect.
            Conn::Draining => return Ok(Readiness::Ready),
            // Lifecycle changes always ring the doorbell: nothing to arm.
            Conn::Waiting { .. } | Conn::Handshake { .. } => return Ok(Readiness::MaySleep),
        }
        let min = clamp_min(min_bytes, Self::max_payload(self.rx.size));
        // In ring bytes from `cons`: what was read of the current record,
        // a header, `min` payload bytes. When `min` payload bytes are
        // readable the producer index is at least that far (it counts the
        // headers and pads too), so a wake-up is never lost; it may come
        // early (headers, pads), and the reader then simply arms again.
        let need = self.rx_off.wrapping_add(REC_HEADER).wrapping_add(min);
        let wake_at = self.cons.wrapping_add(need).wrapping_sub(1);
        self.mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_DATA_WAKE_AT), wake_at)?;
        self.mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_DATA_WANTED), 1)?;
        self.mem.fence_seqcst();
        if self.rx_avail()? >= need {
            Ok(Readiness::Ready)
        } else {
            Ok(Readiness::MaySleep)
        }
    }

    /// Asks the peer to ring our doorbell once a write of at least
    /// `min_bytes` (clamped to 1..=the largest record payload) fits in TX,
    /// then re-checks (mirror image of
    /// [`arm_read_wakeup`](Self::arm_read_wakeup)).
    pub fn arm_write_wakeup(&mut self, min_bytes: u32) -> Result<Readiness, ChannelError> {
        let r = self.arm_write_inner(min_bytes);
        self.latch(r)
    }

    fn arm_write_inner(&mut self, min_bytes: u32) -> Result<Readiness, ChannelError> {
        self.held = false;
        self.sync()?;
        match self.conn {
            Conn::Connected { .. } => {}
            // `write` would fail right away.
            Conn::Draining | Conn::Waiting { epipe: true } => return Ok(Readiness::Ready),
            Conn::Waiting { .. } | Conn::Handshake { .. } => return Ok(Readiness::MaySleep),
        }
        let min = clamp_min(min_bytes, Self::max_payload(self.tx.size));
        // A write of `min` bytes needs `need` free (a header, the payload,
        // the next header). Free >= need  <=>  cons >= prod - size + need
        // <=>  cons passes prod - size + need - 1.
        let need = min.wrapping_add(REC_HEADER.wrapping_mul(2));
        let wake_at = self
            .prod
            .wrapping_sub(self.tx.size)
            .wrapping_add(need)
            .wrapping_sub(1);
        self.mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_SPACE_WAKE_AT), wake_at)?;
        self.mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_SPACE_WANTED), 1)?;
        self.mem.fence_seqcst();
        if self.tx_free()? >= need {
            Ok(Readiness::Ready)
        } else {
            Ok(Readiness::MaySleep)
        }
    }

    /// `true`: arm a read wake-up for 1 byte (see
    /// [`arm_read_wakeup`](Self::arm_read_wakeup)); `false`: withdraw it.
    pub fn set_wants_read_wakeup(&mut self, on: bool) -> Result<Readiness, ChannelError> {
        if on {
            return self.arm_read_wakeup(1);
        }
        self.check_usable()?;
        let r = self
            .mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_DATA_WANTED), 0)
            .map_err(ChannelError::from);
        self.latch(r)?;
        Ok(Readiness::Ready)
    }

    /// `true`: arm a write wake-up for 1 byte (see
    /// [`arm_write_wakeup`](Self::arm_write_wakeup)); `false`: withdraw it.
    pub fn set_wants_write_wakeup(&mut self, on: bool) -> Result<Readiness, ChannelError> {
        if on {
            return self.arm_write_wakeup(1);
        }
        self.check_usable()?;
        let r = self
            .mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_SPACE_WANTED), 0)
            .map_err(ChannelError::from);
        self.latch(r)?;
        Ok(Readiness::Ready)
    }

    /// After one or more writes: must the peer's doorbell be rung?
    ///
    /// True if a lifecycle change is pending, or if the data published since
    /// the last call crossed the peer's requested wake index while the peer
    /// asked for a wake-up. Issues the full fence of the suppression
    /// protocol. Works on a closed or broken endpoint too (to deliver the
    /// close/broken notification).
    pub fn needs_doorbell_after_write(&mut self) -> bool {
        let mut kick = core::mem::take(&mut self.pending_kick);
        if self.prod != self.kick_prod_from {
            self.mem.fence_seqcst();
            let wanted = self
                .mem
                .load_u32_relaxed(self.tx_ctrl.wrapping_add(RING_DATA_WANTED));
            let wake_at = self
                .mem
                .load_u32_relaxed(self.tx_ctrl.wrapping_add(RING_DATA_WAKE_AT));
            kick |= match (wanted, wake_at) {
                (Ok(w), Ok(at)) => {
                    w != 0
                        && at.wrapping_sub(self.kick_prod_from)
                            < self.prod.wrapping_sub(self.kick_prod_from)
                }
                // Cannot happen with a validated layout; ringing is the
                // safe answer.
                _ => true,
            };
            self.kick_prod_from = self.prod;
        }
        if kick {
            self.stats.doorbells = self.stats.doorbells.wrapping_add(1);
        }
        kick
    }

    /// After one or more reads: must the peer's doorbell be rung? Mirror
    /// image of [`needs_doorbell_after_write`](Self::needs_doorbell_after_write)
    /// for the producer's space wake-up.
    pub fn needs_doorbell_after_read(&mut self) -> bool {
        let mut kick = core::mem::take(&mut self.pending_kick);
        if self.cons != self.kick_cons_from {
            self.mem.fence_seqcst();
            let wanted = self
                .mem
                .load_u32_relaxed(self.rx_ctrl.wrapping_add(RING_SPACE_WANTED));
            let wake_at = self
                .mem
                .load_u32_relaxed(self.rx_ctrl.wrapping_add(RING_SPACE_WAKE_AT));
            kick |= match (wanted, wake_at) {
                (Ok(w), Ok(at)) => {
                    w != 0
                        && at.wrapping_sub(self.kick_cons_from)
                            < self.cons.wrapping_sub(self.kick_cons_from)
                }
                _ => true,
            };
            self.kick_cons_from = self.cons;
        }
        if kick {
            self.stats.doorbells = self.stats.doorbells.wrapping_add(1);
        }
        kick
    }

    /// Both of the above: call after any batch of operations (and after
    /// `peer_state` on a doorbell) when one doorbell serves both directions.
    pub fn needs_doorbell(&mut self) -> bool {
        let w = self.needs_doorbell_after_write();
        let r = self.needs_doorbell_after_read();
        w | r
    }

    /// The peer's published ivshmem peer id, if any (untrusted: only use it
    /// as the doorbell target, which the VMM validates).
    pub fn peer_doorbell_id(&self) -> Result<Option<u16>, ChannelError> {
        self.check_usable()?;
        let v = self
            .mem
            .load_u32_relaxed(self.peer_entry.wrapping_add(PEER_DOORBELL_ID))?;
        Ok(u16::try_from(v).ok())
    }
}
