// SPDX-License-Identifier: GPL-2.0

//! The user buffer of a `read(2)`/`write(2)`: pieces of it are copied to and
//! from kernel slices through `kernel::uaccess`, and straight to and from
//! shared memory by `SharedMapping` (the `uaccess` abstraction only copies
//! into Rust slices, which shared memory must never become).

use kernel::{
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

/// The user buffer of one `read(2)` or `write(2)`: an address in the
/// caller's address space and a length. Nothing is assumed about the
/// address; every copy checks its range against the length, and the user
/// access helpers turn a bad address into `EFAULT`.
pub(crate) struct UserBuf {
    ptr: UserPtr,
    len: usize,
}

impl UserBuf {
    pub(super) fn new(ptr: UserPtr, len: usize) -> Self {
        Self { ptr, len }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The user address of bytes `off..off + n`, which must lie inside.
    pub(super) fn at(&self, off: usize, n: usize) -> Result<UserPtr> {
        match off.checked_add(n) {
            Some(end) if end <= self.len => Ok(self.ptr.wrapping_byte_add(off)),
            _ => Err(EFAULT),
        }
    }

    /// Copies bytes `off..off + dst.len()` of the buffer into `dst`.
    pub(crate) fn read_at(&self, off: usize, dst: &mut [u8]) -> Result {
        let p = self.at(off, dst.len())?;
        UserSlice::new(p, dst.len()).reader().read_slice(dst)
    }

    /// Copies `src` into bytes `off..off + src.len()` of the buffer.
    pub(crate) fn write_at(&self, off: usize, src: &[u8]) -> Result {
        let p = self.at(off, src.len())?;
        UserSlice::new(p, src.len()).writer().write_slice(src)
    }
}
