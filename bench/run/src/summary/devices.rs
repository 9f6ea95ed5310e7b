//! Section 3: the ivc-vmm devices between bare-metal guests: both directions
//! at once, the shared-memory round trips the latency targets are about, the
//! ring stream, and the doorbell path.

use super::compare::{against_memcpy, lat_ratio, no_floor};
use super::figures::{best_transfer_of, Figures};
use super::format::{fmt_bytes, fmt_ns, fmt_rate, rate_figure};
use super::Row;
use crate::floors::what;
use crate::record::Data;
use crate::vmm_devices::DUPLEX;
use crate::vmm_shm;

/// Both directions at once, 4 KiB per call, per device channel.
pub(super) fn duplex_rows(f: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    for channel in ["ivc-vmm shm-poll", "ivc-vmm shm-irq", "ivc-vmm pio"] {
        let duplex = f.records.iter().filter(|r| r.what.contains(DUPLEX));
        if let Some((rate, bytes, verified)) = best_transfer_of(duplex, channel, 4096) {
            let columns = if channel.ends_with("pio") {
                no_floor()
            } else {
                against_memcpy(rate, f.memcpy)
            };
            rows.push(Row::new(
                channel,
                f.env_of(channel),
                format!(
                    "duplex, per direction, 4 KiB calls ({} each way)",
                    fmt_bytes(bytes)
                ),
                rate_figure(rate, verified),
                columns,
            ));
        }
    }
    rows
}

/// The device-level shared-memory benchmarks (CPL3, timed by the guests),
/// with the host's ring as reference: 64 B round trips against their floor.
pub(super) fn shm_round_trip_rows(f: &Figures) -> Vec<Row> {
    let (cacheline, eventfd) = ((f.cacheline, "cache line"), (f.eventfd, "eventfd"));
    let benchmarks = [
        (
            "host",
            what::RING,
            "reference: ivc ring, 64 B round trip, no VMs (median)",
            cacheline,
        ),
        (
            "ivc-vmm shm-poll",
            vmm_shm::what::RING_POLL,
            "64 B round trip (median)",
            cacheline,
        ),
        (
            "ivc-vmm shm-poll",
            vmm_shm::what::LINE,
            "64 B round trip, flag word, no ring (median)",
            cacheline,
        ),
        (
            "ivc-vmm shm-irq",
            vmm_shm::what::RING_IRQ,
            "64 B round trip, waiter halted (median)",
            eventfd,
        ),
        (
            "ivc-vmm shm-irq",
            vmm_shm::what::RING_IRQ_NO_POLL,
            "64 B round trip, waiter halted, no halt polling (median)",
            eventfd,
        ),
        (
            "ivc-vmm shm-irq",
            vmm_shm::what::RING_IRQ_SPIN,
            "64 B round trip, waiter spinning at CPL3 (median)",
            eventfd,
        ),
    ];
    benchmarks
        .into_iter()
        .filter_map(|(channel, w, label, (floor, floor_name))| {
            let m = f.median(channel, w, 64)?;
            let columns = lat_ratio(m, floor, floor_name);
            Some(Row::new(
                channel,
                f.env_of(channel),
                label,
                fmt_ns(m),
                columns,
            ))
        })
        .collect()
}

/// The ring and the flag line between the same two VMs in alternating
/// blocks (`proto=interleaved`): the ring's median round trip, the flag
/// line's beside it, and the median (p10-p90) of the per-pair ratios, the
/// figure issue 14's 1.5x target is about.
pub(super) fn interleaved_row(f: &Figures) -> Option<Row> {
    const CHANNEL: &str = "ivc-vmm shm-poll";
    let find = |w: &str| {
        f.records.iter().find_map(|r| match &r.data {
            Data::Interleaved { stats, ratio } if r.channel == CHANNEL && r.what == w => {
                Some((stats, ratio))
            }
            _ => None,
        })
    };
    let (ring, ratio) = find(vmm_shm::what::INTERLEAVED_RING)?;
    let floor = match find(vmm_shm::what::INTERLEAVED_LINE) {
        Some((line, _)) => format!("flag line {} (interleaved)", fmt_ns(line.median_ns)),
        None => String::new(),
    };
    Some(Row::new(
        CHANNEL,
        f.env_of(CHANNEL),
        format!(
            "ring / flag line, interleaved in the same VM pair: {} B round trip (median; ratio: median (p10-p90) over the block pairs)",
            ring.size
        ),
        fmt_ns(ring.median_ns),
        (
            floor,
            format!("{:.2}x ({:.2}-{:.2})", ratio.median, ratio.p10, ratio.p90),
        ),
    ))
}

/// The ring stream at 64 KiB: every byte checked (the receiver's compare is
/// in the figure), then counted only, which is the work the memcpy floor
/// does.
pub(super) fn stream_rows(f: &Figures) -> Vec<Row> {
    const CHANNEL: &str = "ivc-vmm shm-poll";
    let streams = [
        (vmm_shm::what::STREAM, "throughput, 64 KiB packets"),
        (
            vmm_shm::what::STREAM_UNCHECKED,
            "throughput, 64 KiB packets, not checked",
        ),
    ];
    streams
        .into_iter()
        .filter_map(|(w, label)| {
            let stream = f.records.iter().filter(|r| r.what == w);
            let (rate, bytes, verified) = best_transfer_of(stream, CHANNEL, 64 << 10)?;
            let mismatch = w == vmm_shm::what::STREAM && !verified;
            Some(Row::new(
                CHANNEL,
                f.env_of(CHANNEL),
                format!("{label} ({} moved)", fmt_bytes(bytes)),
                format!(
                    "{}{}",
                    fmt_rate(rate),
                    if mismatch { " DATA MISMATCH" } else { "" }
                ),
                against_memcpy(rate, f.memcpy),
            ))
        })
        .collect()
}

/// A doorbell write to its MSI-X handler in the same VM: one way, so held
/// against one eventfd hop, half the round trip.
pub(super) fn doorbell_row(f: &Figures) -> Option<Row> {
    const CHANNEL: &str = "ivc-vmm shm-irq";
    let m = f.median(CHANNEL, "doorbell", 0)?;
    Some(Row::new(
        CHANNEL,
        f.env_of(CHANNEL),
        "doorbell write to MSI-X handler, same VM (median)",
        fmt_ns(m),
        lat_ratio(m, f.eventfd.map(|rt| rt / 2.0), "eventfd hop"),
    ))
}
