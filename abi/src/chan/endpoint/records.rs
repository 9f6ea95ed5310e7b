//! The record format of the ring data (layout version 2): the reader polls
//! the length word in front of the payload — the line that carries the data
//! — instead of the producer's index line.
//!
//! * A record: an 8-byte header (`u32` length, `u32` reserved) at an
//!   8-aligned position, the payload (it may wrap around the ring's end),
//!   padding to 8 bytes.
//! * Publishing: payload first, then the header of the *next* record is
//!   cleared (0), then the length is stored with release. So the position a
//!   reader polls always holds either 0 or a length written for this lap and
//!   this connection: never a stale word of an earlier lap (old payload
//!   bytes could look like anything). That costs the producer room for one
//!   more header: a record of `n` bytes needs `record_bytes(n) + 8` free.
//! * A pad record (`REC_PAD | bytes`) skips to the ring's end. The producer
//!   writes one when it is past the first [`REC_WINDOW`] bytes of the ring
//!   and the reader has read everything: small messages then cycle through
//!   lines both cores' caches hold, instead of walking a ring of megabytes
//!   whose lines must come from memory or the other core's L3 every time.
//!
//! Uses `super::super::{error, layout, shm}` from the channel and
//! `super::indices` for the consumer's index.

use super::super::error::ChannelError;
use super::super::layout::{
    record_bytes, REC_HEADER, REC_LEN, REC_PAD, REC_WINDOW, REC_WINDOW_MAX_RECORD, RING_CONS,
    RING_PROD,
};
use super::super::shm::SharedMemory;
use super::Endpoint;

impl<M: SharedMemory> Endpoint<M> {
    /// Offset in memory of free-running TX position `pos`.
    fn tx_at(&self, pos: u32) -> usize {
        self.tx
            .offset
            .wrapping_add((pos & self.tx.size.wrapping_sub(1)) as usize)
    }

    /// Offset in memory of free-running RX position `pos`.
    pub(super) fn rx_at(&self, pos: u32) -> usize {
        self.rx
            .offset
            .wrapping_add((pos & self.rx.size.wrapping_sub(1)) as usize)
    }

    /// Largest payload of one record in a ring of `size` bytes (its header
    /// and the next record's cleared header must fit too).
    pub(super) fn max_payload(size: u32) -> u32 {
        size.saturating_sub(REC_HEADER.wrapping_mul(2))
    }

    /// Clears the header at TX position `pos`: "no record here yet".
    pub(super) fn clear_tx_header(&self, pos: u32) -> Result<(), ChannelError> {
        self.mem
            .store_u32_relaxed(self.tx_at(pos).wrapping_add(REC_LEN), 0)?;
        Ok(())
    }

    /// Publishes the record of `n` payload bytes at `self.prod` (its
    /// payload is already in place): clears the next header, stores the
    /// length, then moves `prod` past the record and publishes it, both
    /// with release.
    ///
    /// The producer index serves the slow paths (readable bytes,
    /// wake-ups); nobody polls it, so its store normally stays in this
    /// core's cache. It goes last so that whoever sees the index (acquire)
    /// sees every header it covers: a reader that arms a wake-up and finds
    /// the index past its wake point can read the data at once, instead of
    /// spinning on a header that is not visible yet. (A reader following
    /// the headers may therefore be ahead of the index for a moment.)
    pub(super) fn publish_record(&mut self, n: u32) -> Result<(), ChannelError> {
        let at = self.prod;
        let next = at.wrapping_add(record_bytes(n));
        self.clear_tx_header(next)?;
        self.mem
            .store_u32_release(self.tx_at(at).wrapping_add(REC_LEN), n)?;
        self.prod = next;
        self.publish_prod()
    }

    /// Stores our producer index (release).
    fn publish_prod(&self) -> Result<(), ChannelError> {
        self.mem
            .store_u32_release(self.tx_ctrl.wrapping_add(RING_PROD), self.prod)?;
        Ok(())
    }

    /// Before a record of `rec` bytes: if we are past the window and the
    /// consumer has read everything (looked up once per lap of the window),
    /// pad to the ring's end so the record goes to the beginning. Only when
    /// the pad, the record and the next header all fit: a pad never makes a
    /// write smaller than `writable_bytes` promised.
    ///
    /// The price: until the reader passes the pad, the writer has about a
    /// window of room, not the ring. "Everything read" is the sign of a
    /// reader that keeps up (a ping-pong, a fast consumer); a reader that is
    /// behind by even one record sees no pads, and its writer the whole
    /// ring.
    pub(super) fn maybe_pad(&mut self, rec: u32, free: u32) -> Result<u32, ChannelError> {
        let size = self.tx.size;
        let at = self.prod & size.wrapping_sub(1);
        if size < REC_WINDOW.wrapping_mul(4) || at < REC_WINDOW {
            self.tx_lagging = false;
            return Ok(free);
        }
        if self.tx_lagging || rec > REC_WINDOW_MAX_RECORD {
            return Ok(free);
        }
        // One look at the consumer's line per lap of the window.
        let free = self.tx_free()?;
        let unread = size.wrapping_sub(free);
        let pad = size.wrapping_sub(at);
        // After the pad: room for this record and its next header, and for
        // whatever a caller was promised.
        let room = rec.saturating_add(REC_HEADER);
        let need = pad.saturating_add(if room > self.tx_promised {
            room
        } else {
            self.tx_promised
        });
        if unread != 0 || free < need {
            self.tx_lagging = true;
            return Ok(free);
        }
        let at = self.prod;
        let start = at.wrapping_add(pad);
        self.clear_tx_header(start)?;
        self.mem
            .store_u32_release(self.tx_at(at).wrapping_add(REC_LEN), REC_PAD | pad)?;
        self.prod = start;
        self.publish_prod()?;
        Ok(free.wrapping_sub(pad))
    }

    /// The payload length of the RX record at `cons`, reading (acquire) and
    /// validating its header if not done yet, pads skipped; 0 = no record
    /// there yet. A length out of range, or a pad that does not end at the
    /// ring's end, is corruption.
    pub(super) fn rx_record(&mut self) -> Result<u32, ChannelError> {
        if self.rx_len != 0 {
            return Ok(self.rx_len);
        }
        let size = self.rx.size;
        let mut w = self
            .mem
            .load_u32_acquire(self.rx_at(self.cons).wrapping_add(REC_LEN))?;
        if w & REC_PAD != 0 {
            let pad = w & !REC_PAD;
            let at = self.cons & size.wrapping_sub(1);
            if pad < REC_HEADER
                || pad & (REC_HEADER - 1) != 0
                || at.wrapping_add(pad) != size
                || at == 0
            {
                return Err(ChannelError::Corrupted);
            }
            // The producer cleared the header at the ring's beginning
            // before it published the pad (acquire above): what we read
            // there is 0 or a record of this lap.
            self.cons = self.cons.wrapping_add(pad);
            self.publish_cons()?;
            w = self
                .mem
                .load_u32_acquire(self.rx_at(self.cons).wrapping_add(REC_LEN))?;
            if w & REC_PAD != 0 {
                // A pad right after a pad (from the ring's beginning).
                return Err(ChannelError::Corrupted);
            }
        }
        if w > Self::max_payload(size) {
            return Err(ChannelError::Corrupted);
        }
        self.rx_len = w;
        Ok(w)
    }

    /// Stores our consumer index (release): the space of every record read
    /// whole is the producer's again.
    pub(super) fn publish_cons(&self) -> Result<(), ChannelError> {
        self.mem
            .store_u32_release(self.rx_ctrl.wrapping_add(RING_CONS), self.cons)?;
        Ok(())
    }

    /// Payload bytes readable now, walking at most `max_records` records
    /// from `cons` (a lower bound beyond that); each header validated as a
    /// read would, and each record must lie within what the producer index
    /// covers. Does not move `cons` (pads are only looked through).
    pub(super) fn rx_payload_bytes(&mut self, max_records: u32) -> Result<u32, ChannelError> {
        let size = self.rx.size;
        let avail = self.rx_avail()?;
        let mut pos = self.cons;
        let mut total = 0u32;
        let mut off = self.rx_off;
        for _ in 0..max_records {
            // Only what the producer index covers: a header there must be
            // published (the index is stored after it).
            let used = pos.wrapping_sub(self.cons);
            if used >= avail {
                break;
            }
            let w = self
                .mem
                .load_u32_acquire(self.rx_at(pos).wrapping_add(REC_LEN))?;
            // Covered by the index, which is stored after the header: a
            // cleared header here is not the producer we agreed on.
            if w == 0 {
                return Err(ChannelError::Corrupted);
            }
            let rec = if w & REC_PAD != 0 {
                let pad = w & !REC_PAD;
                let at = pos & size.wrapping_sub(1);
                if pad < REC_HEADER || pad & (REC_HEADER - 1) != 0 || at.wrapping_add(pad) != size {
                    return Err(ChannelError::Corrupted);
                }
                pad
            } else {
                if w > Self::max_payload(size) {
                    return Err(ChannelError::Corrupted);
                }
                total = total.saturating_add(w.saturating_sub(off));
                record_bytes(w)
            };
            // A record the producer index does not cover whole: the index
            // is published after the record, so this is not the producer
            // we agreed on.
            if used.saturating_add(rec) > avail {
                return Err(ChannelError::Corrupted);
            }
            off = 0;
            pos = pos.wrapping_add(rec);
        }
        Ok(total)
    }
}
