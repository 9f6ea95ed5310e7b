//! Attaching an [`Endpoint`] to a slot of the channel: finding (or
//! formatting) the layout, taking over the slot, and publishing a new
//! generation so the peer knows this is a new incarnation.
//!
//! Uses `super::super::{error, layout, shm}` from the channel and
//! `super::handshake` for the initial connection state.

use super::super::error::ChannelError;
use super::super::layout::{
    format_if_needed, peer_entry, ring_ctrl, FormatOptions, Layout, NO_DOORBELL, NUM_SLOTS,
    PEER_ACK, PEER_ATTACHING, PEER_DOORBELL_ID, PEER_GENERATION, PEER_HEARTBEAT, PEER_STATE,
    PEER_UP, RING_DATA_WANTED, RING_SPACE_WANTED,
};
use super::super::shm::SharedMemory;
use super::handshake::Conn;
use super::{Endpoint, EndpointStats};

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
            rx_len: 0,
            rx_off: 0,
            tx_lagging: false,
            tx_promised: 0,
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
}
