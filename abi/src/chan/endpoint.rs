//! [`Endpoint`]: one side of the channel — attach, connection handshake,
//! ring I/O, wake-up suppression, close.
//!
//! Hardening rules (see docs/protocol.md, "Trust"):
//! * Our own indices live in private shadows (`prod`, `cons`); the copies in
//!   shared memory are only ever written, never read back.
//! * Every value read from shared memory is read once into a local,
//!   validated, then used. Peer indices must stay within one ring size of
//!   our shadow and must not move backwards.
//! * Any violation latches [`ChannelError::Corrupted`]: every later call
//!   returns it. No loop depends on shared-memory contents, so no call can
//!   hang; all offsets come from the layout validated at attach, and the
//!   [`SharedMemory`] implementation bounds-checks every access anyway.
//!
//! Uses `super::shm`, `super::error` and `super::layout` from its siblings.

use super::error::{ChannelError, CopyError};
use super::layout::{
    format_if_needed, peer_entry, ring_ctrl, FormatOptions, Layout, RingGeometry, HDR_EPOCH,
    HDR_MAGIC, MAGIC, NO_DOORBELL, NUM_SLOTS, PEER_ACK, PEER_ATTACHING, PEER_BROKEN, PEER_CLOSED,
    PEER_DOORBELL_ID, PEER_GENERATION, PEER_HEARTBEAT, PEER_STATE, PEER_UP, RING_CONS,
    RING_DATA_WAKE_AT, RING_DATA_WANTED, RING_PROD, RING_SPACE_WAKE_AT, RING_SPACE_WANTED,
};
use super::shm::{OutOfBounds, SharedMemory};

/// How [`Endpoint::attach_with`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachOptions {
    /// This side's ivshmem peer id (IVPosition), published in the peer
    /// table so the other side knows which doorbell to ring.
    pub doorbell_id: Option<u16>,
    /// `Some`: format the region if it holds no channel (first side to find
    /// no valid magic formats). `None`: never format; fail with
    /// [`ChannelError::NotFormatted`] (use when a VMM/server formats).
    pub format: Option<FormatOptions>,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            doorbell_id: None,
            format: Some(FormatOptions::default()),
        }
    }
}

/// The connection as seen from this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// No connection yet: waiting for a peer to attach (or to finish with
    /// its previous connection).
    Waiting,
    /// Handshake in progress; data does not flow yet.
    Connecting,
    /// Connected: data flows both ways.
    Connected,
    /// The connection ended (peer closed, restarted, broke or was marked
    /// absent). Data it left can still be read; writes fail with
    /// [`ChannelError::PeerGone`]. A new peer incarnation is accepted once
    /// the end was reported (see [`Endpoint::read`]) and the user came back
    /// (see [`Endpoint::resume`]).
    Gone,
}

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

/// Counters kept by the endpoint (wrapping; no atomics: the endpoint is
/// `&mut`). Embedders export them as they see fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// Bytes written into the TX ring.
    pub bytes_written: u64,
    /// Bytes read from the RX ring.
    pub bytes_read: u64,
    /// Doorbells requested by `needs_doorbell_*`.
    pub doorbells: u64,
    /// Connections established.
    pub connections: u64,
    /// Connections that ended.
    pub disconnections: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// No connection. `epipe`: a connection ended and writes fail until a
    /// new one is accepted.
    Waiting { epipe: bool },
    /// We accepted `peer_gen` (reset our indices, published our ack) and
    /// wait for the peer's ack of our generation.
    Handshake { peer_gen: u32 },
    /// Both acks are in place.
    Connected { peer_gen: u32 },
    /// Connection with `peer_gen` ended; draining what it left in RX.
    Draining,
}

/// One validated read of the peer's entry.
#[derive(Debug, Clone, Copy)]
struct PeerSnap {
    state: u32,
    gen: u32,
    ack: u32,
}

/// One side of a channel over `M`.
///
/// All methods take `&mut self`: the embedder serialises access (a mutex or
/// spinlock in the kernel). No method blocks, loops on shared memory or
/// panics.
#[derive(Debug)]
pub struct Endpoint<M: SharedMemory> {
    mem: M,
    layout: Layout,
    slot: u32,
    my_entry: usize,
    peer_entry: usize,
    tx_ctrl: usize,
    tx: RingGeometry,
    rx_ctrl: usize,
    rx: RingGeometry,
    my_gen: u32,
    heartbeat: u32,
    /// Shadow of our TX producer index (the only copy we trust).
    prod: u32,
    /// Shadow of our RX consumer index.
    cons: u32,
    /// Last validated peer producer index (RX); it must not go backwards.
    peer_prod_seen: u32,
    /// Last validated peer consumer index (TX); it must not go backwards.
    peer_cons_seen: u32,
    /// `prod` at the last doorbell decision.
    kick_prod_from: u32,
    /// `cons` at the last doorbell decision.
    kick_cons_from: u32,
    conn: Conn,
    /// A lifecycle change the peer must hear about (attach, ack, close,
    /// broken): the next `needs_doorbell_*` returns true.
    pending_kick: bool,
    /// `read` owes its caller one end-of-file (the end of a connection was
    /// reported by `write` first).
    eof_owed: bool,
    /// The end of a connection was reported to the user (end of file or
    /// `PeerGone` from `write`) and the user has not come back since: no new
    /// peer incarnation is accepted until a data-path call or
    /// [`resume`](Endpoint::resume). Otherwise a reader that got end of file
    /// and is about to close could be connected, by a passive call such as
    /// a poller's `peer_state`, to a new peer that then writes into a
    /// connection nobody reads: its data would be lost when we close, or
    /// its first write would fail with `PeerGone`.
    held: bool,
    broken: Option<ChannelError>,
    closed: bool,
    stats: EndpointStats,
}

fn min_u32(a: u32, b: u32) -> u32 {
    if a < b {
        a
    } else {
        b
    }
}

/// `v` clamped to `1..=max` (`u32::clamp` would assert `1 <= max`).
fn clamp_min(v: u32, max: u32) -> u32 {
    min_u32(if v == 0 { 1 } else { v }, max)
}

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
    /// Attaches as `slot` (0 or 1) with default options: formats the region
    /// if it holds no channel, publishes no doorbell id.
    pub fn attach(mem: M, slot: u32) -> Result<Self, ChannelError> {
        Self::attach_with(mem, slot, &AttachOptions::default())
    }

    /// Attaches as `slot` (0 or 1).
    ///
    /// The slot is taken over unconditionally: the embedder's configuration
    /// (e.g. the ivshmem IVPosition) says it is ours, so an `UP` entry there
    /// is a previous incarnation of us that died. A new generation tells the
    /// peer so.
    pub fn attach_with(mem: M, slot: u32, opts: &AttachOptions) -> Result<Self, ChannelError> {
        if slot >= NUM_SLOTS {
            return Err(ChannelError::InvalidSlot);
        }
        let layout = Self::layout_for(&mem, opts)?;
        let me = peer_entry(slot);
        mem.store_u32_relaxed(me.wrapping_add(PEER_STATE), PEER_ATTACHING)?;
        Self::claim(mem, layout, slot, opts)
    }

    /// Attaches to the first slot that is not in use (state not `UP` or
    /// attaching), claiming it with a compare-exchange so two sides racing
    /// here get different slots.
    pub fn attach_any(mem: M, opts: &AttachOptions) -> Result<Self, ChannelError> {
        let layout = Self::layout_for(&mem, opts)?;
        for slot in 0..NUM_SLOTS {
            let off = peer_entry(slot) + PEER_STATE;
            let st = mem.load_u32_acquire(off)?;
            if st == PEER_UP || st == PEER_ATTACHING {
                continue;
            }
            if let Ok(_prev) = mem.compare_exchange_u32(off, st, PEER_ATTACHING)? {
                return Self::claim(mem, layout, slot, opts);
            }
        }
        Err(ChannelError::NoFreeSlot)
    }

    fn layout_for(mem: &M, opts: &AttachOptions) -> Result<Layout, ChannelError> {
        match &opts.format {
            Some(f) => format_if_needed(mem, f),
            None => Layout::read(mem),
        }
    }

    /// Second half of attach: our entry is in state ATTACHING.
    fn claim(
        mem: M,
        layout: Layout,
        slot: u32,
        opts: &AttachOptions,
    ) -> Result<Self, ChannelError> {
        let me = peer_entry(slot);
        let peer = peer_entry(slot ^ 1);
        // Any old value, even garbage, is fine: we only need a change.
        let old = mem.load_u32_relaxed(me.wrapping_add(PEER_GENERATION))?;
        let gen = match old.wrapping_add(1) {
            0 => 1,
            g => g,
        };
        let doorbell = opts.doorbell_id.map_or(NO_DOORBELL, u32::from);
        // Clear the ack *before* publishing the new generation with
        // release: a peer that has seen the new generation (acquire) can
        // then no longer read the ack our previous incarnation left, which
        // names the same peer generation and would look like our consent.
        mem.store_u32_relaxed(me.wrapping_add(PEER_ACK), 0)?;
        mem.store_u32_release(me.wrapping_add(PEER_GENERATION), gen)?;
        mem.store_u32_relaxed(me.wrapping_add(PEER_HEARTBEAT), 0)?;
        mem.store_u32_relaxed(me.wrapping_add(PEER_DOORBELL_ID), doorbell)?;
        let tx_ctrl = ring_ctrl(slot);
        let rx_ctrl = ring_ctrl(slot ^ 1);
        mem.store_u32_relaxed(tx_ctrl.wrapping_add(RING_SPACE_WANTED), 0)?;
        mem.store_u32_relaxed(rx_ctrl.wrapping_add(RING_DATA_WANTED), 0)?;
        // Release: a peer that sees UP also sees the new generation and ack.
        // Our ring indices are NOT touched here: the peer may still be
        // draining what our previous incarnation wrote. They are reset when
        // we accept a peer (see `accept`).
        mem.store_u32_release(me.wrapping_add(PEER_STATE), PEER_UP)?;
        let base = layout.index_base;
        let (tx, rx) = match slot {
            0 => (layout.rings[0], layout.rings[1]),
            _ => (layout.rings[1], layout.rings[0]),
        };
        let mut ep = Endpoint {
            mem,
            layout,
            slot,
            my_entry: me,
            peer_entry: peer,
            tx_ctrl,
            tx,
            rx_ctrl,
            rx,
            my_gen: gen,
            heartbeat: 0,
            prod: base,
            cons: base,
            peer_prod_seen: base,
            peer_cons_seen: base,
            kick_prod_from: base,
            kick_cons_from: base,
            conn: Conn::Waiting { epipe: false },
            pending_kick: true,
            eof_owed: false,
            held: false,
            broken: None,
            closed: false,
            stats: EndpointStats::default(),
        };
        let r = ep.sync();
        ep.latch(r)?;
        Ok(ep)
    }

    // -----------------------------------------------------------------------
    // Accessors
    // -----------------------------------------------------------------------

    /// Our slot (0 or 1).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Our generation (changes at every attach).
    pub fn generation(&self) -> u32 {
        self.my_gen
    }

    /// The validated layout taken at attach.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Data size of the TX ring.
    pub fn tx_ring_size(&self) -> u32 {
        self.tx.size
    }

    /// Data size of the RX ring.
    pub fn rx_ring_size(&self) -> u32 {
        self.rx.size
    }

    /// Counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// The shared memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The latched error, if the endpoint is broken.
    pub fn broken(&self) -> Option<ChannelError> {
        self.broken
    }

    // -----------------------------------------------------------------------
    // Error latching
    // -----------------------------------------------------------------------

    /// Latches fatal errors. `Corrupted` is also published (state BROKEN) so
    /// the peer stops instead of waiting for us.
    fn latch<T>(&mut self, r: Result<T, ChannelError>) -> Result<T, ChannelError> {
        if let Err(e) = r {
            if matches!(e, ChannelError::Corrupted | ChannelError::Reset) && self.broken.is_none() {
                self.broken = Some(e);
                if e == ChannelError::Corrupted && !self.closed {
                    // Best effort: the memory may be what is broken.
                    let _ = self
                        .mem
                        .store_u32_release(self.my_entry.wrapping_add(PEER_STATE), PEER_BROKEN);
                    self.pending_kick = true;
                }
            }
        }
        r
    }

    fn check_usable(&self) -> Result<(), ChannelError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        if self.closed {
            return Err(ChannelError::Closed);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Connection state machine
    // -----------------------------------------------------------------------

    fn read_peer(&self) -> Result<PeerSnap, ChannelError> {
        // Acquire on each, in this order: state (published last at
        // attach); generation (published after the ack was cleared, so once
        // we see a new generation we cannot read a stale ack of its previous
        // incarnation); ack (published after the peer reset its indices, so
        // our later index reads see the reset).
        let state = self
            .mem
            .load_u32_acquire(self.peer_entry.wrapping_add(PEER_STATE))?;
        let gen = self
            .mem
            .load_u32_acquire(self.peer_entry.wrapping_add(PEER_GENERATION))?;
        let ack = self
            .mem
            .load_u32_acquire(self.peer_entry.wrapping_add(PEER_ACK))?;
        if state > PEER_ATTACHING {
            return Err(ChannelError::Corrupted);
        }
        Ok(PeerSnap { state, gen, ack })
    }

    /// Header still ours? A formatter changes the magic first and the epoch
    /// before restoring it.
    fn check_header(&self) -> Result<(), ChannelError> {
        let magic = self.mem.load_u32_relaxed(HDR_MAGIC)?;
        let epoch = self.mem.load_u32_relaxed(HDR_EPOCH)?;
        if magic != MAGIC || epoch != self.layout.epoch {
            return Err(ChannelError::Reset);
        }
        Ok(())
    }

    /// Starts a connection with peer generation `peer_gen`: our indices go
    /// to the base value, then our ack is published (release).
    fn accept(&mut self, peer_gen: u32) -> Result<(), ChannelError> {
        let base = self.layout.index_base;
        self.mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_PROD), base)?;
        self.mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_SPACE_WANTED), 0)?;
        self.mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_CONS), base)?;
        self.mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_DATA_WANTED), 0)?;
        self.prod = base;
        self.cons = base;
        self.peer_prod_seen = base;
        self.peer_cons_seen = base;
        self.kick_prod_from = base;
        self.kick_cons_from = base;
        self.mem
            .store_u32_release(self.my_entry.wrapping_add(PEER_ACK), peer_gen)?;
        self.pending_kick = true;
        self.conn = Conn::Handshake { peer_gen };
        Ok(())
    }

    /// Advances the connection state machine from one snapshot of the
    /// peer's entry. Runs at the start of every operation.
    fn sync(&mut self) -> Result<(), ChannelError> {
        self.check_usable()?;
        self.check_header()?;
        let p = self.read_peer()?;
        if let Conn::Waiting { .. } = self.conn {
            // Accept a live peer unless it still uses our indices for a
            // connection with an older incarnation of us (its ack names a
            // generation of ours other than the current one), or the user
            // has not come back since the last end was reported (`held`).
            if !self.held
                && p.state == PEER_UP
                && p.gen != 0
                && (p.ack == 0 || p.ack == self.my_gen)
            {
                self.accept(p.gen)?;
            }
        }
        match self.conn {
            Conn::Waiting { .. } | Conn::Draining => {}
            Conn::Handshake { peer_gen } => {
                if p.state != PEER_UP || p.gen != peer_gen {
                    // It left during the handshake. If it had acked us it
                    // may have sent data: drain. Otherwise its indices are
                    // not known to be reset, so there is nothing to read.
                    if p.gen == peer_gen && p.ack == self.my_gen {
                        self.conn = Conn::Draining;
                    } else {
                        self.conn = Conn::Waiting { epipe: false };
                    }
                } else if p.ack == self.my_gen {
                    self.conn = Conn::Connected { peer_gen };
                    self.stats.connections = self.stats.connections.wrapping_add(1);
                }
            }
            Conn::Connected { peer_gen } => {
                if p.state != PEER_UP || p.gen != peer_gen || p.ack != self.my_gen {
                    self.conn = Conn::Draining;
                    self.stats.disconnections = self.stats.disconnections.wrapping_add(1);
                }
            }
        }
        Ok(())
    }

    /// Public view of the connection; also advances the handshake. Call it
    /// on every doorbell interrupt (or poll tick), then
    /// [`needs_doorbell`](Self::needs_doorbell).
    ///
    /// It is passive: after the end of a connection was reported it does not
    /// accept a new peer (see [`resume`](Self::resume)).
    pub fn peer_state(&mut self) -> Result<PeerState, ChannelError> {
        let r = self.sync();
        self.latch(r)?;
        Ok(match self.conn {
            Conn::Waiting { epipe: true } | Conn::Draining => PeerState::Gone,
            Conn::Waiting { .. } => PeerState::Waiting,
            Conn::Handshake { .. } => PeerState::Connecting,
            Conn::Connected { .. } => PeerState::Connected,
        })
    }

    /// The user is still using the channel after the end of a connection was
    /// reported (it polls, reads or writes again): a new peer incarnation may
    /// be accepted from now on. The data-path calls (`read*`, `write*`,
    /// `arm_*_wakeup`) do this themselves; an embedder calls it where a user
    /// asks without moving data, e.g. in `poll(2)`. Calls made for no user
    /// (a poller, an interrupt handler, a heartbeat) must not.
    pub fn resume(&mut self) {
        self.held = false;
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

    /// Ends the current connection (or discards its undrained remainder) at
    /// once and starts over, so a new connection can be made without
    /// draining.
    ///
    /// This side becomes a new incarnation (new generation, `ack` cleared),
    /// exactly as if it had re-attached: that is how the peer learns the old
    /// connection is over even though both sides stay up. The peer drains
    /// what we wrote, reports end of file and connects again.
    pub fn reconnect(&mut self) -> Result<(), ChannelError> {
        self.check_usable()?;
        let r = self.reconnect_inner();
        self.latch(r)
    }

    fn reconnect_inner(&mut self) -> Result<(), ChannelError> {
        let had_connection = match self.conn {
            Conn::Connected { .. } => {
                self.stats.disconnections = self.stats.disconnections.wrapping_add(1);
                true
            }
            Conn::Draining | Conn::Waiting { epipe: true } => true,
            Conn::Waiting { epipe: false } | Conn::Handshake { .. } => false,
        };
        let gen = match self.my_gen.wrapping_add(1) {
            0 => 1,
            g => g,
        };
        // Ack cleared before the generation is published (release): see
        // `claim`.
        self.mem
            .store_u32_relaxed(self.my_entry.wrapping_add(PEER_ACK), 0)?;
        self.mem
            .store_u32_release(self.my_entry.wrapping_add(PEER_GENERATION), gen)?;
        // Re-publish UP with release so a peer that reads the state sees
        // the new generation and the cleared ack.
        self.mem
            .store_u32_release(self.my_entry.wrapping_add(PEER_STATE), PEER_UP)?;
        self.my_gen = gen;
        self.conn = Conn::Waiting {
            epipe: had_connection,
        };
        self.eof_owed = false;
        // Starting over is the user's own request for a new connection.
        self.held = false;
        self.pending_kick = true;
        self.sync()
    }

    // -----------------------------------------------------------------------
    // Index reads (validated)
    // -----------------------------------------------------------------------

    /// Bytes readable in RX, from the peer's producer index, validated:
    /// `0 <= prod - cons <= size` and no backward movement.
    fn rx_avail(&mut self) -> Result<u32, ChannelError> {
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
    fn tx_free(&mut self) -> Result<u32, ChannelError> {
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

    // -----------------------------------------------------------------------
    // Data path
    // -----------------------------------------------------------------------

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

    // -----------------------------------------------------------------------
    // Wake-up suppression
    // -----------------------------------------------------------------------

    /// Asks the peer to ring our doorbell once at least `min_bytes` (clamped
    /// to 1..=ring size) are readable, then re-checks.
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
        let min = clamp_min(min_bytes, self.rx.size);
        let wake_at = self.cons.wrapping_add(min).wrapping_sub(1);
        self.mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_DATA_WAKE_AT), wake_at)?;
        self.mem
            .store_u32_relaxed(self.rx_ctrl.wrapping_add(RING_DATA_WANTED), 1)?;
        self.mem.fence_seqcst();
        if self.rx_avail()? >= min {
            Ok(Readiness::Ready)
        } else {
            Ok(Readiness::MaySleep)
        }
    }

    /// Asks the peer to ring our doorbell once at least `min_bytes` (clamped
    /// to 1..=ring size) are free in TX, then re-checks (mirror image of
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
        let min = clamp_min(min_bytes, self.tx.size);
        // Free >= min  <=>  cons >= prod - size + min  <=>  cons passes
        // prod - size + min - 1.
        let wake_at = self
            .prod
            .wrapping_sub(self.tx.size)
            .wrapping_add(min)
            .wrapping_sub(1);
        self.mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_SPACE_WAKE_AT), wake_at)?;
        self.mem
            .store_u32_relaxed(self.tx_ctrl.wrapping_add(RING_SPACE_WANTED), 1)?;
        self.mem.fence_seqcst();
        if self.tx_free()? >= min {
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

    // -----------------------------------------------------------------------
    // Close
    // -----------------------------------------------------------------------

    /// Closes this side: publishes state CLOSED (our written data stays
    /// readable for the peer, which then sees end of file). Afterwards
    /// every call returns [`ChannelError::Closed`] except the
    /// `needs_doorbell*` methods, which report the pending notification.
    /// Idempotent. Also run by `Drop`.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // After a re-format our entry belongs to the new format: leave it
        // (also when the re-format is only now visible).
        if self.broken != Some(ChannelError::Reset) && self.check_header().is_ok() {
            let st = if self.broken.is_some() {
                PEER_BROKEN
            } else {
                PEER_CLOSED
            };
            // Release: everything we wrote is visible before CLOSED.
            let _ = self
                .mem
                .store_u32_release(self.my_entry.wrapping_add(PEER_STATE), st);
            self.pending_kick = true;
        }
    }
}

impl<M: SharedMemory> Drop for Endpoint<M> {
    fn drop(&mut self) {
        self.close();
    }
}
