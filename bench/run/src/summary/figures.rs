//! Looking a run's figures up: the records every section reads, and the
//! host's floors the channels are held against.

use crate::floors::{what, MEMCPY_REFERENCE};
use crate::record::{Data, Record};

/// The records of a run and the floors measured in it.
pub(super) struct Figures<'a> {
    /// Every suite's records, in suite order.
    pub records: &'a [Record],
    /// Cache-line round trip between two cores (64 B), ns.
    pub cacheline: Option<f64>,
    /// eventfd round trip between two processes, ns.
    pub eventfd: Option<f64>,
    /// Raw KVM_EXIT_IO round trip, ns.
    pub kvm: Option<f64>,
    /// 1-core memcpy of the reference block size, MiB/s.
    pub memcpy: Option<f64>,
}

impl<'a> Figures<'a> {
    /// The floors found among `records`.
    pub fn new(records: &'a [Record]) -> Self {
        Figures {
            records,
            cacheline: median_of(records, "host", what::CACHELINE, 64),
            eventfd: median_of(records, "host", what::EVENTFD, 8),
            kvm: median_of(records, "host", what::KVM_EXIT, 0),
            memcpy: best_transfer(records, "host", MEMCPY_REFERENCE).map(|t| t.0),
        }
    }

    /// Where `channel` was measured (its first record's environment).
    pub fn env_of(&self, channel: &str) -> String {
        self.records
            .iter()
            .find(|r| r.channel == channel)
            .map(|r| r.environment.clone())
            .unwrap_or_default()
    }

    /// See [`median_of`].
    pub fn median(&self, channel: &str, what_prefix: &str, size: u64) -> Option<f64> {
        median_of(self.records, channel, what_prefix, size)
    }

    /// See [`best_transfer`].
    pub fn best_transfer(&self, channel: &str, packet: u64) -> Option<(f64, u64, bool)> {
        best_transfer(self.records, channel, packet)
    }
}

/// The median of the first latency record of `channel` whose `what` starts
/// with `what_prefix`, for messages of `size` bytes.
pub(super) fn median_of(
    records: &[Record],
    channel: &str,
    what_prefix: &str,
    size: u64,
) -> Option<f64> {
    records.iter().find_map(|r| match &r.data {
        Data::Latency { stats, .. }
            if r.channel == channel && r.what.starts_with(what_prefix) && stats.size == size =>
        {
            Some(stats.median_ns)
        }
        _ => None,
    })
}

/// The throughput record of `channel` for `packet` that moved the most
/// bytes: (MiB/s, bytes, verified).
pub(super) fn best_transfer(
    records: &[Record],
    channel: &str,
    packet: u64,
) -> Option<(f64, u64, bool)> {
    best_transfer_of(records.iter(), channel, packet)
}

/// [`best_transfer`] among `records`.
pub(super) fn best_transfer_of<'a>(
    records: impl Iterator<Item = &'a Record>,
    channel: &str,
    packet: u64,
) -> Option<(f64, u64, bool)> {
    records
        .filter_map(|r| match &r.data {
            Data::Throughput {
                stats, verified, ..
            } if r.channel == channel && stats.packet == packet => {
                Some((stats.mib_s, stats.bytes, *verified))
            }
            _ => None,
        })
        .max_by_key(|t| t.1)
}

/// Time to move `requested` bytes in `packet`-byte calls, if measured whole.
pub(super) fn transfer_time(
    records: &[Record],
    channel: &str,
    packet: u64,
    requested: u64,
) -> Option<f64> {
    records.iter().find_map(|r| match &r.data {
        Data::Throughput {
            stats,
            requested: q,
            ..
        } if r.channel == channel
            && stats.packet == packet
            && *q == requested
            && stats.bytes == requested =>
        {
            Some(stats.ns as f64)
        }
        _ => None,
    })
}
