//! [`ChannelError`]: everything that can go wrong, as one small `Copy` enum.
//!
//! Uses only `super::shm` from its siblings.

use super::shm::OutOfBounds;

/// Errors of the channel. Suggested errno mappings for a character device
/// are given per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// Shared memory violated the protocol (an index out of range, an
    /// unknown state value, an access outside the region). The endpoint is
    /// latched broken: every later call returns this error. `-EIO`.
    Corrupted,
    /// The region was re-formatted (magic or epoch changed) after this
    /// endpoint attached. Latched; attach again. `-EIO` or `-ECONNRESET`.
    Reset,
    /// The region holds no valid channel and formatting was not allowed.
    /// `-ENODEV`.
    NotFormatted,
    /// Another side is formatting the region right now: retry shortly. A
    /// region stuck in this state (its formatter died) needs a forced
    /// format. `-EAGAIN`.
    Busy,
    /// The region was formatted by an incompatible version or uses a
    /// required feature this code does not know. `-EPROTO`.
    Incompatible,
    /// The memory is too small for the requested layout, or the format
    /// options are invalid. `-EINVAL`.
    InvalidLayout,
    /// The slot number is not 0 or 1. `-EINVAL`.
    InvalidSlot,
    /// `attach_any` found no free slot. `-EBUSY`.
    NoFreeSlot,
    /// The connection ended: the peer closed, restarted, broke or was
    /// marked absent. From `read`: end of file, returned once the data the
    /// peer left behind has been read (map to a 0-byte read). From `write`:
    /// `-EPIPE`. A new peer incarnation is accepted automatically afterwards.
    PeerGone,
    /// This endpoint was closed. `-EBADF` / `-ESHUTDOWN`.
    Closed,
}

impl From<OutOfBounds> for ChannelError {
    /// The layout is validated against the memory size at attach, so an
    /// out-of-bounds access afterwards means the header or the memory
    /// changed under us.
    fn from(_: OutOfBounds) -> Self {
        ChannelError::Corrupted
    }
}

impl core::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            ChannelError::Corrupted => "shared memory violated the channel protocol",
            ChannelError::Reset => "channel was re-formatted",
            ChannelError::NotFormatted => "no valid channel in shared memory",
            ChannelError::Busy => "channel is being formatted",
            ChannelError::Incompatible => "incompatible channel version or features",
            ChannelError::InvalidLayout => "invalid channel layout",
            ChannelError::InvalidSlot => "invalid slot",
            ChannelError::NoFreeSlot => "no free slot",
            ChannelError::PeerGone => "peer is gone",
            ChannelError::Closed => "endpoint is closed",
        };
        f.write_str(s)
    }
}

/// Why [`Endpoint::write_with`](super::Endpoint::write_with) or
/// [`Endpoint::read_with`](super::Endpoint::read_with) moved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyError<E> {
    /// The channel's own error, exactly as `write` or `read` would return it.
    Channel(ChannelError),
    /// The caller's copy failed on the first piece (in ivc.ko: a bad user
    /// address, `-EFAULT`): nothing was published or consumed.
    Copy(E),
}
