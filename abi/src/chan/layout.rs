//! The channel layout in shared memory: offsets, constants, header
//! validation and formatting. docs/protocol.md is the prose version of this
//! file; keep them in sync.
//!
//! Uses `super::shm` and `super::error` from its siblings.

use super::error::ChannelError;
use super::shm::SharedMemory;

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/// Header magic of a formatted region: the bytes `"IVC1"` in memory.
pub const MAGIC: u32 = u32::from_le_bytes(*b"IVC1");
/// Magic while a side is formatting: the bytes `"IVC-"` in memory.
pub const MAGIC_FORMATTING: u32 = u32::from_le_bytes(*b"IVC-");
/// Layout version this code writes and accepts. Version 2 carries the data
/// in records whose length word the reader polls (see [`REC_HEADER`]);
/// version 1 regions (a byte ring whose producer index the reader polled)
/// are refused with [`ChannelError::Incompatible`]; [`VersionMismatch`]
/// says which version was found.
pub const VERSION: u32 = 2;
/// Required-feature bits this code understands (none yet). A region with
/// any other required bit set is refused.
pub const KNOWN_REQUIRED_FEATURES: u32 = 0;
/// Number of peer slots (two: one ring per direction).
pub const NUM_SLOTS: u32 = 2;
/// Bytes reserved at the start of the region for header, peer table and
/// ring control blocks. Ring data starts at or after this offset.
pub const CONTROL_SIZE: usize = 0x1000;
/// Cache line size the layout is padded to.
pub const CACHE_LINE: usize = 64;
/// Smallest ring data size accepted (a power of two): room for a record
/// header, some payload and the next record's cleared header.
pub const MIN_RING_SIZE: u32 = 64;
/// Largest ring data size accepted.
pub const MAX_RING_SIZE: u32 = 1 << 30;
/// Largest region the header can describe (region_size is a `u32`).
pub const MAX_REGION_SIZE: usize = 1 << 31;
/// `doorbell_id` value meaning "this side has no doorbell id".
pub const NO_DOORBELL: u32 = u32::MAX;

// Header (cache line 0), offsets from the start of the region.
/// `u32` [`MAGIC`]; written last (release) by the formatter.
pub const HDR_MAGIC: usize = 0x00;
/// `u32` [`VERSION`].
pub const HDR_VERSION: usize = 0x04;
/// `u32` bytes of the region the channel uses (<= memory size).
pub const HDR_REGION_SIZE: usize = 0x08;
/// `u32` incremented by every format; a change means "re-formatted".
pub const HDR_EPOCH: usize = 0x0c;
/// `u32` feature bits a reader must understand.
pub const HDR_FEATURES_REQUIRED: usize = 0x10;
/// `u32` feature bits a reader may ignore.
pub const HDR_FEATURES_OPTIONAL: usize = 0x14;
/// `u32` number of slots, [`NUM_SLOTS`].
pub const HDR_NUM_SLOTS: usize = 0x18;
/// `u32` value both ring indices take at the start of each connection.
pub const HDR_INDEX_BASE: usize = 0x1c;
/// `u32` byte offset of ring 0's data (slot 0 -> slot 1).
pub const HDR_RING0_OFFSET: usize = 0x20;
/// `u32` size of ring 0's data, a power of two.
pub const HDR_RING0_SIZE: usize = 0x24;
/// `u32` byte offset of ring 1's data (slot 1 -> slot 0).
pub const HDR_RING1_OFFSET: usize = 0x28;
/// `u32` size of ring 1's data, a power of two.
pub const HDR_RING1_SIZE: usize = 0x2c;

// Peer table: one cache line per slot, written only by the slot's owner
// (and by a VMM/server marking a dead owner absent).
/// Offset of slot 0's peer entry.
pub const PEER_TABLE: usize = 0x40;
/// Distance between peer entries.
pub const PEER_STRIDE: usize = 0x40;
/// `u32` peer state, one of the `PEER_*` values.
pub const PEER_STATE: usize = 0x00;
/// `u32` generation: bumped at every attach, never 0 once attached.
pub const PEER_GENERATION: usize = 0x04;
/// `u32` the other slot's generation this side has accepted (0 = none).
pub const PEER_ACK: usize = 0x08;
/// `u32` liveness counter the owner may bump periodically.
pub const PEER_HEARTBEAT: usize = 0x0c;
/// `u32` the owner's ivshmem peer id (IVPosition), or [`NO_DOORBELL`].
pub const PEER_DOORBELL_ID: usize = 0x10;

/// Slot never attached, or marked absent (e.g. by the VMM after a crash).
pub const PEER_ABSENT: u32 = 0;
/// Owner attached and alive.
pub const PEER_UP: u32 = 1;
/// Owner closed cleanly; its ring data stays readable.
pub const PEER_CLOSED: u32 = 2;
/// Owner detected corruption and stopped.
pub const PEER_BROKEN: u32 = 3;
/// Owner is (re)attaching; transient.
pub const PEER_ATTACHING: u32 = 4;

// Ring control blocks: ring r's block at RING_CTRL + r * RING_CTRL_STRIDE.
/// Offset of ring 0's control block.
pub const RING_CTRL: usize = 0x100;
/// Distance between ring control blocks.
pub const RING_CTRL_STRIDE: usize = 0x80;
/// Producer line: `u32` free-running producer index (bytes written).
pub const RING_PROD: usize = 0x00;
/// Producer line: `u32` nonzero = producer wants a doorbell for space.
pub const RING_SPACE_WANTED: usize = 0x04;
/// Producer line: `u32` ring the producer when the consumer index passes this.
pub const RING_SPACE_WAKE_AT: usize = 0x08;
/// Consumer line: `u32` free-running consumer index (bytes read).
pub const RING_CONS: usize = 0x40;
/// Consumer line: `u32` nonzero = consumer wants a doorbell for data.
pub const RING_DATA_WANTED: usize = 0x44;
/// Consumer line: `u32` ring the consumer when the producer index passes this.
pub const RING_DATA_WAKE_AT: usize = 0x48;

// Records in the ring data (version 2). A record starts at a free-running
// position that is a multiple of REC_ALIGN: a header of REC_HEADER bytes,
// then the payload (which may wrap around the ring's end), then padding to
// REC_ALIGN. The length word is written last, with release, and is what the
// reader polls: the signal travels in the line that carries the data.
/// Bytes of a record header.
pub const REC_HEADER: u32 = 8;
/// Alignment of record starts (and of ring positions and `index_base`).
pub const REC_ALIGN: u32 = 8;
/// Header: `u32` payload length (1 ..= ring size - 2 * [`REC_HEADER`]), or
/// [`REC_PAD`] | bytes to skip to the ring's end; 0 = no record (yet).
pub const REC_LEN: usize = 0;
/// Header: `u32` reserved, 0.
pub const REC_RESERVED: usize = 4;
/// Length-word flag of a pad record: the rest of the ring up to its end is
/// skipped and the next record starts at the ring's beginning.
pub const REC_PAD: u32 = 1 << 31;
/// A producer whose reader has read everything pads to the ring's end once
/// it is this far into the ring, so that a ping-pong keeps reusing lines
/// both cores' caches still hold, instead of walking the whole ring (rings
/// of at least 4 windows only).
pub const REC_WINDOW: u32 = 4096;
/// Records larger than this never pad to the ring's end early: the window
/// is for small messages, whose lines it keeps hot. A stream of large
/// records whose reader keeps up would otherwise go back to the ring's
/// beginning whenever the reader had caught up: 64 KiB writes between two
/// ivc-vmm VMs measured at most 6.8 GiB/s in 7 runs that way, and 19-22
/// GiB/s in 2 of 5 with this limit (docs/performance.md).
pub const REC_WINDOW_MAX_RECORD: u32 = REC_WINDOW / 8;

/// Bytes a record with `payload` bytes occupies (header and padding).
pub const fn record_bytes(payload: u32) -> u32 {
    REC_HEADER.wrapping_add(payload).wrapping_add(REC_ALIGN - 1) & !(REC_ALIGN - 1)
}

/// A region formatted with another layout version: what was found and what
/// this code supports (for the embedder's log line; the channel error is
/// [`ChannelError::Incompatible`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionMismatch {
    /// The version in the region's header.
    pub found: u32,
    /// [`VERSION`].
    pub supported: u32,
}

impl core::fmt::Display for VersionMismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "channel layout version {} found, this build supports version {} only",
            self.found, self.supported
        )
    }
}

/// The version of a formatted region whose version is not [`VERSION`]
/// (`None`: not formatted, being formatted, or the supported version).
pub fn version_mismatch<M: SharedMemory + ?Sized>(mem: &M) -> Option<VersionMismatch> {
    if mem.load_u32_acquire(HDR_MAGIC).ok()? != MAGIC {
        return None;
    }
    let found = mem.load_u32_relaxed(HDR_VERSION).ok()?;
    (found != VERSION).then_some(VersionMismatch {
        found,
        supported: VERSION,
    })
}

/// Offset of `slot`'s peer entry (`slot` is 0 or 1).
pub const fn peer_entry(slot: u32) -> usize {
    PEER_TABLE.wrapping_add((slot as usize & 1).wrapping_mul(PEER_STRIDE))
}

/// Offset of ring `ring`'s control block (`ring` is 0 or 1).
pub const fn ring_ctrl(ring: u32) -> usize {
    RING_CTRL.wrapping_add((ring as usize & 1).wrapping_mul(RING_CTRL_STRIDE))
}

// ---------------------------------------------------------------------------
// Validated geometry
// ---------------------------------------------------------------------------

/// Where one ring's data lives. Only built by validation, so
/// `offset + size <= region_size` and `size` is a power of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingGeometry {
    /// Byte offset of the data area.
    pub offset: usize,
    /// Size of the data area in bytes, a power of two.
    pub size: u32,
}

/// A validated copy of the header, taken once and then trusted locally
/// (later changes to the shared header are detected through magic/epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the region the channel uses.
    pub region_size: usize,
    /// Format epoch at the time the header was read.
    pub epoch: u32,
    /// Start value of the ring indices for each connection.
    pub index_base: u32,
    /// Optional feature bits.
    pub features_optional: u32,
    /// Ring 0 (slot 0 -> slot 1) and ring 1 (slot 1 -> slot 0).
    pub rings: [RingGeometry; 2],
}

/// Options for formatting a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatOptions {
    /// Data size of each ring; `None` = the largest power of two such that
    /// both rings fit after the control area.
    pub ring_size: Option<u32>,
    /// Start value of the ring indices, a multiple of [`REC_ALIGN`] (tests
    /// use values near `u32::MAX` to exercise index wrap-around); normally 0.
    pub index_base: u32,
}

/// Largest power of two <= `x` (0 for 0).
fn prev_pow2(x: usize) -> usize {
    if x == 0 {
        return 0;
    }
    let shift = usize::BITS.wrapping_sub(1).wrapping_sub(x.leading_zeros());
    1usize.checked_shl(shift).unwrap_or(0)
}

fn is_pow2(x: u32) -> bool {
    x != 0 && x & x.wrapping_sub(1) == 0
}

fn validate_ring(offset: u32, size: u32, region_size: usize) -> Result<RingGeometry, ChannelError> {
    if !is_pow2(size) || !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&size) {
        return Err(ChannelError::InvalidLayout);
    }
    let offset = offset as usize;
    if offset < CONTROL_SIZE || offset & (CACHE_LINE - 1) != 0 {
        return Err(ChannelError::InvalidLayout);
    }
    match offset.checked_add(size as usize) {
        Some(end) if end <= region_size => Ok(RingGeometry { offset, size }),
        _ => Err(ChannelError::InvalidLayout),
    }
}

fn overlap(a: RingGeometry, b: RingGeometry) -> bool {
    // Ends cannot overflow: validate_ring checked them.
    let a_end = a.offset.wrapping_add(a.size as usize);
    let b_end = b.offset.wrapping_add(b.size as usize);
    a.offset < b_end && b.offset < a_end
}

impl Layout {
    /// Reads and validates the header. Every field is read once into a
    /// local and checked before use; nothing is trusted.
    ///
    /// Errors: `Busy` while another side formats, `NotFormatted` without a
    /// valid magic, `Incompatible` for another version or unknown required
    /// features, `Corrupted` for a header that is inconsistent with itself
    /// or with the memory size.
    pub fn read<M: SharedMemory + ?Sized>(mem: &M) -> Result<Layout, ChannelError> {
        let magic = mem
            .load_u32_acquire(HDR_MAGIC)
            .map_err(|_| ChannelError::InvalidLayout)?;
        if magic == MAGIC_FORMATTING {
            return Err(ChannelError::Busy);
        }
        if magic != MAGIC {
            return Err(ChannelError::NotFormatted);
        }
        let version = mem.load_u32_relaxed(HDR_VERSION)?;
        let required = mem.load_u32_relaxed(HDR_FEATURES_REQUIRED)?;
        if version != VERSION || required & !KNOWN_REQUIRED_FEATURES != 0 {
            return Err(ChannelError::Incompatible);
        }
        let region_size = mem.load_u32_relaxed(HDR_REGION_SIZE)? as usize;
        let epoch = mem.load_u32_relaxed(HDR_EPOCH)?;
        let features_optional = mem.load_u32_relaxed(HDR_FEATURES_OPTIONAL)?;
        let slots = mem.load_u32_relaxed(HDR_NUM_SLOTS)?;
        let index_base = mem.load_u32_relaxed(HDR_INDEX_BASE)?;
        let r0o = mem.load_u32_relaxed(HDR_RING0_OFFSET)?;
        let r0s = mem.load_u32_relaxed(HDR_RING0_SIZE)?;
        let r1o = mem.load_u32_relaxed(HDR_RING1_OFFSET)?;
        let r1s = mem.load_u32_relaxed(HDR_RING1_SIZE)?;
        if slots != NUM_SLOTS
            || region_size > mem.len()
            || region_size < CONTROL_SIZE
            || index_base & (REC_ALIGN - 1) != 0
        {
            return Err(ChannelError::Corrupted);
        }
        let r0 = validate_ring(r0o, r0s, region_size).map_err(|_| ChannelError::Corrupted)?;
        let r1 = validate_ring(r1o, r1s, region_size).map_err(|_| ChannelError::Corrupted)?;
        if overlap(r0, r1) {
            return Err(ChannelError::Corrupted);
        }
        Ok(Layout {
            region_size,
            epoch,
            index_base,
            features_optional,
            rings: [r0, r1],
        })
    }

    /// The layout [`format`] writes for memory of `mem_len` bytes: the
    /// region is the largest power of two <= `mem_len` (at most 2 GiB), ring
    /// 0 starts at [`CONTROL_SIZE`], ring 1 right after it. Deterministic, so
    /// two sides formatting concurrently with the same options write the
    /// same values.
    pub fn compute(mem_len: usize, opts: &FormatOptions) -> Result<Layout, ChannelError> {
        let capped = core::cmp::min(mem_len, MAX_REGION_SIZE);
        if capped < CONTROL_SIZE || opts.index_base & (REC_ALIGN - 1) != 0 {
            return Err(ChannelError::InvalidLayout);
        }
        // Largest power of two <= capped (capped > 0 here).
        let region_size = prev_pow2(capped);
        let ring_size = match opts.ring_size {
            Some(s) => s,
            None => {
                let avail = region_size.saturating_sub(CONTROL_SIZE) / 2;
                if avail == 0 {
                    return Err(ChannelError::InvalidLayout);
                }
                let p = prev_pow2(avail);
                u32::try_from(core::cmp::min(p, MAX_RING_SIZE as usize))
                    .map_err(|_| ChannelError::InvalidLayout)?
            }
        };
        let r0_off = CONTROL_SIZE;
        // Ring 1 follows ring 0, cache-line aligned (tiny test rings are
        // smaller than a line).
        let r1_off = r0_off
            .checked_add(ring_size as usize)
            .and_then(|e| e.checked_add(CACHE_LINE - 1))
            .ok_or(ChannelError::InvalidLayout)?
            & !(CACHE_LINE - 1);
        let r0_off32 = u32::try_from(r0_off).map_err(|_| ChannelError::InvalidLayout)?;
        let r1_off32 = u32::try_from(r1_off).map_err(|_| ChannelError::InvalidLayout)?;
        let r0 = validate_ring(r0_off32, ring_size, region_size)?;
        let r1 = validate_ring(r1_off32, ring_size, region_size)?;
        Ok(Layout {
            region_size,
            epoch: 0,
            index_base: opts.index_base,
            features_optional: 0,
            rings: [r0, r1],
        })
    }
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// Writes everything but the magic. The caller holds the format claim
/// (magic == MAGIC_FORMATTING).
fn write_layout<M: SharedMemory + ?Sized>(mem: &M, l: &Layout) -> Result<u32, ChannelError> {
    // Whatever the old epoch was (even garbage), the new one differs from
    // it, so every endpoint attached to the old format notices.
    let epoch = mem.load_u32_relaxed(HDR_EPOCH)?.wrapping_add(1);
    // Zero the control area except the magic word first, so reserved
    // fields read as 0 and stale peer state is gone.
    let mut off = 4;
    while off < CONTROL_SIZE {
        mem.store_u32_relaxed(off, 0)?;
        off = off.wrapping_add(4);
    }
    // Region sizes are <= 2 GiB and ring offsets below that: fits in u32.
    let region = u32::try_from(l.region_size).map_err(|_| ChannelError::InvalidLayout)?;
    let r0o = u32::try_from(l.rings[0].offset).map_err(|_| ChannelError::InvalidLayout)?;
    let r1o = u32::try_from(l.rings[1].offset).map_err(|_| ChannelError::InvalidLayout)?;
    mem.store_u32_relaxed(HDR_VERSION, VERSION)?;
    mem.store_u32_relaxed(HDR_REGION_SIZE, region)?;
    mem.store_u32_relaxed(HDR_EPOCH, epoch)?;
    mem.store_u32_relaxed(HDR_FEATURES_REQUIRED, 0)?;
    mem.store_u32_relaxed(HDR_FEATURES_OPTIONAL, l.features_optional)?;
    mem.store_u32_relaxed(HDR_NUM_SLOTS, NUM_SLOTS)?;
    mem.store_u32_relaxed(HDR_INDEX_BASE, l.index_base)?;
    mem.store_u32_relaxed(HDR_RING0_OFFSET, r0o)?;
    mem.store_u32_relaxed(HDR_RING0_SIZE, l.rings[0].size)?;
    mem.store_u32_relaxed(HDR_RING1_OFFSET, r1o)?;
    mem.store_u32_relaxed(HDR_RING1_SIZE, l.rings[1].size)?;
    for slot in 0..NUM_SLOTS {
        let p = peer_entry(slot);
        mem.store_u32_relaxed(p.wrapping_add(PEER_STATE), PEER_ABSENT)?;
        mem.store_u32_relaxed(p.wrapping_add(PEER_DOORBELL_ID), NO_DOORBELL)?;
        let r = ring_ctrl(slot);
        mem.store_u32_relaxed(r.wrapping_add(RING_PROD), l.index_base)?;
        mem.store_u32_relaxed(r.wrapping_add(RING_CONS), l.index_base)?;
    }
    Ok(epoch)
}

/// Formats the region unconditionally (a VMM/server before handing the
/// memory out, or an operator's explicit reset). Every attached endpoint
/// sees [`ChannelError::Reset`] at its next call.
///
/// Formatting while another side formats with *different* options is not
/// supported; with the same options the result is consistent (the layout is
/// deterministic). Attach validates whatever it finds anyway.
pub fn format<M: SharedMemory + ?Sized>(
    mem: &M,
    opts: &FormatOptions,
) -> Result<Layout, ChannelError> {
    let mut l = Layout::compute(mem.len(), opts)?;
    mem.store_u32_relaxed(HDR_MAGIC, MAGIC_FORMATTING)?;
    // Readers that saw the old magic must not see our half-written fields
    // as part of the old format: order the claim before the field writes.
    mem.fence_seqcst();
    l.epoch = write_layout(mem, &l)?;
    mem.store_u32_release(HDR_MAGIC, MAGIC)?;
    Ok(l)
}

/// Returns the valid layout, formatting the region first if it holds no
/// channel (the "first side to find no valid magic formats" rule).
///
/// The claim is a compare-exchange of the magic word from the value just
/// read to [`MAGIC_FORMATTING`], so exactly one of two racing sides formats;
/// the other gets [`ChannelError::Busy`] and retries. A region with a valid
/// magic but an invalid header is *not* reformatted (a live peer may be
/// using it): that returns `Corrupted`/`Incompatible` and needs [`format`].
pub fn format_if_needed<M: SharedMemory + ?Sized>(
    mem: &M,
    opts: &FormatOptions,
) -> Result<Layout, ChannelError> {
    match Layout::read(mem) {
        Err(ChannelError::NotFormatted) => {}
        other => return other,
    }
    let mut l = Layout::compute(mem.len(), opts)?;
    let seen = mem.load_u32_acquire(HDR_MAGIC)?;
    if seen == MAGIC || seen == MAGIC_FORMATTING {
        // Someone formatted or started formatting since we looked.
        return Layout::read(mem);
    }
    match mem.compare_exchange_u32(HDR_MAGIC, seen, MAGIC_FORMATTING)? {
        Ok(_) => {}
        Err(_) => return Err(ChannelError::Busy),
    }
    l.epoch = write_layout(mem, &l)?;
    mem.store_u32_release(HDR_MAGIC, MAGIC)?;
    Ok(l)
}

/// Marks `slot` absent on behalf of a dead owner (for a VMM or rendezvous
/// server that learned the owner's VM is gone). The surviving side then
/// drains what is left and sees [`ChannelError::PeerGone`]. The generation
/// is left alone: the owner bumps it when it attaches again.
pub fn mark_absent<M: SharedMemory + ?Sized>(mem: &M, slot: u32) -> Result<(), ChannelError> {
    if slot >= NUM_SLOTS {
        return Err(ChannelError::InvalidSlot);
    }
    mem.store_u32_release(peer_entry(slot) + PEER_STATE, PEER_ABSENT)?;
    Ok(())
}
