//! The `ivc-pio` device: the register map of its I/O BAR, shared by
//! ivc-vmm's device model and the guest driver (its PCI identity is in the
//! `pci_ids` module, next to ivshmem's).
//!
//! The device is a register front end to a channel endpoint that lives in the
//! VMM: bytes the guest writes to `DATA` go into the VMM's endpoint (and from
//! there through shared memory to the peer VMM), bytes the guest reads from
//! `DATA` come out of it. Every access is a VM exit, so the guest moves bulk
//! data either with string I/O (`rep outsb`/`rep insb`, which KVM hands to
//! the VMM an element or a page at a time) or, from version 3 on, with
//! descriptor mode: one `IN` moves a whole buffer in guest RAM.
//!
//! All registers are little-endian; offsets are from the start of BAR0.
//! Accesses at other offsets or widths are ignored by the device (reads
//! return all ones) and counted as errors.
//!
//! This file is self-contained (it uses nothing from its sibling modules).

/// Size of the I/O BAR in bytes.
pub const BAR0_SIZE: u32 = 0x40;

/// Data port. `OUT` (8, 16 or 32 bits, or `rep outsb`) appends bytes to the
/// transmit stream, at most `TX_FREE` of them; `IN` (or `rep insb`) takes
/// bytes from the receive stream, at most `RX_AVAIL` of them. Bytes beyond
/// those limits are dropped (writes) or read as 0xff (reads), and set
/// [`STATUS_ERROR`].
pub const REG_DATA: u16 = 0x00;
/// Status, 32-bit read-only; the `STATUS_*` bits.
pub const REG_STATUS: u16 = 0x04;
/// Bytes `DATA` can deliver now, 32-bit read-only.
pub const REG_RX_AVAIL: u16 = 0x08;
/// Bytes `DATA` accepts now, 32-bit read-only (0 while not connected).
pub const REG_TX_FREE: u16 = 0x0c;
/// Control, 32-bit write-only; the `CONTROL_*` bits.
pub const REG_CONTROL: u16 = 0x10;
/// Identification, 32-bit read-only: [`MAGIC`].
pub const REG_ID: u16 = 0x14;
/// Register map version, 32-bit read-only: [`VERSION`].
pub const REG_VERSION: u16 = 0x18;

/// Capabilities, 32-bit read-only; the `CAP_*` bits (version 3 on).
pub const REG_CAPS: u16 = 0x1c;
/// Descriptor mode: guest physical address of the transmit descriptor
/// ([`Desc`]), low and high 32 bits (read-write; 0 = none).
pub const REG_TX_DESC_LO: u16 = 0x20;
/// See [`REG_TX_DESC_LO`].
pub const REG_TX_DESC_HI: u16 = 0x24;
/// Descriptor mode: guest physical address of the receive descriptor,
/// low and high 32 bits (read-write; 0 = none).
pub const REG_RX_DESC_LO: u16 = 0x28;
/// See [`REG_RX_DESC_LO`].
pub const REG_RX_DESC_HI: u16 = 0x2c;
/// Descriptor mode, 32-bit `IN` only: runs the transmit descriptor, moving
/// up to its `len` bytes from its buffer into the transmit stream (as many
/// as there is room for now), and returns the bytes moved (0 when the ring
/// is full) or [`DESC_ERROR`] with a `DESC_ERR_*` code in the low bits.
/// One `IN`, one VM exit, the whole buffer; it never waits.
///
/// A read with an effect: the result comes back in the same exit, and the
/// two directions have their own descriptor and register, so a reader and
/// a writer on two CPUs need no lock between them.
pub const REG_TX_GO: u16 = 0x30;
/// Descriptor mode, 32-bit `IN` only: runs the receive descriptor, moving
/// up to `len` bytes of the receive stream (as many as are there now) into
/// its buffer; the result as for [`REG_TX_GO`].
pub const REG_RX_GO: u16 = 0x34;

/// A descriptor in guest RAM, 16 bytes, little-endian: the buffer's guest
/// physical address and length. The guest sets the descriptor's address
/// once (`TX_DESC`/`RX_DESC`) and rewrites the descriptor itself, in its
/// own memory, before each `GO`; the device reads it once per `GO`.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | `addr`: guest physical address of the buffer |
/// | 8 | 4 | `len`: bytes, at most [`DESC_MAX_LEN`] |
/// | 12 | 4 | reserved, 0 |
pub struct Desc;

impl Desc {
    /// Size of a descriptor in bytes.
    pub const SIZE: usize = 16;

    /// The descriptor for `len` bytes at `addr`.
    pub fn encode(addr: u64, len: u32) -> [u8; Self::SIZE] {
        let [a0, a1, a2, a3, a4, a5, a6, a7] = addr.to_le_bytes();
        let [l0, l1, l2, l3] = len.to_le_bytes();
        [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, 0, 0, 0, 0]
    }

    /// (addr, len) of a descriptor.
    pub fn decode(d: &[u8; Self::SIZE]) -> (u64, u32) {
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, ..] = *d;
        (
            u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            u32::from_le_bytes([l0, l1, l2, l3]),
        )
    }
}

/// `CAPS`: the descriptor registers are there.
pub const CAP_DESC: u32 = 1 << 0;
/// Longest buffer one descriptor moves.
pub const DESC_MAX_LEN: u32 = 1 << 20;
/// A `GO` result: the command failed; the code is in the low bits.
pub const DESC_ERROR: u32 = 1 << 31;
/// The descriptor or its buffer is not all guest RAM (outside it, over
/// MMIO, or wrapping).
pub const DESC_ERR_RANGE: u32 = 1;
/// The descriptor's `len` is over [`DESC_MAX_LEN`].
pub const DESC_ERR_TOO_LONG: u32 = 2;
/// Not connected to a channel (not opened, or broken: see `STATUS`).
pub const DESC_ERR_CHANNEL: u32 = 3;
/// Transmit: the peer is gone (the guest sees `STATUS_PEER_GONE`).
pub const DESC_ERR_PEER_GONE: u32 = 4;
/// No descriptor address was set for this direction (or the VMM offers no
/// descriptor mode).
pub const DESC_ERR_NO_DESC: u32 = 5;

/// Value of `REG_ID`: `"IVCP"` little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"IVCP");
/// Value of `REG_VERSION`. Version 2 added [`CONTROL_RESUME`], version 3
/// `CAPS` and descriptor mode (a 64-byte BAR).
pub const VERSION: u32 = 3;

/// `RX_AVAIL > 0`: a read would return data.
pub const STATUS_RX_READY: u32 = 1 << 0;
/// `TX_FREE > 0`: a write would be accepted.
pub const STATUS_TX_SPACE: u32 = 1 << 1;
/// The channel is connected to a peer (both sides opened).
pub const STATUS_CONNECTED: u32 = 1 << 2;
/// The peer left and everything it sent was read: the next read is end of
/// file. Cleared when a new peer connects.
pub const STATUS_PEER_GONE: u32 = 1 << 3;
/// The channel is broken (the shared memory between the VMMs violated the
/// protocol) or the guest accessed the device wrongly; sticky until
/// [`CONTROL_CLEAR_ERROR`].
pub const STATUS_ERROR: u32 = 1 << 4;

/// The guest opened the device: join the channel (like the first `open`).
pub const CONTROL_OPEN: u32 = 1 << 0;
/// The guest closed the device: leave the channel (the peer sees end of
/// file after draining).
pub const CONTROL_CLOSE: u32 = 1 << 1;
/// Clear [`STATUS_ERROR`] (after a broken channel: also re-attach).
pub const CONTROL_CLEAR_ERROR: u32 = 1 << 2;
/// The guest's user came back after the end of a connection was reported to
/// it (end of file or `EPIPE`): a new peer may be connected from now on.
/// Until then, after the device reported [`STATUS_PEER_GONE`], the VMM's
/// endpoint does not take a new peer, so data a new peer sends cannot go to
/// a user that is about to close (docs/protocol.md, "Connection handshake").
pub const CONTROL_RESUME: u32 = 1 << 3;
