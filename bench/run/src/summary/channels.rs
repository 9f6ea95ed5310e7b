//! Section 2: the channels between Linux guests under QEMU TCG, and TCP over
//! loopback beside them: round trips against the cache-line or eventfd floor,
//! throughput against memcpy, and the 1 KiB target.

use super::compare::{against_memcpy, lat_ratio, no_floor, one_kib_in_bytes};
use super::figures::Figures;
use super::format::{fmt_bytes, fmt_ns, fmt_rate};
use super::Row;
use crate::record::BLOCK_PREFIX;

/// A channel's headline: how its ping-pong waits, and the latency floor it
/// is held against.
struct Headline<'a> {
    channel: &'a str,
    ping: &'a str,
    floor: Option<f64>,
    floor_name: &'a str,
}

/// Every channel's rows, in table order.
pub(super) fn rows(f: &Figures) -> Vec<Row> {
    let headlines = [
        ("tcp-loopback", "ping-pong", f.cacheline, "cache line"),
        ("shm-poll", "ping-pong (spin", f.cacheline, "cache line"),
        // The same channel through the mapped ring (`ivc-bench --path
        // mmap`), measured right after it in the same guests.
        (
            "shm-poll/mmap",
            "ping-pong (spin",
            f.cacheline,
            "cache line",
        ),
        ("shm-irq", "ping-pong", f.eventfd, "eventfd"),
        ("shm-irq/mmap", "ping-pong", f.eventfd, "eventfd"),
        // The doorbell channel with the driver spinning before it arms a
        // doorbell (irq_spin_us): latency only.
        ("shm-irq+spin", "ping-pong", f.eventfd, "eventfd"),
        ("shm-irq+spin/mmap", "ping-pong", f.eventfd, "eventfd"),
    ];
    let mut rows = Vec::new();
    for (channel, ping, floor, floor_name) in headlines {
        let h = Headline {
            channel,
            ping,
            floor,
            floor_name,
        };
        let environment = f.env_of(channel);
        rows.extend(round_trip_rows(f, &h, &environment));
        rows.extend(mapped_speedup_row(f, &h, &environment));
        rows.extend(interleaved_speedup_row(f, &h, &environment));
        rows.extend(throughput_row(f, channel, &environment));
        rows.extend(one_kib_in_bytes(f.records, channel, &environment));
    }
    rows
}

/// The 64 B round trip (and, for a polled channel, the same with blocking
/// calls) against the floor, and the 64 KiB round trip.
fn round_trip_rows(f: &Figures, h: &Headline, environment: &str) -> Vec<Row> {
    let row = |what: &str, m: f64, columns| {
        Row::new(h.channel, environment.into(), what, fmt_ns(m), columns)
    };
    let mut rows = Vec::new();
    if let Some(m) = f.median(h.channel, h.ping, 64) {
        let columns = lat_ratio(m, h.floor, h.floor_name);
        rows.push(row("64 B round trip (median)", m, columns));
    }
    // A polled channel also measured with blocking reads (the driver
    // spins, then sleeps): what an ordinary program would see.
    if h.ping != "ping-pong" {
        if let Some(m) = f.median(h.channel, "ping-pong (block", 64) {
            let columns = lat_ratio(m, h.floor, h.floor_name);
            rows.push(row("64 B round trip, blocking calls (median)", m, columns));
        }
    }
    if let Some(m) = f.median(h.channel, h.ping, 64 << 10) {
        rows.push(row("64 KiB round trip (median)", m, no_floor()));
    }
    rows
}

/// For a mapped channel (`<channel>/mmap`): how many times faster its 64 B
/// round trip is than the read/write path's in the same run, against the
/// target of 3x (issue 14).
fn mapped_speedup_row(f: &Figures, h: &Headline, environment: &str) -> Option<Row> {
    let base = h.channel.strip_suffix("/mmap")?;
    let syscall = f.median(base, h.ping, 64)?;
    let mapped = f.median(h.channel, h.ping, 64)?;
    if mapped <= 0.0 {
        return None;
    }
    let x = syscall / mapped;
    Some(Row::new(
        h.channel,
        environment.into(),
        "64 B round trip, read/write path / mapped path (medians)",
        format!("{x:.1}x"),
        (
            format!("read/write {}", fmt_ns(syscall)),
            if x >= 3.0 {
                "target 3x met"
            } else {
                "target 3x missed"
            }
            .into(),
        ),
    ))
}

/// For a mapped channel: the same speed-up from the interleaved blocks (a
/// read/write block, then a mapped block, repeated in the same guests): the
/// median of the per-pair ratios, and their spread.
fn interleaved_speedup_row(f: &Figures, h: &Headline, environment: &str) -> Option<Row> {
    let base = h.channel.strip_suffix("/mmap")?;
    let mut ratios = Vec::new();
    for n in 1u32.. {
        let what = format!("{BLOCK_PREFIX}{n}:");
        let (Some(s), Some(m)) = (f.median(base, &what, 64), f.median(h.channel, &what, 64)) else {
            break;
        };
        if m > 0.0 {
            ratios.push(s / m);
        }
    }
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let mid = ratios[ratios.len() / 2];
    let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
    Some(Row::new(
        h.channel,
        environment.into(),
        format!(
            "64 B round trip, read/write / mapped, {} interleaved block pairs (median ratio)",
            ratios.len()
        ),
        format!("{mid:.1}x"),
        (
            format!("pairs {lo:.1}x..{hi:.1}x"),
            if mid >= 3.0 {
                "target 3x met"
            } else {
                "target 3x missed"
            }
            .into(),
        ),
    ))
}

/// The best 64 KiB-packet transfer against memcpy.
fn throughput_row(f: &Figures, channel: &str, environment: &str) -> Option<Row> {
    let (rate, bytes, verified) = f.best_transfer(channel, 64 << 10)?;
    // TCP only counts its bytes: not a mismatch.
    let check = if verified || channel == "tcp-loopback" {
        ""
    } else {
        " DATA MISMATCH"
    };
    Some(Row::new(
        channel,
        environment.into(),
        format!("throughput, 64 KiB packets ({} moved)", fmt_bytes(bytes)),
        format!("{}{check}", fmt_rate(rate)),
        against_memcpy(rate, f.memcpy),
    ))
}
