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
use super::super::layout::{record_bytes, RingGeometry, REC_HEADER};
use super::super::shm::{OutOfBounds, SharedMemory};
use super::handshake::Conn;
use super::{min_u32, Endpoint};

/// Records [`Endpoint::readable_bytes`] walks at most: the count is exact
/// up to this many records (a poller only needs "some").
pub const READABLE_WALK: u32 = 64;

/// A buffer length as a byte count for the ring (rings are far smaller
/// than `u32::MAX`, so saturating loses nothing).
fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Copies `n` payload bytes at free-running position `pos` of `ring`, in
/// pieces split at the ring's end (two at most): `copy(mem, off, done,
/// step)` moves one piece (`done`: bytes of the caller's buffer before it).
/// Returns the bytes copied and the copy error that stopped it early, if
/// any. Publishes nothing: the caller publishes what was copied.
fn copy_pieces<M: SharedMemory, E>(
    mem: &M,
    ring: RingGeometry,
    pos: u32,
    n: u32,
    copy: &mut impl FnMut(&M, usize, usize, usize) -> Result<(), E>,
) -> Result<(u32, Option<E>), ChannelError> {
    let mask = ring.size.wrapping_sub(1);
    let mut done = 0u32;
    while done < n {
        let at = pos.wrapping_add(done) & mask;
        let step = min_u32(n.wrapping_sub(done), ring.size.wrapping_sub(at));
        let off = ring
            .offset
            .checked_add(at as usize)
            .ok_or(ChannelError::Corrupted)?;
        if let Err(e) = copy(mem, off, done as usize, step as usize) {
            return Ok((done, Some(e)));
        }
        done = done.wrapping_add(step);
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
        // One record per call. The consumer index only moves forward, so
        // the free space seen at the last look is a lower bound: re-read
        // the peer's index (a cache miss: the peer wrote that line) only
        // when the bound is too small for this write.
        let want = min_u32(clamp_len(len), Self::max_payload(self.tx.size));
        let known = self
            .tx
            .size
            .wrapping_sub(self.prod.wrapping_sub(self.peer_cons_seen));
        let mut free = if known >= record_bytes(want).wrapping_add(REC_HEADER) {
            known
        } else {
            self.tx_free()?
        };
        // Room for the header, the payload and the next header.
        let n = min_u32(want, Self::max_payload(free));
        if n == 0 {
            return Ok((0, None));
        }
        free = self.maybe_pad(record_bytes(n), free)?;
        let n = min_u32(n, Self::max_payload(free));
        if n == 0 {
            return Ok((0, None));
        }
        let payload = self.prod.wrapping_add(REC_HEADER);
        let (done, failed) = copy_pieces(&self.mem, self.tx, payload, n, fill)?;
        if done > 0 {
            // A failed second piece: the first one is a record of its own
            // (as write(2) reports a partial write).
            self.publish_record(done)?;
            self.tx_promised = self.tx_promised.saturating_sub(record_bytes(done));
        }
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
        // Record by record: the header at `cons` is the signal, in the line
        // that carries the data; a record may be read in several calls.
        let len = clamp_len(len);
        let mut got = 0u32;
        let mut failed = None;
        let start = self.cons;
        while got < len {
            let rec = self.rx_record()?;
            if rec == 0 {
                break;
            }
            let step = min_u32(rec.wrapping_sub(self.rx_off), len.wrapping_sub(got));
            let payload = self.cons.wrapping_add(REC_HEADER).wrapping_add(self.rx_off);
            // The caller's copy sees its own buffer offsets from `got` on.
            let mut at = |mem: &M, off: usize, to: usize, n: usize| {
                drain(mem, off, to.wrapping_add(got as usize), n)
            };
            let (done, err) = copy_pieces(&self.mem, self.rx, payload, step, &mut at)?;
            got = got.wrapping_add(done);
            self.rx_off = self.rx_off.wrapping_add(done);
            if self.rx_off >= rec {
                self.cons = self.cons.wrapping_add(record_bytes(rec));
                self.rx_len = 0;
                self.rx_off = 0;
            }
            if err.is_some() {
                failed = err;
                break;
            }
        }
        if self.cons != start {
            // Once per call, after the copies: the space of the records read
            // whole is the producer's again.
            self.publish_cons()?;
        }
        if got == 0 && failed.is_none() && draining {
            // Draining and nothing left: every record of the old connection
            // was published before its end (release), which we saw
            // (acquire).
            self.conn = Conn::Waiting { epipe: true };
            self.held = true;
            return Err(ChannelError::PeerGone);
        }
        self.stats.bytes_read = self.stats.bytes_read.wrapping_add(u64::from(got));
        Ok((got as usize, failed))
    }

    /// Bytes that `read` could return now (0 when not connected): the
    /// payload of the records published, counted over at most
    /// [`READABLE_WALK`] records (a lower bound beyond that, never 0 when
    /// there is something to read).
    pub fn readable_bytes(&mut self) -> Result<usize, ChannelError> {
        let r = self.sync().and_then(|()| match self.conn {
            Conn::Connected { .. } | Conn::Draining => {
                self.rx_payload_bytes(READABLE_WALK).map(|n| n as usize)
            }
            _ => Ok(0),
        });
        self.latch(r)
    }

    /// Bytes that the next `write` accepts at least (0 when not
    /// connected): the free space minus a record header and the next
    /// record's header. (An early pad to the ring's end happens only when
    /// the write still fits after it.)
    pub fn writable_bytes(&mut self) -> Result<usize, ChannelError> {
        let r = self.sync().and_then(|()| match self.conn {
            Conn::Connected { .. } => self.tx_free().map(|n| Self::max_payload(n) as usize),
            _ => Ok(0),
        });
        self.latch(r)
    }

    /// Bytes that writes of at most `piece` bytes each (1 ..= the largest
    /// record) are sure to get into TX now, one after the other: each write
    /// is a record with its own header, so small pieces take more of the
    /// ring than their payload. ivc-vmm's pio device grants the guest this
    /// for pieces of 1 byte, as its string writes arrive one element per
    /// VM exit. A promise over several writes: until that many bytes are
    /// written, the writer does not pad to the ring's end early (see
    /// `records.rs`).
    pub fn writable_bytes_in_pieces(&mut self, piece: usize) -> Result<usize, ChannelError> {
        let r = self.sync().and_then(|()| match self.conn {
            Conn::Connected { .. } => {
                let free = self.tx_free()?;
                let max = Self::max_payload(self.tx.size);
                let piece = min_u32(clamp_len(piece), max);
                if piece == 0 || piece == max {
                    return Ok(Self::max_payload(free) as usize);
                }
                self.tx_promised = free;
                // k records of `piece` bytes and the next header.
                let k = free
                    .saturating_sub(REC_HEADER)
                    .checked_div(record_bytes(piece))
                    .unwrap_or(0);
                Ok((k as usize).saturating_mul(piece as usize))
            }
            _ => Ok(0),
        });
        self.latch(r)
    }

    /// What [`writable_bytes`](Self::writable_bytes) says when the peer has
    /// read everything: the TX ring's size minus two record headers.
    pub fn tx_capacity(&self) -> usize {
        Self::max_payload(self.tx.size) as usize
    }
}
