//! A null system call on the host: the unit that every `read`/`write` on a
//! channel device pays at least once, for comparison with the same call
//! inside an emulated guest (`ivc-bench calib`).

use std::time::{Duration, Instant};

use crate::model::{ns, Latency};

/// Calls per timed sample (a null call is tens of ns; a clock read is not
/// much less).
pub const BATCH: u64 = 64;

/// Times `getppid()` for about `budget`.
pub fn measure(budget: Duration, min_samples: usize) -> Latency {
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < min_samples.max(1) || start.elapsed() < budget {
        let t0 = Instant::now();
        for _ in 0..BATCH {
            // SAFETY: getppid has no arguments and no side effects.
            std::hint::black_box(unsafe { libc::getppid() });
        }
        samples.push(ns(t0.elapsed()));
    }
    // At least one sample was pushed, so from_samples cannot fail; the
    // fallback only satisfies the type.
    Latency::from_samples(0, BATCH, &mut samples).unwrap_or(Latency {
        size: 0,
        iters: 0,
        batch: BATCH,
        min_ns: 0.0,
        median_ns: 0.0,
        p99_ns: 0.0,
        max_ns: 0.0,
        mean_ns: 0.0,
    })
}
