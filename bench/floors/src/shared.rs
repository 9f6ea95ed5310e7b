//! Anonymous `MAP_SHARED` memory that forked processes keep sharing.

use std::io;

/// An anonymous shared mapping, zero-filled, page-aligned, unmapped on drop.
pub(crate) struct SharedMap {
    ptr: *mut libc::c_void,
    len: usize,
}

impl SharedMap {
    /// Maps `len` bytes (rounded up to pages by the kernel).
    pub(crate) fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap { ptr, len })
    }

    /// The first byte; valid for `len` bytes while `self` lives.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.cast()
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`; borrows of it end with
        // `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
