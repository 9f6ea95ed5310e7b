// SPDX-License-Identifier: GPL-2.0

//! What the file semantics (`pipe`) need from a channel transport.
//!
//! A transport moves bytes without ever blocking; `pipe` adds waiting,
//! signals, `O_NONBLOCK` and `poll` on top. All methods may be called from
//! process context concurrently (one reader and one writer at a time).

use kernel::prelude::*;

use crate::ffi::{DmaBuffer, UserBuf};
use crate::pio_transport::PioTransport;
use crate::shm_transport::ShmTransport;

/// What a non-blocking read found.
pub(crate) enum ReadOutcome {
    /// `n > 0` bytes were copied.
    Data(usize),
    /// Nothing to read now; may block.
    Empty,
    /// The peer closed and everything it sent was read.
    Eof,
}

/// Which direction a waiter waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Data to read (or end of file).
    Read,
    /// Room to write (or a gone peer, so `write` fails at once).
    Write,
}

/// One direction's staging buffer, between the user's buffer and the
/// device: none for shared memory (it copies between the user's buffer and
/// the ring directly); kernel memory for port I/O's string instructions;
/// for its descriptor mode, device-visible memory and the descriptor that
/// names it.
pub(crate) enum Staging {
    /// Plain kernel memory (empty for shared memory).
    Plain(KVec<u8>),
    /// Descriptor mode: `data` is what the device copies to or from,
    /// `desc` this direction's descriptor, which the device reads.
    Desc { desc: DmaBuffer, data: DmaBuffer },
}

impl Staging {
    /// No staging (shared memory).
    pub(crate) fn none() -> Self {
        Staging::Plain(KVec::new())
    }

    /// `bytes` of plain kernel memory.
    pub(crate) fn plain(bytes: usize) -> Result<Self> {
        Ok(Staging::Plain(KVec::from_elem(0u8, bytes, GFP_KERNEL)?))
    }

    /// The bytes staged.
    pub(crate) fn data(&self) -> &[u8] {
        match self {
            Staging::Plain(v) => v,
            Staging::Desc { data, .. } => data.bytes(),
        }
    }

    /// The bytes staged, to fill.
    pub(crate) fn data_mut(&mut self) -> &mut [u8] {
        match self {
            Staging::Plain(v) => v,
            Staging::Desc { data, .. } => data.bytes_mut(),
        }
    }
}

/// The read side's staging buffer (port I/O only; empty for shared memory)
/// and the bytes in it that were read from the device but not delivered
/// yet: `buf[from..from + held]`.
pub(crate) struct RxStaging {
    buf: Staging,
    from: usize,
    held: usize,
}

impl RxStaging {
    /// `buf`, holding nothing.
    pub(crate) fn new(buf: Staging) -> Self {
        Self {
            buf,
            from: 0,
            held: 0,
        }
    }

    /// Bytes waiting for the next read.
    pub(crate) fn held(&self) -> usize {
        self.held
    }
}

/// A snapshot for `poll(2)` and for the poller's change detection.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Status {
    /// A read would not block (data, end of file or an error to report).
    pub(crate) readable: bool,
    /// A write would not block (room, or an error to report).
    pub(crate) writable: bool,
    /// The peer went away (`POLLHUP`).
    pub(crate) hangup: bool,
    /// The channel is broken or the device gone (`POLLERR`).
    pub(crate) error: bool,
}

/// The transports a device can run.
pub(crate) enum Transport {
    /// Shared memory, polled or with doorbell interrupts.
    Shm(ShmTransport),
    /// Port I/O relayed by the VMM, polled.
    Pio(PioTransport),
}

impl Transport {
    /// The PCI device, for `dev_*` log lines.
    pub(crate) fn device(&self) -> &kernel::device::Device {
        match self {
            Transport::Shm(t) => t.device(),
            Transport::Pio(t) => t.device(),
        }
    }

    /// First opener: join the channel.
    pub(crate) fn open(&self) -> Result {
        match self {
            Transport::Shm(t) => t.open(),
            Transport::Pio(t) => t.open(),
        }
    }

    /// Last closer: leave the channel (the peer sees end of file).
    pub(crate) fn release(&self) {
        match self {
            Transport::Shm(t) => t.release(),
            Transport::Pio(t) => t.release(),
        }
    }

    /// The device is going away: fail every later operation with `ENODEV`.
    pub(crate) fn shutdown(&self) {
        match self {
            Transport::Shm(t) => t.shutdown(),
            Transport::Pio(t) => t.shutdown(),
        }
    }

    /// Copies available bytes into `out` (at most `out.len()`) without
    /// blocking. Shared memory copies from the ring straight into the
    /// user's buffer; port I/O reads into `rx`'s staging buffer first, and
    /// bytes it took from the device but could not copy out (a bad user
    /// address) stay there for the next read, so `EFAULT` loses nothing.
    pub(crate) fn try_read(&self, out: &UserBuf, rx: &mut RxStaging) -> Result<ReadOutcome> {
        match self {
            Transport::Shm(t) => t.try_read(out),
            Transport::Pio(t) => {
                if rx.held > 0 {
                    // What an earlier read could not deliver comes first.
                    let n = rx.held.min(out.len());
                    let end = rx.from.checked_add(n).ok_or(EINVAL)?;
                    out.write_at(0, rx.buf.data().get(rx.from..end).ok_or(EINVAL)?)?;
                    rx.from = end;
                    rx.held -= n;
                    return Ok(ReadOutcome::Data(n));
                }
                let len = out.len().min(rx.buf.data().len());
                let r = t.try_read(&mut rx.buf, len)?;
                if let ReadOutcome::Data(n) = r {
                    if let Err(e) = out.write_at(0, rx.buf.data().get(..n).ok_or(EINVAL)?) {
                        rx.from = 0;
                        rx.held = n;
                        return Err(e);
                    }
                }
                Ok(r)
            }
        }
    }

    /// Copies what fits of `input`'s bytes from `from` on without blocking;
    /// `Ok(0)` when full or not yet connected, `EPIPE` when the peer is
    /// gone. Shared memory copies from the user's buffer straight into the
    /// ring; port I/O stages up to what `staging` holds first.
    pub(crate) fn try_write(
        &self,
        input: &UserBuf,
        from: usize,
        staging: &mut Staging,
    ) -> Result<usize> {
        match self {
            Transport::Shm(t) => t.try_write(input, from),
            Transport::Pio(t) => {
                let n = input.len().saturating_sub(from).min(staging.data().len());
                input.read_at(from, staging.data_mut().get_mut(..n).ok_or(EINVAL)?)?;
                t.try_write(staging, n)
            }
        }
    }

    /// A user call (read, write, poll) begins: if the end of a connection
    /// was reported to a user, a new peer may now be connected. The poller
    /// and the interrupt handler never call this, so a user that got end of
    /// file and is closing is not handed a new peer whose data it would drop
    /// (docs/protocol.md, "Connection handshake").
    pub(crate) fn resume(&self) {
        match self {
            Transport::Shm(t) => t.resume(),
            Transport::Pio(t) => t.resume(),
        }
    }

    /// Current readiness.
    pub(crate) fn status(&self) -> Status {
        match self {
            Transport::Shm(t) => t.status(),
            Transport::Pio(t) => t.status(),
        }
    }

    /// Asks the peer for an interrupt when `dir` may make progress; returns
    /// `true` if it already can (do not sleep). Transports without
    /// interrupts return `false`.
    pub(crate) fn arm(&self, dir: Direction) -> bool {
        match self {
            Transport::Shm(t) => t.arm(dir),
            Transport::Pio(_) => false,
        }
    }

    /// Whether waiters are woken by interrupts (else by polling).
    pub(crate) fn uses_interrupts(&self) -> bool {
        match self {
            Transport::Shm(t) => t.uses_interrupts(),
            Transport::Pio(_) => false,
        }
    }

    /// Periodic housekeeping while open: heartbeat, peer liveness, and for
    /// interrupt-driven transports the connection handshake.
    pub(crate) fn tick(&self) {
        match self {
            Transport::Shm(t) => t.tick(),
            // The VMM owns the endpoint and its heartbeat.
            Transport::Pio(_) => {}
        }
    }

    /// Logs the transport's ring state (diagnostics of a lost wake-up).
    pub(crate) fn debug_dump(&self) {
        match self {
            Transport::Shm(t) => t.debug_dump(),
            Transport::Pio(_) => {}
        }
    }
}
