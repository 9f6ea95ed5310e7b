//! Cross-process cache-line ping-pong: the floor of `shm-poll` latency.
//!
//! Two processes share one anonymous `MAP_SHARED` page. The parent stores an
//! odd counter value into one 64-byte line; the child, spinning on that
//! line, answers with the next even value; the parent spins until it sees
//! it. One round trip moves the line core-to-core twice, which is exactly
//! what a ring index does between two polling vCPUs, minus the guests.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fork::{spawn_pinned, CpuPair, Pinned};
use crate::model::{ns, Latency};
use crate::shared::SharedMap;

/// Round trips averaged into one sample: a clock read (~20-30 ns through the
/// vDSO) would otherwise be a large part of a ~100 ns round trip.
pub const BATCH: u64 = 32;
/// Value that tells the child to exit.
const STOP: u64 = u64::MAX;
/// Value the child stores once it is pinned and spinning.
const READY: u64 = u64::MAX - 1;

/// The first word of the mapping's second cache line (the first holds
/// nothing, so the word is alone in its line).
fn word(page: &SharedMap) -> &AtomicU64 {
    // SAFETY: the mapping is at least a page, zero-filled, page-aligned and
    // lives as long as `page`; offset 64 is 8-byte aligned; AtomicU64 allows
    // the concurrent access by the other process.
    unsafe { &*page.ptr().add(64).cast::<AtomicU64>() }
}

/// Measures for about `budget` (at least `min_samples` samples of
/// [`BATCH`] round trips).
pub fn measure(cpus: CpuPair, budget: Duration, min_samples: usize) -> io::Result<Latency> {
    let page = SharedMap::new(4096)?;
    let w = word(&page);
    // SAFETY: the child only spins on an atomic in shared memory and stores
    // to it: no allocation, locks or I/O.
    let child = unsafe {
        spawn_pinned(cpus.b, || {
            w.store(READY, Ordering::Release);
            let mut expect = 1u64;
            loop {
                let v = w.load(Ordering::Acquire);
                if v == STOP {
                    return 0;
                }
                if v == expect {
                    w.store(v + 1, Ordering::Release);
                    expect += 2;
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    }?;
    let _pinned = Pinned::to(cpus.a)?;
    let give_up = Instant::now() + Duration::from_secs(10);
    let wait_for = |v: u64| -> io::Result<()> {
        let mut spins = 0u32;
        while w.load(Ordering::Acquire) != v {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins == 0 && Instant::now() > give_up {
                return Err(io::Error::other("cache-line peer stopped answering"));
            }
        }
        Ok(())
    };
    wait_for(READY)?;
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut next = 1u64;
    // A few untimed batches first: caches, TLB, the child reaching its loop.
    for i in 0.. {
        if i >= 4 + min_samples && start.elapsed() >= budget {
            break;
        }
        let t0 = Instant::now();
        for _ in 0..BATCH {
            w.store(next, Ordering::Release);
            wait_for(next + 1)?;
            next += 2;
        }
        if i >= 4 {
            samples.push(ns(t0.elapsed()));
        }
    }
    w.store(STOP, Ordering::Release);
    child.wait(Duration::from_secs(5))?;
    Latency::from_samples(64, BATCH, &mut samples).ok_or_else(|| io::Error::other("no samples"))
}
