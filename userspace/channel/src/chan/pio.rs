//! The `ivc-pio` device: its PCI identity and the register map of its I/O
//! BAR, shared by ivc-vmm's device model and the guest driver.
//!
//! The device is a register front end to a channel endpoint that lives in the
//! VMM: bytes the guest writes to `DATA` go into the VMM's endpoint (and from
//! there through shared memory to the peer VMM), bytes the guest reads from
//! `DATA` come out of it. Every access is a VM exit, so the guest moves bulk
//! data with string I/O (`rep outsb`/`rep insb`), which KVM hands to the VMM
//! a page at a time.
//!
//! All registers are little-endian; offsets are from the start of BAR0.
//! Accesses at other offsets or widths are ignored by the device (reads
//! return all ones) and counted as errors.
//!
//! This file is self-contained (it uses nothing from its sibling modules).

/// PCI vendor id (0x1234: the unassigned id QEMU's experimental devices use).
pub const VENDOR_ID: u16 = 0x1234;
/// PCI device id.
pub const DEVICE_ID: u16 = 0x1c1c;
/// PCI revision.
pub const REVISION: u8 = 1;
/// PCI class code: communication controller, other (0x07/0x80/0x00).
pub const CLASS_CODE: u32 = 0x07_80_00;
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
/// Descriptor mode: guest physical address of the buffer, low and high
/// 32 bits (read-write).
pub const REG_DESC_ADDR_LO: u16 = 0x20;
/// See [`REG_DESC_ADDR_LO`].
pub const REG_DESC_ADDR_HI: u16 = 0x24;
/// Descriptor mode: length of the buffer in bytes, at most
/// [`DESC_MAX_LEN`] (read-write).
pub const REG_DESC_LEN: u16 = 0x28;
/// Descriptor mode, 32-bit write-only: [`DESC_CMD_TX`] moves up to
/// `DESC_LEN` bytes from the buffer into the transmit stream (as many as it
/// has room for now), [`DESC_CMD_RX`] moves up to `DESC_LEN` bytes of the
/// receive stream into the buffer (as many as are there now). One `OUT`,
/// one VM exit, the whole buffer; neither ever waits.
pub const REG_DESC_CMD: u16 = 0x2c;
/// Descriptor mode, 32-bit read-only: the outcome of the last command,
/// bytes moved (0 when the ring was full or empty), or [`DESC_ERROR`] with
/// a `DESC_ERR_*` code in the low bits.
pub const REG_DESC_RESULT: u16 = 0x30;

/// `CAPS`: the descriptor registers are there.
pub const CAP_DESC: u32 = 1 << 0;
/// Longest buffer one command moves.
pub const DESC_MAX_LEN: u32 = 1 << 20;
/// `DESC_CMD`: buffer -> transmit stream.
pub const DESC_CMD_TX: u32 = 1;
/// `DESC_CMD`: receive stream -> buffer.
pub const DESC_CMD_RX: u32 = 2;
/// `DESC_RESULT`: the command failed; the code is in the low bits.
pub const DESC_ERROR: u32 = 1 << 31;
/// The buffer is not all guest RAM (outside it, over MMIO, or wrapping).
pub const DESC_ERR_RANGE: u32 = 1;
/// `DESC_LEN` is over [`DESC_MAX_LEN`].
pub const DESC_ERR_TOO_LONG: u32 = 2;
/// Not connected to a channel (not opened, or broken: see `STATUS`).
pub const DESC_ERR_CHANNEL: u32 = 3;
/// Transmit: the peer is gone (the guest sees `STATUS_PEER_GONE`).
pub const DESC_ERR_PEER_GONE: u32 = 4;
/// Not a known command.
pub const DESC_ERR_COMMAND: u32 = 5;

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
