//! Single-core memcpy bandwidth: the ceiling of shared-memory throughput,
//! where every byte is copied into the ring by one side and out by the other.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::model::Throughput;

/// Copies `size`-byte blocks between two `size`-byte buffers for about
/// `budget` and returns the rate. Sizes above the last-level cache measure
/// DRAM bandwidth; small ones the bandwidth out of the caches.
pub fn measure(size: usize, budget: Duration) -> Throughput {
    let size = size.max(1);
    let src = vec![0x5au8; size];
    let mut dst = vec![0u8; size];
    // Touch both once so page faults are not timed.
    dst.copy_from_slice(&src);
    let start = Instant::now();
    let mut bytes = 0u64;
    while bytes == 0 || start.elapsed() < budget {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        bytes += size as u64;
    }
    Throughput::new(size as u64, bytes, start.elapsed())
}
