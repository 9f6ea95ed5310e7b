//! Latency samples in guest RAM for the ping-pong benchmark (their summary is
//! `ivc_kit::stats`, shared with the host tools). No allocator here: the samples live
//! in RAM from the PVH memory map above the image, reserved at CPL0.
//!
//! Percentiles are nearest rank, so every reported figure is a time that was
//! measured (the convention of `ivc-bench` and the host floors).

use crate::{boot, paging};

/// A reserved array of `cap` u64 in RAM (identity-mapped, user-accessible).
#[derive(Clone, Copy)]
pub struct Region {
    pub addr: u64,
    pub cap: usize,
}

/// Finds `bytes` of free RAM above the image, inside the boot map's
/// 4 GiB identity map; its page-aligned address.
pub fn reserve(info: &crate::pvh::StartInfo, bytes: u64) -> Option<u64> {
    let addr = info.find_ram(boot::image_end(), bytes, 4096)?;
    (addr.checked_add(bytes)? <= paging::BOOT_MAPPED_END).then_some(addr)
}

impl Region {
    /// The samples as a slice.
    pub fn slice(&self) -> &'static mut [u64] {
        // SAFETY: `addr..addr + cap * 8` is RAM from the memory map above
        // the image (see `reserve`), identity-mapped, 8-byte aligned
        // (page-aligned) and used by nothing else; one test owns it and
        // takes the slice once.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u64, self.cap) }
    }
}

/// Sorts the samples (TSC cycles per round trip) and summarises them with
/// `ivc_kit::stats` (nearest rank, integers only); `None` when empty.
pub use ivc_kit::stats::summarize;

/// `cycles` in nanoseconds at `khz` (integer arithmetic: no floating point
/// in this guest).
pub fn ns(cycles: u64, khz: u64) -> u64 {
    if khz == 0 {
        return 0;
    }
    (u128::from(cycles) * 1_000_000 / u128::from(khz)) as u64
}
