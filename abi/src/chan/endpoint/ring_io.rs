//! The data path: [`write`](Endpoint::write) and
//! [`read`](Endpoint::read) (and their `_with` forms, where the caller
//! copies), moving bytes through the ring in at most two pieces and
//! publishing the index only over bytes whose copy succeeded; and the
//! readable/writable byte counts a poller asks for.
//!
//! Uses `super::super::{error, layout, shm}` from the channel,
//! `super::handshake` for the connection state and `super::indices` for
//! the peer's indices.

use super::super::error::{ChannelError, CopyError};
use super::super::layout::{RingGeometry, RING_CONS, RING_PROD};
use super::super::shm::{OutOfBounds, SharedMemory};
use super::handshake::Conn;
use super::{min_u32, Endpoint};

/// A buffer length as a byte count for the ring (rings are far smaller
/// than `u32::MAX`, so saturating loses nothing).
fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Moves `n` bytes through `ring` from `*index` on, in pieces split at the
/// ring's end (two at most): `copy(mem, off, done, step)` moves one piece
/// (`done`: bytes of the caller's buffer before it), then `*index` moves
/// past it and is stored at `index_off` with release, so the peer sees an
/// index only over bytes whose copy succeeded. Returns the bytes moved and
/// the copy error that stopped it early, if any.
fn move_pieces<M: SharedMemory, E>(
    mem: &M,
    ring: RingGeometry,
    index: &mut u32,
    index_off: usize,
    n: u32,
    copy: &mut impl FnMut(&M, usize, usize, usize) -> Result<(), E>,
) -> Result<(u32, Option<E>), ChannelError> {
    let mask = ring.size.wrapping_sub(1);
    let mut done = 0u32;
    while done < n {
        let pos = *index & mask;
        let step = min_u32(n.wrapping_sub(done), ring.size.wrapping_sub(pos));
        let off = ring
            .offset
            .checked_add(pos as usize)
            .ok_or(ChannelError::Corrupted)?;
        if let Err(e) = copy(mem, off, done as usize, step as usize) {
            return Ok((done, Some(e)));
        }
        *index = index.wrapping_add(step);
        done = done.wrapping_add(step);
        mem.store_u32_release(index_off, *index)?;
    }
    Ok((done, None))
}

/// The result of `write` / `read`, whose copies are between the ring and
/// our own buffer over a range validated at attach: a failed copy means the
/// memory changed under us.
fn own_copies((n, failed): (usize, Option<OutOfBounds>)) -> Result<usize, ChannelError> {
    match failed {
        Some(e) => Err(ChannelError::from(e)),
        None => Ok(n),
    }
}

/// The result of `write_with` / `read_with`: the caller's copy error when
/// nothing moved, else the count (a later piece's failure is a partial
/// transfer).
fn callers_copies<E>(r: Result<(usize, Option<E>), ChannelError>) -> Result<usize, CopyError<E>> {
    match r {
        Ok((0, Some(e))) => Err(CopyError::Copy(e)),
        Ok((n, _)) => Ok(n),
        Err(e) => Err(CopyError::Channel(e)),
    }
}

impl<M: SharedMemory> Endpoint<M> {
    /// Copies as much of `data` as fits into the TX ring and publishes it.
    ///
    /// `Ok(0)`: ring full, `data` empty, or not connected yet (peer absent
    /// or handshake running) — wait with
    /// [`arm_write_wakeup`](Self::arm_write_wakeup). Afterwards call
    /// [`needs_doorbell_after_write`](Self::needs_doorbell_after_write).
    /// `Err(PeerGone)`: the connection ended (`-EPIPE`).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, ChannelError> {
        let r = self
            .write_inner(data.len(), &mut |mem: &M, off, from, n| {
                let piece = data.get(from..from.wrapping_add(n)).ok_or(OutOfBounds)?;
                mem.write_bytes(off, piece)
            })
            .and_then(own_copies);
        self.latch(r)
    }

    /// [`write`](Self::write) of `len` bytes that the caller copies into the
    /// ring itself: `fill(mem, off, from, n)` must copy its source's bytes
    /// `from..from + n` to `off..off + n` of `mem` (at most two calls, the
    /// second after the ring's wrap). ivc.ko copies from the user's buffer
    /// straight into shared memory this way, without a bounce buffer.
    ///
    /// Bytes are published only after their copy succeeded. A failed first
    /// copy returns `CopyError::Copy` and publishes nothing; a failed
    /// second one publishes the first piece and returns its length, as
    /// `write(2)` reports a partial write.
    pub fn write_with<E>(
        &mut self,
        len: usize,
        mut fill: impl FnMut(&M, usize, usize, usize) -> Result<(), E>,
    ) -> Result<usize, CopyError<E>> {
        let r = self.write_inner(len, &mut fill);
        callers_copies(self.latch(r))
    }

    /// The write path: how many bytes were published, and the copy error
    /// that stopped it early, if any.
    fn write_inner<E>(
        &mut self,
        len: usize,
        fill: &mut impl FnMut(&M, usize, usize, usize) -> Result<(), E>,
    ) -> Result<(usize, Option<E>), ChannelError> {
        self.held = false;
        self.sync()?;
        match self.conn {
            Conn::Connected { .. } => {}
            Conn::Draining => {
                if self.rx_avail()? == 0 {
                    // Nothing left to read: the end is reported (here), so
                    // a new peer may be accepted once the user comes back;
                    // `read` still owes EOF.
                    self.conn = Conn::Waiting { epipe: true };
                    self.eof_owed = true;
                    self.held = true;
                }
                return Err(ChannelError::PeerGone);
            }
            Conn::Waiting { epipe: true } => {
                self.held = true;
                return Err(ChannelError::PeerGone);
            }
            Conn::Waiting { .. } | Conn::Handshake { .. } => return Ok((0, None)),
        }
        if len == 0 {
            return Ok((0, None));
        }
        // The consumer index only moves forward, so the free space seen at
        // the last look is a lower bound. Re-read the peer's index (a cache
        // miss: the peer wrote that line) only when the bound is too small
        // for this write; a ping-pong then touches one line less per message.
        let known = self
            .tx
            .size
            .wrapping_sub(self.prod.wrapping_sub(self.peer_cons_seen));
        let free = if known >= clamp_len(len) {
            known
        } else {
            self.tx_free()?
        };
        let n = min_u32(free, clamp_len(len));
        // Release on each index store: the data is visible before the index
        // that covers it.
        let ctrl = self.tx_ctrl.wrapping_add(RING_PROD);
        let (done, failed) = move_pieces(&self.mem, self.tx, &mut self.prod, ctrl, n, fill)?;
        self.stats.bytes_written = self.stats.bytes_written.wrapping_add(u64::from(done));
        Ok((done as usize, failed))
    }

    /// Copies up to `buf.len()` bytes out of the RX ring and releases the
    /// space.
    ///
    /// `Ok(0)`: nothing to read now (or `buf` empty) — wait with
    /// [`arm_read_wakeup`](Self::arm_read_wakeup). `Err(PeerGone)`: the
    /// connection ended and everything it left was read — end of file,
    /// reported once per connection. Afterwards call
    /// [`needs_doorbell_after_read`](Self::needs_doorbell_after_read).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let len = buf.len();
        let r = self
            .read_inner(len, &mut |mem: &M, off, to, n| {
                let piece = buf.get_mut(to..to.wrapping_add(n)).ok_or(OutOfBounds)?;
                mem.read_bytes(off, piece)
            })
            .and_then(own_copies);
        self.latch(r)
    }

    /// [`read`](Self::read) of up to `len` bytes that the caller copies out
    /// of the ring itself: `drain(mem, off, to, n)` must copy `off..off + n`
    /// of `mem` to its destination's bytes `to..to + n` (at most two calls).
    /// ivc.ko copies from shared memory straight into the user's buffer this
    /// way.
    ///
    /// Bytes are consumed only after their copy succeeded. A failed first
    /// copy returns `CopyError::Copy` and consumes nothing (the data stays
    /// for the next read); a failed second one consumes the first piece and
    /// returns its length.
    pub fn read_with<E>(
        &mut self,
        len: usize,
        mut drain: impl FnMut(&M, usize, usize, usize) -> Result<(), E>,
    ) -> Result<usize, CopyError<E>> {
        let r = self.read_inner(len, &mut drain);
        callers_copies(self.latch(r))
    }

    /// The read path: how many bytes were consumed, and the copy error that
    /// stopped it early, if any.
    fn read_inner<E>(
        &mut self,
        len: usize,
        drain: &mut impl FnMut(&M, usize, usize, usize) -> Result<(), E>,
    ) -> Result<(usize, Option<E>), ChannelError> {
        self.held = false;
        self.sync()?;
        if self.eof_owed {
            // The end of an earlier connection was first seen by `write`;
            // the reader hears it before any data of a newer connection.
            self.eof_owed = false;
            self.held = true;
            return Err(ChannelError::PeerGone);
        }
        let draining = match self.conn {
            Conn::Connected { .. } => false,
            Conn::Draining => true,
            Conn::Waiting { .. } | Conn::Handshake { .. } => return Ok((0, None)),
        };
        if len == 0 {
            return Ok((0, None));
        }
        // Bytes published but not read yet, from the last look at the
        // producer index: when they fill the request, the index need not be
        // read again (the line is the producer's, so each look is a cache
        // miss).
        let known = self.peer_prod_seen.wrapping_sub(self.cons);
        let avail = if known >= clamp_len(len) {
            known
        } else {
            self.rx_avail()?
        };
        if avail == 0 {
            if draining {
                self.conn = Conn::Waiting { epipe: true };
                self.held = true;
                return Err(ChannelError::PeerGone);
            }
            return Ok((0, None));
        }
        let n = min_u32(avail, clamp_len(len));
        // Release on each index store: our reads of the data complete before
        // the producer may reuse the space.
        let ctrl = self.rx_ctrl.wrapping_add(RING_CONS);
        let (done, failed) = move_pieces(&self.mem, self.rx, &mut self.cons, ctrl, n, drain)?;
        self.stats.bytes_read = self.stats.bytes_read.wrapping_add(u64::from(done));
        Ok((done as usize, failed))
    }

    /// Bytes that `read` could return now (0 when not connected).
    pub fn readable_bytes(&mut self) -> Result<usize, ChannelError> {
        let r = self.sync().and_then(|()| match self.conn {
            Conn::Connected { .. } | Conn::Draining => self.rx_avail().map(|n| n as usize),
            _ => Ok(0),
        });
        self.latch(r)
    }

    /// Bytes that `write` could accept now (0 when not connected).
    pub fn writable_bytes(&mut self) -> Result<usize, ChannelError> {
        let r = self.sync().and_then(|()| match self.conn {
            Conn::Connected { .. } => self.tx_free().map(|n| n as usize),
            _ => Ok(0),
        });
        self.latch(r)
    }
}
