//! The report graph: latency vs message size and throughput vs packet size,
//! one line per channel, floors as dashed lines.

use crate::floors::{what, MEMCPY_REFERENCE};
use crate::plot::{fmt_num, fmt_size, Chart, HLine, Series};
use crate::record::{Data, Record};

/// (channel, colour) of every channel that can appear, in legend order.
const CHANNELS: [(&str, &str); 8] = [
    ("shm-poll", "#1f77b4"),
    ("shm-irq", "#d62728"),
    ("pio", "#2ca02c"),
    ("ivc-vmm shm-poll", "#393b79"),
    ("ivc-vmm shm-irq", "#ff9896"),
    ("ivc-vmm pio", "#98df8a"),
    ("ivc-vmm pio-desc", "#17becf"),
    ("tcp-loopback", "#7f7f7f"),
];

fn label(records: &[Record], channel: &str) -> String {
    match records.iter().find(|r| r.channel == channel) {
        Some(r) if r.environment.starts_with("emulated") => format!("{channel} (QEMU TCG)"),
        Some(r) if r.environment.contains("PVM") => format!("{channel} (/dev/kvm PVM)"),
        Some(r) => format!("{channel} ({})", r.environment),
        None => channel.into(),
    }
}

/// Latency lines: one per channel and way of waiting (a channel measured
/// both polling and blocking gets two lines).
const LATENCY_LINES: [(&str, &str, &str); 12] = [
    ("shm-poll", "ping-pong (spin", "#1f77b4"),
    ("shm-poll", "ping-pong (block", "#9ecae1"),
    ("shm-irq", "ping-pong", "#d62728"),
    ("shm-irq+spin", "ping-pong", "#c49c94"),
    ("pio", "ping-pong", "#2ca02c"),
    ("ivc-vmm shm-poll", "ping-pong (ring", "#393b79"),
    ("ivc-vmm shm-poll", "ping-pong (cache-line", "#6b6ecf"),
    (
        "ivc-vmm shm-irq",
        "ping-pong (ring, doorbell waits, vCPU halted, CPL3",
        "#ff9896",
    ),
    (
        "ivc-vmm shm-irq",
        "ping-pong (ring, doorbell waits, vCPU halted, no",
        "#ad494a",
    ),
    (
        "ivc-vmm shm-irq",
        "ping-pong (ring, doorbell waits, spinning",
        "#e7ba52",
    ),
    ("tcp-loopback", "ping-pong", "#7f7f7f"),
    ("host", what::RING, "#8c6d31"),
];

/// Whether a throughput record is one of the device-level duplex runs
/// (both directions at once), which the chart shows only for a channel
/// without one-way figures: one line should mean one kind of transfer.
fn duplex(r: &Record) -> bool {
    r.what.contains(crate::vmm_devices::DUPLEX)
}

/// The latency chart (median, whiskers min..p99, microseconds).
pub fn latency(records: &[Record]) -> Chart {
    let mut series = Vec::new();
    for (channel, what_prefix, color) in LATENCY_LINES {
        let mut pts: Vec<(f64, f64, f64, f64)> = records
            .iter()
            .filter(|r| r.channel == channel && r.what.starts_with(what_prefix))
            .filter_map(|r| match &r.data {
                Data::Latency { stats, .. } if stats.size > 0 => Some((
                    stats.size as f64,
                    stats.median_ns / 1e3,
                    stats.min_ns / 1e3,
                    stats.p99_ns / 1e3,
                )),
                _ => None,
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The way of waiting, from "ping-pong (spin wait)".
        let wait = records
            .iter()
            .find(|r| r.channel == channel && r.what.starts_with(what_prefix))
            .and_then(|r| r.what.split_once('(')?.1.strip_suffix(')'))
            .map_or(String::new(), |w| format!(", {w}"));
        let name = if channel == "host" {
            // The host ring reference: no guest, no way of waiting to name.
            "ivc ring between two host processes (no VMs)".to_string()
        } else {
            let name = label(records, channel);
            match name.strip_suffix(')') {
                Some(n) if !wait.is_empty() => format!("{n}{wait})"),
                _ => name,
            }
        };
        series.push(Series {
            name,
            color,
            points: pts.iter().map(|p| (p.0, p.1)).collect(),
            whiskers: pts.iter().map(|p| (p.2, p.3)).collect(),
        });
    }
    let mut hlines = Vec::new();
    for (w, name, color) in [
        (what::CACHELINE, "floor: cache-line round trip", "#17becf"),
        (what::EVENTFD, "floor: eventfd round trip", "#ff7f0e"),
        (what::KVM_EXIT, "floor: KVM_EXIT_IO round trip", "#9467bd"),
    ] {
        if let Some(Data::Latency { stats, .. }) =
            records.iter().find(|r| r.what == w).map(|r| &r.data)
        {
            hlines.push(HLine {
                name: name.into(),
                color,
                y: stats.median_ns / 1e3,
            });
        }
    }
    if let Some(Data::Latency { stats, .. }) = records
        .iter()
        .find(|r| r.channel == "ivc-vmm shm-irq" && r.what.starts_with("doorbell"))
        .map(|r| &r.data)
    {
        hlines.push(HLine {
            name: "ivc-vmm: doorbell write to MSI-X handler, same VM".into(),
            color: "#bcbd22",
            y: stats.median_ns / 1e3,
        });
    }
    for (cpl, color) in [(0, "#8c564b"), (3, "#e377c2")] {
        let w = format!("port-I/O exit round trip, guest CPL{cpl}");
        if let Some(Data::Latency { stats, .. }) =
            records.iter().find(|r| r.what == w).map(|r| &r.data)
        {
            hlines.push(HLine {
                name: format!("ivc-vmm: {w}"),
                color,
                y: stats.median_ns / 1e3,
            });
        }
    }
    Chart {
        title: "Round-trip latency (median; bars min..p99)".into(),
        x_label: "message size (bytes)".into(),
        y_label: "microseconds".into(),
        x_fmt: Some(fmt_size),
        y_fmt: Some(fmt_num),
        series,
        hlines,
    }
}

/// The throughput chart: per packet size, the transfer that moved the most
/// bytes (MiB/s). Only transfers whose bytes were checked where the channel
/// checks them (the counted-only ring stream is a summary row, not a point).
pub fn throughput(records: &[Record]) -> Chart {
    let mut series = Vec::new();
    for (channel, color) in CHANNELS {
        let mut best: Vec<(u64, u64, f64)> = Vec::new();
        let of_channel = || {
            records.iter().filter(|r| {
                r.channel == channel && r.what != crate::vmm_shm::what::STREAM_UNCHECKED
            })
        };
        let one_way = of_channel().any(|r| matches!(r.data, Data::Throughput { .. }) && !duplex(r));
        for r in of_channel().filter(|r| !(one_way && duplex(r))) {
            if let Data::Throughput { stats, .. } = &r.data {
                match best.iter_mut().find(|b| b.0 == stats.packet) {
                    Some(b) if b.1 >= stats.bytes => {}
                    Some(b) => *b = (stats.packet, stats.bytes, stats.mib_s),
                    None => best.push((stats.packet, stats.bytes, stats.mib_s)),
                }
            }
        }
        if best.is_empty() {
            continue;
        }
        best.sort_by_key(|b| b.0);
        series.push(Series {
            name: label(records, channel),
            color,
            points: best.iter().map(|b| (b.0 as f64, b.2)).collect(),
            whiskers: Vec::new(),
        });
    }
    let hlines = records
        .iter()
        .filter_map(|r| match &r.data {
            Data::Throughput { stats, .. }
                if r.what == what::MEMCPY && stats.packet == MEMCPY_REFERENCE =>
            {
                Some(HLine {
                    name: "floor: memcpy, 1 core, 1 MiB blocks".into(),
                    color: "#17becf",
                    y: stats.mib_s,
                })
            }
            _ => None,
        })
        .collect();
    Chart {
        title: "One-way throughput (largest transfer per packet size)".into(),
        x_label: "packet size (bytes per write/read call)".into(),
        y_label: "MiB/s".into(),
        x_fmt: Some(fmt_size),
        y_fmt: Some(fmt_num),
        series,
        hlines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::env;
    use ivc_floors::Throughput;

    #[test]
    fn latency_lines_per_way_of_waiting() {
        use ivc_floors::Latency;
        let l = |what: &str, size| Record {
            channel: "shm-poll".into(),
            environment: env::TCG.into(),
            what: what.into(),
            data: Data::Latency {
                stats: Latency {
                    size,
                    iters: 1,
                    batch: 1,
                    min_ns: 1e3,
                    median_ns: 2e3,
                    p99_ns: 3e3,
                    max_ns: 4e3,
                    mean_ns: 2e3,
                },
                verified: true,
            },
        };
        let c = latency(&[
            l("ping-pong (spin wait)", 64),
            l("ping-pong (spin wait)", 1),
            l("ping-pong (block wait)", 64),
        ]);
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[0].name, "shm-poll (QEMU TCG, spin wait)");
        assert_eq!(c.series[0].points, vec![(1.0, 2.0), (64.0, 2.0)]);
        assert_eq!(c.series[1].name, "shm-poll (QEMU TCG, block wait)");
    }

    #[test]
    fn throughput_keeps_the_largest_transfer_per_packet() {
        let t = |packet, bytes, mib_s| Record {
            channel: "shm-poll".into(),
            environment: env::TCG.into(),
            what: "one-way transfer".into(),
            data: Data::Throughput {
                stats: Throughput {
                    packet,
                    bytes,
                    ns: 1,
                    mib_s,
                },
                requested: bytes,
                verified: true,
            },
        };
        let mut d = t(4096, 1 << 30, 9.0);
        d.what = "chan-duplex: 1 bytes each way at once, CPL3".into();
        // Alone, a duplex record is the channel's line ...
        assert_eq!(
            throughput(&[d.clone()]).series[0].points,
            vec![(4096.0, 9.0)]
        );
        // ... next to one-way records it is left out.
        let c = throughput(&[t(4096, 512, 1.0), d, t(4096, 1 << 20, 50.0), t(1, 100, 0.1)]);
        assert_eq!(c.series.len(), 1);
        assert_eq!(c.series[0].points, vec![(1.0, 0.1), (4096.0, 50.0)]);
        assert!(c.series[0].name.contains("QEMU TCG"));
        assert!(c.hlines.is_empty());
    }
}
