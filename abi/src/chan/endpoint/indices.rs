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
    /// Bytes readable in RX, from the peer's producer index, validated:
    /// `0 <= prod - cons <= size` and no backward movement.
    pub(super) fn rx_avail(&mut self) -> Result<u32, ChannelError> {
        // Acquire: the data bytes up to `p` are visible after this load.
        let p = self
            .mem
            .load_u32_acquire(self.rx_ctrl.wrapping_add(RING_PROD))?;
        let avail = p.wrapping_sub(self.cons);
        let seen = self.peer_prod_seen.wrapping_sub(self.cons);
        if avail > self.rx.size || avail < seen {
            return Err(ChannelError::Corrupted);
        }
        self.peer_prod_seen = p;
        Ok(avail)
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
