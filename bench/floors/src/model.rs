//! Result records shared by the floors and the runner.

use std::time::Duration;

use ivc_kit::stats::summarize;
use serde::{Deserialize, Serialize};

/// Round-trip latency of one message size, nanoseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Message size in bytes (0 where the floor moves no payload).
    pub size: u64,
    /// Round trips measured (per sample, see `batch`).
    pub iters: u64,
    /// Round trips averaged into one sample: 1 means every round trip was
    /// timed on its own; more when a clock read would cost a noticeable part
    /// of one (the cache-line floor).
    pub batch: u64,
    /// Fastest sample.
    pub min_ns: f64,
    /// Median sample.
    pub median_ns: f64,
    /// 99th percentile sample.
    pub p99_ns: f64,
    /// Slowest sample.
    pub max_ns: f64,
    /// Mean of all samples.
    pub mean_ns: f64,
}

impl Latency {
    /// Summarises samples of `batch` round trips each (times in ns per
    /// sample); `None` when there are none.
    pub fn from_samples(size: u64, batch: u64, samples: &mut [u64]) -> Option<Self> {
        let s = summarize(samples)?;
        let b = batch.max(1) as f64;
        Some(Latency {
            size,
            iters: s.count as u64 * batch.max(1),
            batch: batch.max(1),
            min_ns: s.min as f64 / b,
            median_ns: s.median as f64 / b,
            p99_ns: s.p99 as f64 / b,
            max_ns: s.max as f64 / b,
            mean_ns: s.mean() / b,
        })
    }
}

/// One-way throughput of one transfer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Bytes per write/read call (or per copy).
    pub packet: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Time taken, nanoseconds.
    pub ns: u64,
    /// MiB/s (bytes / 2^20 per second).
    pub mib_s: f64,
}

impl Throughput {
    /// `bytes` in `packet`-byte calls took `elapsed`.
    pub fn new(packet: u64, bytes: u64, elapsed: Duration) -> Self {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
        Throughput {
            packet,
            bytes,
            ns,
            mib_s: bytes as f64 / (ns as f64 / 1e9) / (1u64 << 20) as f64,
        }
    }
}

/// Nanoseconds of a duration, saturating.
pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_divided_out() {
        let l = Latency::from_samples(64, 10, &mut [1000, 2000, 3000]).expect("samples");
        assert_eq!(l.iters, 30);
        assert_eq!(l.min_ns, 100.0);
        assert_eq!(l.median_ns, 200.0);
        assert_eq!(l.max_ns, 300.0);
        assert!(Latency::from_samples(1, 1, &mut []).is_none());
    }

    #[test]
    fn throughput_rate() {
        let t = Throughput::new(4096, 1 << 20, Duration::from_millis(500));
        assert_eq!(t.mib_s, 2.0);
        // A zero duration does not divide by zero.
        assert!(Throughput::new(1, 1, Duration::ZERO).mib_s.is_finite());
    }
}
