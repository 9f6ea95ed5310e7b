//! Latency samples in guest RAM and their summary (min, median, p99, max,
//! mean), for the ping-pong benchmark. No allocator here: the samples live
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

/// Summary of samples in TSC cycles per round trip.
pub struct Summary {
    pub count: usize,
    pub min: u64,
    pub median: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

/// Sorts `samples` and summarises them; `None` when empty.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    let n = samples.len();
    if n == 0 {
        return None;
    }
    heap_sort(samples);
    // Nearest rank: the smallest sample with at least p% of samples <= it.
    let rank = |pct: usize| samples[(n * pct).div_ceil(100).clamp(1, n) - 1];
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Some(Summary {
        count: n,
        min: samples[0],
        median: rank(50),
        p99: rank(99),
        max: samples[n - 1],
        mean: (sum / n as u128) as u64,
    })
}

/// In-place heap sort. Written out rather than `sort_unstable` because the
/// latter uses bit-count intrinsics, which may compile to instructions the
/// build script rejects for this guest (TZCNT/LZCNT, see docs/test-guest.md).
fn heap_sort(v: &mut [u64]) {
    let sift_down = |v: &mut [u64], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            break;
        }
        if child + 1 < end && v[child] < v[child + 1] {
            child += 1;
        }
        if v[root] >= v[child] {
            break;
        }
        v.swap(root, child);
        root = child;
    };
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down(v, start, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// `cycles` in nanoseconds at `khz` (integer arithmetic: no floating point
/// in this guest).
pub fn ns(cycles: u64, khz: u64) -> u64 {
    if khz == 0 {
        return 0;
    }
    (u128::from(cycles) * 1_000_000 / u128::from(khz)) as u64
}
