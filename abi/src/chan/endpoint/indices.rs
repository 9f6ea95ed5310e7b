//! Validated reads of the peer's ring indices: the only place the
//! endpoint reads an index from shared memory, so the rule "within one ring
//! size of our shadow, never backwards" is checked in one place for both
//! the data path and the wake-up protocol.
//!
//! Uses `super::super::{error, layout, shm}` from the channel.

use super::super::error::ChannelError;
use super::super::layout::{RING_CONS, RING_PROD};
use super::super::shm::SharedMemory;
use super::Endpoint;

impl<M: SharedMemory> Endpoint<M> {
    /// Bytes of RX ring published and not released yet (records, their
    /// headers and pads), from the peer's producer index, validated:
    /// `0 <= prod - cons <= size` and no backward movement.
    ///
    /// The data path does not need it (the reader polls record headers);
    /// readable byte counts and wake-ups do.
    pub(super) fn rx_avail(&mut self) -> Result<u32, ChannelError> {
        // Acquire: the records up to `p` are visible after this load.
        let p = self
            .mem
            .load_u32_acquire(self.rx_ctrl.wrapping_add(RING_PROD))?;
        // Reading follows the headers, and the producer stores its index
        // after the header: `cons` may be ahead of the index for a moment,
        // never by more than a ring. So positions are compared relative to
        // `cons`, within one ring either way.
        let p_rel = self.rel_to_cons(p).ok_or(ChannelError::Corrupted)?;
        // Not backwards from the last index seen (if that is still within
        // a ring of `cons`; an older one tells nothing).
        if let Some(seen) = self.rel_to_cons(self.peer_prod_seen) {
            if p_rel < seen {
                return Err(ChannelError::Corrupted);
            }
        }
        self.peer_prod_seen = p;
        Ok(u32::try_from(p_rel).unwrap_or(0))
    }

    /// `pos - cons` as a signed distance, if within one RX ring either way.
    fn rel_to_cons(&self, pos: u32) -> Option<i64> {
        let size = i64::from(self.rx.size);
        let d = i64::from(pos.wrapping_sub(self.cons) as i32);
        (0i64.wrapping_sub(size)..=size).contains(&d).then_some(d)
    }

    /// Bytes free in TX, from the peer's consumer index, validated:
    /// `0 <= prod - cons <= size` and no backward movement.
    pub(super) fn tx_free(&mut self) -> Result<u32, ChannelError> {
        // Acquire: the peer finished reading the bytes before `c`, so we may
        // overwrite them.
        let c = self
            .mem
            .load_u32_acquire(self.tx_ctrl.wrapping_add(RING_CONS))?;
        let used = self.prod.wrapping_sub(c);
        let max_used = self.prod.wrapping_sub(self.peer_cons_seen);
        if used > self.tx.size || used > max_used {
            return Err(ChannelError::Corrupted);
        }
        self.peer_cons_seen = c;
        Ok(self.tx.size.wrapping_sub(used))
    }
}
