//! The blocks of the interleaved measurement: where each lives in the
//! mapping, and one round trip (parent) or one echo (child) of each.

use std::io;
use std::time::Instant;

use ivc_abi::{AtomicMem, ChannelError, Endpoint, SharedMemory};

use super::models::{IndexRing, RecordRing, RingAt};

/// Largest message.
pub(super) const MAX_MSG: usize = 4096;
/// Give up a round trip after this long without an answer.
const PATIENCE_SPINS: u64 = 1 << 28;

/// Calls `step` until it says done, spinning between calls; `Err(stuck)`
/// after [`PATIENCE_SPINS`] calls that were not.
fn spin_until(
    stuck: &'static str,
    mut step: impl FnMut() -> Result<bool, &'static str>,
) -> Result<(), &'static str> {
    for _ in 0..PATIENCE_SPINS {
        if step()? {
            return Ok(());
        }
        std::hint::spin_loop();
    }
    Err(stuck)
}

/// What a block runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One 64-byte line, both directions: the parent stores an odd counter,
    /// the child answers with the next even one. The floor.
    Floor,
    /// Per direction a data line and a flag line: the writer copies the
    /// message into the data line, then stores the flag (release); the
    /// reader polls the flag, then copies. Two dependent line transfers:
    /// what any format with the signal apart from the data costs at least.
    TwoLines,
    /// `ivc_abi::Endpoint`, whatever layout version this build implements.
    Abi,
    /// The version 1 format, lean model ([`IndexRing`]).
    IndexModel,
    /// Records with an inline length word, 8-byte aligned ([`RecordRing`]).
    RecordPacked,
    /// The same, records on cache-line boundaries.
    RecordLine,
    /// Packed records; while the reader keeps up, the writer pads to the
    /// ring's end after each window of 4 KiB and starts over at the
    /// beginning, so a ping-pong reuses lines both caches still hold.
    RecordWindow,
}

impl Kind {
    /// How reports name it.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Floor => "floor: one cache line ping-pong",
            Kind::TwoLines => "flag line + data line per direction",
            Kind::Abi => "ivc-abi Endpoint (this build's layout)",
            Kind::IndexModel => "model v1: index line + byte ring",
            Kind::RecordPacked => "model v2: inline length word, 8 B aligned",
            Kind::RecordLine => "model v2: inline length word, line aligned",
            Kind::RecordWindow => "model v2: inline length word, 4 KiB window",
        }
    }
}

/// One block of a repetition: what runs, the message size, and the data
/// size of each ring (models and `ivc-abi`; ignored by the line blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// What runs.
    pub kind: Kind,
    /// Message size, bytes.
    pub size: usize,
    /// Ring data size, bytes (a power of two).
    pub ring: u32,
}

impl Block {
    /// A block of `kind` with `size`-byte messages and `ring`-byte rings.
    pub const fn new(kind: Kind, size: usize, ring: u32) -> Self {
        Block { kind, size, ring }
    }

    /// How reports name it.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Floor | Kind::TwoLines => self.kind.describe().into(),
            _ => format!("{}, {} KiB ring", self.kind.describe(), self.ring >> 10),
        }
    }
}

/// Bytes of shared memory each block owns (its rings, or its region).
pub(super) const AREA: usize = 1 << 20;
/// Start of block `b`'s area; the first holds the control line and the
/// line blocks.
pub(super) fn area(b: usize) -> usize {
    (1 + b) * AREA
}
/// Offset of the command word (+0) and the round trips per block (+4).
pub(super) const CONTROL: usize = 0;
const FLOOR_AT: usize = 0x1040;
const TWO_AT: usize = 0x2000;

/// The ring of direction `dir` of a model in area `base`.
fn model_ring(base: usize, dir: usize, size: u32) -> RingAt {
    let at = base + dir * (AREA / 2);
    RingAt {
        prod_line: at,
        cons_line: at + 0x40,
        data: at + 0x1000,
        size,
    }
}

/// The data path of one block on one side.
#[derive(Clone, Copy, Debug)]
enum Model {
    Lines,
    Abi,
    Index(IndexRing),
    Record(RecordRing),
}

/// One process's state for every block; built before the fork, so the
/// child never allocates.
pub(super) struct Side {
    slot: usize,
    floor_next: u32,
    two_seq: [u32; 2],
    models: Vec<Model>,
    msg: [u8; MAX_MSG],
    buf: [u8; MAX_MSG],
}

impl Side {
    /// Slot 0 is the parent (writes direction 0), slot 1 the child.
    pub(super) fn new(blocks: &[Block], slot: usize) -> Side {
        let (tx, rx) = (slot, 1 - slot);
        let models = blocks
            .iter()
            .enumerate()
            .map(|(b, bl)| {
                let ring = |d| model_ring(area(b), d, bl.ring);
                match bl.kind {
                    Kind::Floor | Kind::TwoLines => Model::Lines,
                    Kind::Abi => Model::Abi,
                    Kind::IndexModel => Model::Index(IndexRing::new(ring(tx), ring(rx))),
                    Kind::RecordPacked => Model::Record(RecordRing::packed(ring(tx), ring(rx))),
                    Kind::RecordLine => Model::Record(RecordRing::line_aligned(ring(tx), ring(rx))),
                    Kind::RecordWindow => Model::Record(RecordRing::windowed(ring(tx), ring(rx))),
                }
            })
            .collect();
        Side {
            slot,
            floor_next: 1,
            two_seq: [0; 2],
            models,
            msg: [0; MAX_MSG],
            buf: [0; MAX_MSG],
        }
    }

    /// Sends `msg[..size]` on this side's direction, spinning.
    fn send(
        &mut self,
        mem: &AtomicMem<'_>,
        eps: &mut [Option<Endpoint<AtomicMem<'_>>>],
        b: usize,
        kind: Kind,
        size: usize,
    ) -> Result<(), &'static str> {
        let mut sent = 0;
        spin_until("no space for too long", || {
            self.try_send(mem, eps, b, kind, size, &mut sent)
        })
    }

    /// One attempt of [`Self::send`]: whether the whole message is out
    /// (`sent` counts what an endpoint took so far).
    fn try_send(
        &mut self,
        mem: &AtomicMem<'_>,
        eps: &mut [Option<Endpoint<AtomicMem<'_>>>],
        b: usize,
        kind: Kind,
        size: usize,
        sent: &mut usize,
    ) -> Result<bool, &'static str> {
        Ok(match kind {
            Kind::Floor => {
                let v = if self.slot == 0 {
                    self.floor_next
                } else {
                    self.floor_next.wrapping_add(1)
                };
                mem.store_u32_release(FLOOR_AT, v)
                    .map_err(|_| "floor store")?;
                true
            }
            Kind::TwoLines => {
                let d = self.slot;
                let flag = TWO_AT + d * 256;
                mem.write_bytes(flag + 64, &self.msg[..size])
                    .map_err(|_| "two-line copy")?;
                self.two_seq[d] = self.two_seq[d].wrapping_add(1);
                mem.store_u32_release(flag, self.two_seq[d])
                    .map_err(|_| "two-line flag")?;
                true
            }
            Kind::Abi => {
                let Some(Some(ep)) = eps.get_mut(b) else {
                    return Err("no endpoint");
                };
                match ep.write(&self.msg[*sent..size]) {
                    Ok(k) => *sent += k,
                    Err(ChannelError::PeerGone) => return Err("peer gone"),
                    Err(_) => return Err("endpoint write"),
                }
                *sent == size
            }
            _ => match &mut self.models[b] {
                Model::Index(m) => m.send(mem, &self.msg[..size]),
                Model::Record(m) => m.send(mem, &self.msg[..size]),
                Model::Lines | Model::Abi => return Err("no model"),
            },
        })
    }

    /// Receives `size` bytes into `buf` from the other direction, spinning.
    fn recv(
        &mut self,
        mem: &AtomicMem<'_>,
        eps: &mut [Option<Endpoint<AtomicMem<'_>>>],
        b: usize,
        kind: Kind,
        size: usize,
    ) -> Result<(), &'static str> {
        let mut got = 0;
        spin_until("no answer for too long", || {
            self.try_recv(mem, eps, b, kind, size, &mut got)
        })?;
        if kind == Kind::Floor {
            self.floor_next = self.floor_next.wrapping_add(2);
        }
        Ok(())
    }

    /// One attempt of [`Self::recv`]: whether the whole message is in
    /// (`got` counts what an endpoint gave so far).
    fn try_recv(
        &mut self,
        mem: &AtomicMem<'_>,
        eps: &mut [Option<Endpoint<AtomicMem<'_>>>],
        b: usize,
        kind: Kind,
        size: usize,
        got: &mut usize,
    ) -> Result<bool, &'static str> {
        Ok(match kind {
            Kind::Floor => {
                let want = if self.slot == 0 {
                    self.floor_next.wrapping_add(1)
                } else {
                    self.floor_next
                };
                let v = mem.load_u32_acquire(FLOOR_AT).map_err(|_| "floor load")?;
                v == want
            }
            Kind::TwoLines => {
                let d = 1 - self.slot;
                let flag = TWO_AT + d * 256;
                let want = self.two_seq[d].wrapping_add(1);
                if mem.load_u32_acquire(flag).map_err(|_| "two-line flag")? == want {
                    self.two_seq[d] = want;
                    mem.read_bytes(flag + 64, &mut self.buf[..size])
                        .map_err(|_| "two-line copy")?;
                    true
                } else {
                    false
                }
            }
            Kind::Abi => {
                let Some(Some(ep)) = eps.get_mut(b) else {
                    return Err("no endpoint");
                };
                match ep.read(&mut self.buf[*got..size]) {
                    Ok(k) => *got += k,
                    Err(ChannelError::PeerGone) => return Err("peer gone"),
                    Err(_) => return Err("endpoint read"),
                }
                *got == size
            }
            _ => match &mut self.models[b] {
                Model::Index(m) => m.recv(mem, &mut self.buf[..size]),
                Model::Record(m) => m.recv(mem, &mut self.buf[..size]),
                Model::Lines | Model::Abi => return Err("no model"),
            },
        })
    }

    /// Child: receive one message of block `b` and send it back.
    pub(super) fn echo(
        &mut self,
        mem: &AtomicMem<'_>,
        eps: &mut [Option<Endpoint<AtomicMem<'_>>>],
        b: usize,
        bl: Block,
    ) -> bool {
        if self.recv(mem, eps, b, bl.kind, bl.size).is_err() {
            return false;
        }
        self.msg[..bl.size].copy_from_slice(&self.buf[..bl.size]);
        if bl.kind == Kind::Floor {
            // The answer is the counter `recv` just saw, plus one.
            self.floor_next = self.floor_next.wrapping_sub(2);
            let r = self.send(mem, eps, b, bl.kind, bl.size).is_ok();
            self.floor_next = self.floor_next.wrapping_add(2);
            return r;
        }
        self.send(mem, eps, b, bl.kind, bl.size).is_ok()
    }

    /// Parent: send message number `i` of block `b` and wait for its echo.
    pub(super) fn round_trip(
        &mut self,
        mem: &AtomicMem<'_>,
        eps: &mut [Option<Endpoint<AtomicMem<'_>>>],
        b: usize,
        bl: Block,
        i: u64,
    ) -> io::Result<()> {
        // Stamped, so that an echo of a stale message fails the check.
        for (d, s) in self.msg.iter_mut().zip(i.to_le_bytes()) {
            *d = s;
        }
        let since = Instant::now();
        self.send(mem, eps, b, bl.kind, bl.size)
            .and_then(|()| self.recv(mem, eps, b, bl.kind, bl.size))
            .map_err(|e| {
                io::Error::other(format!(
                    "{} ({} B): {e} after {:?}",
                    bl.describe(),
                    bl.size,
                    since.elapsed()
                ))
            })
    }

    /// Parent: the echo equals the message (outside the timed interval).
    pub(super) fn check(&self, bl: Block) -> io::Result<()> {
        if bl.kind != Kind::Floor && self.buf[..bl.size] != self.msg[..bl.size] {
            return Err(io::Error::other(format!(
                "{} ({} B): the echoed message differs",
                bl.describe(),
                bl.size
            )));
        }
        Ok(())
    }
}
