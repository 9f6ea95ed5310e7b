//! The memory access abstraction: how the channel code touches shared memory.
//!
//! The channel never dereferences shared memory itself. Every access goes
//! through [`SharedMemory`], which the embedder implements for its mapping
//! (the kernel module over its BAR2 mapping, host tools over an `mmap`, tests
//! over atomics or a model checker's atomics). This keeps the ring logic free
//! of `unsafe` and lets the same logic run under loom and Miri.
//!
//! All `u32` fields in the channel are **little-endian** in shared memory;
//! the `*_u32_*` methods take and return host-order values.
//!
//! This file is self-contained (it uses nothing from its sibling modules).

/// An access fell outside the memory, or a `u32` access was not 4-byte aligned.
///
/// The size of the shared memory comes from an untrusted source (a BAR size,
/// a header field), so an implementation must report this instead of
/// touching memory it does not own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds;

/// Access to a region of memory shared with an untrusted peer.
///
/// # Contract for implementers
///
/// * Offsets are byte offsets from the start of the region. Every method
///   checks `off` (and `off + length`) against [`len`](Self::len) with
///   overflow-free arithmetic and returns [`OutOfBounds`] instead of
///   accessing anything outside; `u32` accesses also require `off % 4 == 0`.
/// * The `u32` accesses are single-copy atomic (no tearing) and use the named
///   ordering with the meaning of `core::sync::atomic::Ordering`.
///   `compare_exchange_u32` is sequentially consistent on success and failure.
/// * [`read_bytes`](Self::read_bytes) / [`write_bytes`](Self::write_bytes)
///   may race with the peer; they must be free of undefined behaviour when
///   they do (use relaxed atomics, volatile or `memcpy_{from,to}io`-style
///   copies), may tear arbitrarily, and carry no ordering of their own: the
///   channel orders them with the acquire/release index accesses.
/// * [`fence_seqcst`](Self::fence_seqcst) is a full barrier that also orders
///   earlier stores before later loads (`fence(SeqCst)`, `smp_mb()`,
///   `mfence`/`lock`-prefixed instruction on x86). The wake-up suppression
///   protocol depends on it.
/// * The mapping must be coherent, ordinary memory with the usual CPU
///   ordering rules: on x86 map ivshmem BAR2 write-back (`memremap(..,
///   MEMREMAP_WB)`), not write-combining, whose stores may be reordered.
/// * No method may panic.
pub trait SharedMemory {
    /// Size of the region in bytes.
    fn len(&self) -> usize;

    /// `true` if the region has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the little-endian `u32` at `off` with acquire ordering.
    fn load_u32_acquire(&self, off: usize) -> Result<u32, OutOfBounds>;

    /// Loads the little-endian `u32` at `off` with relaxed ordering.
    fn load_u32_relaxed(&self, off: usize) -> Result<u32, OutOfBounds>;

    /// Stores `v` little-endian at `off` with release ordering.
    fn store_u32_release(&self, off: usize, v: u32) -> Result<(), OutOfBounds>;

    /// Stores `v` little-endian at `off` with relaxed ordering.
    fn store_u32_relaxed(&self, off: usize, v: u32) -> Result<(), OutOfBounds>;

    /// Atomically replaces the `u32` at `off` with `new` if it equals
    /// `current`. Returns `Ok(Ok(previous))` on success and
    /// `Ok(Err(actual))` on failure (sequentially consistent either way).
    fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds>;

    /// Copies `dst.len()` bytes starting at `off` into `dst`.
    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds>;

    /// Copies `src` into the region starting at `off`.
    fn write_bytes(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds>;

    /// Full (sequentially consistent) memory barrier.
    fn fence_seqcst(&self);
}

/// Lets an endpoint borrow the memory (`Endpoint<&M>`), e.g. two endpoints
/// over one region in a test.
impl<T: SharedMemory + ?Sized> SharedMemory for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn load_u32_acquire(&self, off: usize) -> Result<u32, OutOfBounds> {
        (**self).load_u32_acquire(off)
    }
    fn load_u32_relaxed(&self, off: usize) -> Result<u32, OutOfBounds> {
        (**self).load_u32_relaxed(off)
    }
    fn store_u32_release(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        (**self).store_u32_release(off, v)
    }
    fn store_u32_relaxed(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        (**self).store_u32_relaxed(off, v)
    }
    fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds> {
        (**self).compare_exchange_u32(off, current, new)
    }
    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        (**self).read_bytes(off, dst)
    }
    fn write_bytes(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        (**self).write_bytes(off, src)
    }
    fn fence_seqcst(&self) {
        (**self).fence_seqcst()
    }
}
