//! The floor and ratio columns: a figure held against what bounds it.

use super::figures::transfer_time;
use super::format::{fmt_ns, fmt_rate};
use super::Row;
use crate::record::Record;

/// The floor and ratio columns of a row without a floor.
pub(super) fn no_floor() -> (String, String) {
    (String::new(), String::new())
}

/// The floor and ratio columns of a throughput `rate` (MiB/s) against
/// 1-core memcpy, empty without a floor.
pub(super) fn against_memcpy(rate: f64, memcpy: Option<f64>) -> (String, String) {
    match memcpy {
        Some(f) if f > 0.0 => (
            format!("memcpy {}", fmt_rate(f)),
            format!("{:.1}%", 100.0 * rate / f),
        ),
        _ => no_floor(),
    }
}

/// The floor and ratio columns of a latency `fig` (ns) against the floor
/// called `name`, empty without a floor.
pub(super) fn lat_ratio(fig: f64, floor: Option<f64>, name: &str) -> (String, String) {
    match floor {
        Some(f) if f > 0.0 => (format!("{name} {}", fmt_ns(f)), format!("{:.1}x", fig / f)),
        _ => no_floor(),
    }
}

/// The "1 KiB in 1 B packets" row of `channel` against its 100 ms target,
/// if that transfer was measured whole.
pub(super) fn one_kib_in_bytes(
    records: &[Record],
    channel: &str,
    environment: &str,
) -> Option<Row> {
    let ns = transfer_time(records, channel, 1, 1024)?;
    Some(Row {
        channel: channel.into(),
        environment: environment.into(),
        what: "1 KiB in 1 B packets".into(),
        figure: fmt_ns(ns),
        floor: "target 100 ms".into(),
        ratio: if ns < 100e6 { "met" } else { "missed" }.into(),
    })
}
