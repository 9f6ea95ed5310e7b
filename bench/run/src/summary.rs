//! The one summary table: each channel's headline figures beside the floor
//! they are bounded by, and the ratio.

use serde::Serialize;

use crate::floors::{what, MEMCPY_REFERENCE};
use crate::record::{Data, Record, Status, SuiteReport};
use crate::vmm_devices::DUPLEX;
use crate::vmm_shm;

/// A row of the summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// Channel (or `host` for floors).
    pub channel: String,
    /// Where it was measured.
    pub environment: String,
    /// What the figure is.
    pub what: String,
    /// The figure, formatted.
    pub figure: String,
    /// The floor it is compared with, formatted (empty if none).
    pub floor: String,
    /// Figure relative to the floor, formatted (empty if none).
    pub ratio: String,
}

/// `1.23 us`-style durations.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `41.4 MiB`-style byte counts.
pub fn fmt_bytes(b: u64) -> String {
    let f = b as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", f / (1u64 << 30) as f64)
    } else if f >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", f / (1u64 << 20) as f64)
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// `1234 MiB/s`-style rates.
pub fn fmt_rate(mib_s: f64) -> String {
    if mib_s >= 1024.0 {
        format!("{:.2} GiB/s", mib_s / 1024.0)
    } else if mib_s >= 10.0 {
        format!("{mib_s:.0} MiB/s")
    } else {
        format!("{mib_s:.2} MiB/s")
    }
}

/// The floor and ratio columns of a throughput `rate` (MiB/s) against
/// 1-core memcpy, empty without a floor.
fn against_memcpy(rate: f64, memcpy: Option<f64>) -> (String, String) {
    match memcpy {
        Some(f) if f > 0.0 => (
            format!("memcpy {}", fmt_rate(f)),
            format!("{:.1}%", 100.0 * rate / f),
        ),
        _ => (String::new(), String::new()),
    }
}

fn median_of(records: &[Record], channel: &str, what_prefix: &str, size: u64) -> Option<f64> {
    records.iter().find_map(|r| match &r.data {
        Data::Latency { stats, .. }
            if r.channel == channel && r.what.starts_with(what_prefix) && stats.size == size =>
        {
            Some(stats.median_ns)
        }
        _ => None,
    })
}

/// The throughput record of `channel` for `packet` that moved the most bytes.
fn best_transfer(records: &[Record], channel: &str, packet: u64) -> Option<(f64, u64, bool)> {
    best_transfer_of(records.iter(), channel, packet)
}

/// [`best_transfer`] among `records`.
fn best_transfer_of<'a>(
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
fn transfer_time(records: &[Record], channel: &str, packet: u64, requested: u64) -> Option<f64> {
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

/// A throughput figure, marked when the receiver found a byte wrong.
fn rate_figure(mib_s: f64, verified: bool) -> String {
    format!(
        "{}{}",
        fmt_rate(mib_s),
        if verified { "" } else { " DATA MISMATCH" }
    )
}

/// The "1 KiB in 1 B packets" row of `channel` against its 100 ms target,
/// if that transfer was measured whole.
fn one_kib_in_bytes(records: &[Record], channel: &str, environment: &str) -> Option<Row> {
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

/// ivc-pio's descriptor mode between bare-metal guests: throughput per
/// direction against memcpy, and the cost of one descriptor exit against
/// the port-I/O exit floor of the same run plus the VMM's two copies of the
/// bytes (guest RAM -> bounce -> ring, or back) at memcpy speed.
fn pio_desc_rows(
    records: &[Record],
    memcpy: Option<f64>,
    env_of: &dyn Fn(&str) -> String,
) -> Vec<Row> {
    use crate::vmm_devices::{GO_EXIT, UNCHECKED};
    const CHANNEL: &str = "ivc-vmm pio-desc";
    let mut rows = Vec::new();
    for (counted, label) in [(false, ""), (true, ", not checked")] {
        let duplex = || {
            records
                .iter()
                .filter(move |r| r.what.contains(DUPLEX) && r.what.ends_with(UNCHECKED) == counted)
        };
        // The call size is the benchmark's choice (`chunk=`): whatever it was.
        let packet = duplex().find_map(|r| match &r.data {
            Data::Throughput { stats, .. } if r.channel == CHANNEL => Some(stats.packet),
            _ => None,
        });
        let Some((packet, (rate, bytes, verified))) =
            packet.and_then(|p| Some((p, best_transfer_of(duplex(), CHANNEL, p)?)))
        else {
            continue;
        };
        let (floor, ratio) = against_memcpy(rate, memcpy);
        rows.push(Row {
            channel: CHANNEL.into(),
            environment: env_of(CHANNEL),
            what: format!(
                "duplex, per direction, {} calls{label} ({} each way)",
                fmt_bytes(packet),
                fmt_bytes(bytes)
            ),
            // Counted only: not a mismatch.
            figure: rate_figure(rate, verified || counted),
            floor,
            ratio,
        });
    }
    let exit = median_of(
        records,
        "ivc-vmm",
        "port-I/O exit round trip, guest CPL3",
        0,
    );
    // Small GOs show the exit's own price, large ones the copies' too.
    let gos = records.iter().filter_map(|r| match &r.data {
        Data::Latency { stats, .. } if r.channel == CHANNEL && r.what.starts_with(GO_EXIT) => {
            // A checking receiver reads the buffer right after its GO, a
            // counting one does not: the copies meet different caches.
            let run = if r.what.ends_with(UNCHECKED) {
                "bytes counted"
            } else {
                "bytes checked"
            };
            Some((stats.median_ns, stats.size, run))
        }
        _ => None,
    });
    for (ns, size, run) in gos {
        let (floor, ratio) = match (exit, memcpy) {
            (Some(e), Some(m)) if m > 0.0 => {
                // Two copies of `size` bytes at memcpy's MiB/s.
                let copies = 2.0 * size as f64 / (m * 1048576.0) * 1e9;
                (
                    format!("exit {} + 2 copies {}", fmt_ns(e), fmt_ns(copies)),
                    format!("{:.2}x", ns / (e + copies)),
                )
            }
            _ => (String::new(), String::new()),
        };
        rows.push(Row {
            channel: CHANNEL.into(),
            environment: env_of(CHANNEL),
            what: format!("one exit moving {} ({run}, median of VMs)", fmt_bytes(size)),
            figure: fmt_ns(ns),
            floor,
            ratio,
        });
    }
    rows
}

/// Builds the rows from every suite's records.
pub fn rows(reports: &[SuiteReport]) -> Vec<Row> {
    let records: Vec<Record> = reports.iter().flat_map(|r| r.records.clone()).collect();
    let env_of = |channel: &str| {
        records
            .iter()
            .find(|r| r.channel == channel)
            .map(|r| r.environment.clone())
            .unwrap_or_default()
    };
    let cacheline = median_of(&records, "host", what::CACHELINE, 64);
    let eventfd = median_of(&records, "host", what::EVENTFD, 8);
    let kvm = median_of(&records, "host", what::KVM_EXIT, 0);
    let memcpy = best_transfer(&records, "host", MEMCPY_REFERENCE).map(|t| t.0);
    let mut rows = Vec::new();
    let mut floor_row = |what: &str, figure: Option<String>, env: String| {
        if let Some(figure) = figure {
            rows.push(Row {
                channel: "host".into(),
                environment: env,
                what: what.into(),
                figure,
                floor: String::new(),
                ratio: String::new(),
            });
        }
    };
    floor_row(
        "floor: cache-line round trip (2 cores)",
        cacheline.map(fmt_ns),
        "host".into(),
    );
    floor_row(
        "floor: eventfd round trip (1 hop each way)",
        eventfd.map(fmt_ns),
        "host".into(),
    );
    floor_row(
        "floor: memcpy 1 core (1 MiB blocks)",
        memcpy.map(fmt_rate),
        "host".into(),
    );
    floor_row(
        "floor: null system call",
        median_of(&records, "host", what::SYSCALL, 0).map(fmt_ns),
        "host".into(),
    );
    let kvm_env = records
        .iter()
        .find(|r| r.what == what::KVM_EXIT)
        .map(|r| r.environment.clone())
        .unwrap_or_default();
    floor_row("floor: KVM_EXIT_IO round trip", kvm.map(fmt_ns), kvm_env);

    for cpl in [0, 3] {
        let w = format!("port-I/O exit round trip, guest CPL{cpl}");
        if let Some(m) = median_of(&records, "ivc-vmm", &w, 0) {
            let (floor, ratio) = match kvm {
                Some(f) if f > 0.0 => (
                    format!("KVM_EXIT_IO {}", fmt_ns(f)),
                    format!("{:.1}x", m / f),
                ),
                _ => (String::new(), String::new()),
            };
            rows.push(Row {
                channel: "ivc-vmm".into(),
                environment: env_of("ivc-vmm"),
                what: w,
                figure: fmt_ns(m),
                floor,
                ratio,
            });
        }
    }
    let lat_ratio = |fig: f64, floor: Option<f64>, name: &str| match floor {
        Some(f) if f > 0.0 => (format!("{name} {}", fmt_ns(f)), format!("{:.1}x", fig / f)),
        _ => (String::new(), String::new()),
    };
    // (channel, how its headline ping-pong waits, floor, floor name).
    for (channel, ping, lat_floor, lat_floor_name) in [
        ("tcp-loopback", "ping-pong", cacheline, "cache line"),
        ("shm-poll", "ping-pong (spin", cacheline, "cache line"),
        ("shm-irq", "ping-pong", eventfd, "eventfd"),
        // The doorbell channel with the driver spinning before it arms a
        // doorbell (irq_spin_us): latency only.
        ("shm-irq+spin", "ping-pong", eventfd, "eventfd"),
    ] {
        let environment = env_of(channel);
        if let Some(m) = median_of(&records, channel, ping, 64) {
            let (floor, ratio) = lat_ratio(m, lat_floor, lat_floor_name);
            rows.push(Row {
                channel: channel.into(),
                environment: environment.clone(),
                what: "64 B round trip (median)".into(),
                figure: fmt_ns(m),
                floor,
                ratio,
            });
        }
        // A polled channel also measured with blocking reads (the driver
        // spins, then sleeps): what an ordinary program would see.
        if ping != "ping-pong" {
            if let Some(m) = median_of(&records, channel, "ping-pong (block", 64) {
                let (floor, ratio) = lat_ratio(m, lat_floor, lat_floor_name);
                rows.push(Row {
                    channel: channel.into(),
                    environment: environment.clone(),
                    what: "64 B round trip, blocking calls (median)".into(),
                    figure: fmt_ns(m),
                    floor,
                    ratio,
                });
            }
        }
        if let Some(m) = median_of(&records, channel, ping, 64 << 10) {
            rows.push(Row {
                channel: channel.into(),
                environment: environment.clone(),
                what: "64 KiB round trip (median)".into(),
                figure: fmt_ns(m),
                floor: String::new(),
                ratio: String::new(),
            });
        }
        if let Some((rate, bytes, verified)) = best_transfer(&records, channel, 64 << 10) {
            let (floor, ratio) = against_memcpy(rate, memcpy);
            let check = if verified || channel == "tcp-loopback" {
                ""
            } else {
                " DATA MISMATCH"
            };
            rows.push(Row {
                channel: channel.into(),
                environment: environment.clone(),
                what: format!("throughput, 64 KiB packets ({} moved)", fmt_bytes(bytes)),
                figure: format!("{}{check}", fmt_rate(rate)),
                floor,
                ratio,
            });
        }
        rows.extend(one_kib_in_bytes(&records, channel, &environment));
    }
    // The device-level suite: bare-metal guests in ivc-vmm, both directions
    // at once, 4 KiB per call; and the doorbell path.
    for channel in ["ivc-vmm shm-poll", "ivc-vmm shm-irq", "ivc-vmm pio"] {
        let duplex = records.iter().filter(|r| r.what.contains(DUPLEX));
        if let Some((rate, bytes, verified)) = best_transfer_of(duplex, channel, 4096) {
            let (floor, ratio) = if channel.ends_with("pio") {
                (String::new(), String::new())
            } else {
                against_memcpy(rate, memcpy)
            };
            rows.push(Row {
                channel: channel.into(),
                environment: env_of(channel),
                what: format!(
                    "duplex, per direction, 4 KiB calls ({} each way)",
                    fmt_bytes(bytes)
                ),
                figure: rate_figure(rate, verified),
                floor,
                ratio,
            });
        }
    }
    rows.extend(pio_desc_rows(&records, memcpy, &env_of));
    // The device-level shared-memory benchmarks (CPL3, timed by the
    // guests): the latency targets are about these.
    for (channel, w, label, floor, floor_name) in [
        (
            "host",
            what::RING,
            "reference: ivc ring, 64 B round trip, no VMs (median)",
            cacheline,
            "cache line",
        ),
        (
            "ivc-vmm shm-poll",
            vmm_shm::what::RING_POLL,
            "64 B round trip (median)",
            cacheline,
            "cache line",
        ),
        (
            "ivc-vmm shm-poll",
            vmm_shm::what::LINE,
            "64 B round trip, flag word, no ring (median)",
            cacheline,
            "cache line",
        ),
        (
            "ivc-vmm shm-irq",
            vmm_shm::what::RING_IRQ,
            "64 B round trip, waiter halted (median)",
            eventfd,
            "eventfd",
        ),
        (
            "ivc-vmm shm-irq",
            vmm_shm::what::RING_IRQ_NO_POLL,
            "64 B round trip, waiter halted, no halt polling (median)",
            eventfd,
            "eventfd",
        ),
        (
            "ivc-vmm shm-irq",
            vmm_shm::what::RING_IRQ_SPIN,
            "64 B round trip, waiter spinning at CPL3 (median)",
            eventfd,
            "eventfd",
        ),
    ] {
        if let Some(m) = median_of(&records, channel, w, 64) {
            let (floor, ratio) = lat_ratio(m, floor, floor_name);
            rows.push(Row {
                channel: channel.into(),
                environment: env_of(channel),
                what: label.into(),
                figure: fmt_ns(m),
                floor,
                ratio,
            });
        }
    }
    // The ring stream at 64 KiB: every byte checked (the receiver's compare
    // is in the figure), then counted only, which is the work the memcpy
    // floor does.
    for (w, label) in [
        (vmm_shm::what::STREAM, "throughput, 64 KiB packets"),
        (
            vmm_shm::what::STREAM_UNCHECKED,
            "throughput, 64 KiB packets, not checked",
        ),
    ] {
        let stream = records.iter().filter(|r| r.what == w);
        let Some((rate, bytes, verified)) = best_transfer_of(stream, "ivc-vmm shm-poll", 64 << 10)
        else {
            continue;
        };
        let (floor, ratio) = against_memcpy(rate, memcpy);
        let mismatch = w == vmm_shm::what::STREAM && !verified;
        rows.push(Row {
            channel: "ivc-vmm shm-poll".into(),
            environment: env_of("ivc-vmm shm-poll"),
            what: format!("{label} ({} moved)", fmt_bytes(bytes)),
            figure: format!(
                "{}{}",
                fmt_rate(rate),
                if mismatch { " DATA MISMATCH" } else { "" }
            ),
            floor,
            ratio,
        });
    }
    if let Some(m) = median_of(&records, "ivc-vmm shm-irq", "doorbell", 0) {
        // One way, so against one eventfd hop: half the round trip.
        let (floor, ratio) = lat_ratio(m, eventfd.map(|rt| rt / 2.0), "eventfd hop");
        rows.push(Row {
            channel: "ivc-vmm shm-irq".into(),
            environment: env_of("ivc-vmm shm-irq"),
            what: "doorbell write to MSI-X handler, same VM (median)".into(),
            figure: fmt_ns(m),
            floor,
            ratio,
        });
    }
    rows.extend(nested_rows(&records));
    for r in reports {
        if let Status::Skipped(why) | Status::Failed(why) = &r.status {
            let state = if matches!(r.status, Status::Skipped(_)) {
                "not run"
            } else {
                "FAILED"
            };
            rows.push(Row {
                channel: r.suite.clone(),
                environment: r.environment.clone(),
                what: state.into(),
                figure: String::new(),
                floor: String::new(),
                ratio: why.lines().next().unwrap_or_default().to_string(),
            });
        }
    }
    rows
}

/// Linux guests in ivc-vmm (nested under TCG on hosts without hardware
/// virtualization): each channel's round trip and throughput beside what the
/// same run measured for it elsewhere: port I/O against one exit through
/// ivc-vmm in the same nested host, shared memory against the same channel
/// between QEMU TCG guests (the other emulated device model).
fn nested_rows(records: &[Record]) -> Vec<Row> {
    use crate::vmm_linux::{CHANNELS, DESC_EXIT_WHAT, EXIT_WHAT, EXIT_WHAT_CPL3};
    let env_of = |channel: &str| {
        records
            .iter()
            .find(|r| r.channel == channel)
            .map(|r| r.environment.clone())
            .unwrap_or_default()
    };
    let exit = median_of(records, "linux-in-ivc-vmm", EXIT_WHAT, 0);
    let mut rows = Vec::new();
    if let Some(e) = exit {
        rows.push(Row {
            channel: "linux-in-ivc-vmm".into(),
            environment: env_of("linux-in-ivc-vmm"),
            what: format!("floor: {EXIT_WHAT}"),
            figure: fmt_ns(e),
            floor: String::new(),
            ratio: String::new(),
        });
    }
    // One descriptor exit of the test guests in the nested host, against
    // one plain exit from the same CPL there.
    let go = records.iter().find_map(|r| match &r.data {
        Data::Latency { stats, .. }
            if r.channel == "linux-in-ivc-vmm" && r.what == DESC_EXIT_WHAT =>
        {
            Some((stats.median_ns, stats.size))
        }
        _ => None,
    });
    if let Some((ns, size)) = go {
        let (floor, ratio) = match median_of(records, "linux-in-ivc-vmm", EXIT_WHAT_CPL3, 0) {
            Some(e) if e > 0.0 => (
                format!("exit (CPL3) {}", fmt_ns(e)),
                format!("{:.2}x", ns / e),
            ),
            _ => (String::new(), String::new()),
        };
        rows.push(Row {
            channel: "linux-in-ivc-vmm pio-desc".into(),
            environment: env_of("linux-in-ivc-vmm"),
            what: format!(
                "one descriptor exit moving {} (test guests, median of VMs)",
                fmt_bytes(size)
            ),
            figure: fmt_ns(ns),
            floor,
            ratio,
        });
    }
    for (kind, channel) in CHANNELS {
        let environment = env_of(channel);
        // The same channel between QEMU TCG guests, when that suite ran.
        let (tcg_ping, tcg_chan) = match kind {
            "shm-poll" => ("ping-pong (spin", "shm-poll"),
            "shm-irq" => ("ping-pong", "shm-irq"),
            _ => ("", ""),
        };
        if let Some(m) = median_of(records, channel, "ping-pong", 64) {
            let (floor, ratio) = if kind.starts_with("pio") {
                match exit {
                    Some(e) if e > 0.0 => (
                        format!("1 exit {}", fmt_ns(e)),
                        format!("{:.1} exits", m / e),
                    ),
                    _ => (String::new(), String::new()),
                }
            } else {
                match median_of(records, tcg_chan, tcg_ping, 64) {
                    Some(t) if t > 0.0 => {
                        (format!("QEMU TCG {}", fmt_ns(t)), format!("{:.1}x", m / t))
                    }
                    _ => (String::new(), String::new()),
                }
            };
            rows.push(Row {
                channel: channel.into(),
                environment: environment.clone(),
                what: "64 B round trip (median)".into(),
                figure: fmt_ns(m),
                floor,
                ratio,
            });
        }
        let packet = if kind == "pio" { 4096 } else { 64 << 10 };
        let pio = kind.starts_with("pio");
        if let Some((rate, bytes, verified)) = best_transfer(records, channel, packet) {
            let (floor, ratio) = if pio {
                match exit {
                    // Bytes moved in the time of one exit: what one port
                    // access carries, all costs included.
                    Some(e) if e > 0.0 => (
                        format!("1 exit {}", fmt_ns(e)),
                        format!("{:.1} B/exit", rate * 1048576.0 * e / 1e9),
                    ),
                    _ => (String::new(), String::new()),
                }
            } else {
                match best_transfer(records, tcg_chan, packet) {
                    Some((t, _, _)) if t > 0.0 => (
                        format!("QEMU TCG {}", fmt_rate(t)),
                        format!("{:.1}x", rate / t),
                    ),
                    _ => (String::new(), String::new()),
                }
            };
            rows.push(Row {
                channel: channel.into(),
                environment: environment.clone(),
                what: format!(
                    "throughput, {} packets ({} moved)",
                    fmt_bytes(packet),
                    fmt_bytes(bytes)
                ),
                figure: rate_figure(rate, verified),
                floor,
                ratio,
            });
        }
        rows.extend(one_kib_in_bytes(records, channel, &environment));
    }
    rows
}

/// The rows as an aligned text table (skipped/failed suites below it).
pub fn table(rows: &[Row]) -> String {
    let measured: Vec<&Row> = rows.iter().filter(|r| !r.figure.is_empty()).collect();
    let head = ["channel", "what", "figure", "floor", "ratio"];
    let cells = |r: &Row| {
        let chan = if r.environment.starts_with("nested") {
            format!("{} (nested, TCG)", r.channel)
        } else if r.environment.starts_with("emulated") {
            format!("{} (TCG)", r.channel)
        } else if r.environment.contains("PVM") {
            format!("{} (PVM)", r.channel)
        } else {
            r.channel.clone()
        };
        [
            chan,
            r.what.clone(),
            r.figure.clone(),
            r.floor.clone(),
            r.ratio.clone(),
        ]
    };
    let mut width = head.map(str::len);
    for r in &measured {
        for (w, c) in width.iter_mut().zip(cells(r)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |c: [String; 5]| {
        let mut s = String::new();
        for (i, (w, c)) in width.iter().zip(c).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            // Figures and ratios right-aligned, text left-aligned.
            if i == 2 || i == 4 {
                s.push_str(&" ".repeat(pad));
                s.push_str(&c);
            } else {
                s.push_str(&c);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head.map(String::from));
    out.push_str(&line(width.map(|w| "-".repeat(w))));
    for r in &measured {
        out.push_str(&line(cells(r)));
    }
    let not_run: Vec<&Row> = rows.iter().filter(|r| r.figure.is_empty()).collect();
    if !not_run.is_empty() {
        out.push('\n');
        for r in not_run {
            out.push_str(&format!("{} {}: {}\n", r.what, r.channel, r.ratio));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixtures::latency as lat;
    use crate::record::{env, Data, Record};
    use ivc_floors::Throughput;

    fn tput(channel: &str, packet: u64, requested: u64, bytes: u64, ns: u64) -> Record {
        Record {
            channel: channel.into(),
            environment: env::TCG.into(),
            what: "one-way transfer".into(),
            data: Data::Throughput {
                stats: Throughput {
                    packet,
                    bytes,
                    ns,
                    mib_s: bytes as f64 / (ns as f64 / 1e9) / 1048576.0,
                },
                requested,
                verified: true,
            },
        }
    }

    fn report(suite: &str, records: Vec<Record>, status: Status) -> SuiteReport {
        SuiteReport {
            suite: suite.into(),
            environment: "x".into(),
            status,
            records,
            notes: vec![],
            seconds: 0.0,
        }
    }

    #[test]
    fn ratios_against_the_right_floors() {
        let host = report(
            "floors",
            vec![
                lat("host", what::CACHELINE, 64, 100.0),
                lat("host", what::EVENTFD, 8, 10_000.0),
                Record {
                    channel: "host".into(),
                    environment: env::HOST.into(),
                    what: what::MEMCPY.into(),
                    data: Data::Throughput {
                        stats: Throughput {
                            packet: MEMCPY_REFERENCE,
                            bytes: 1 << 30,
                            ns: 1_000_000_000,
                            mib_s: 1024.0,
                        },
                        requested: 1 << 30,
                        verified: true,
                    },
                },
            ],
            Status::Ran,
        );
        let poll = report(
            "shm-poll",
            vec![
                lat("shm-poll", "ping-pong (spin wait)", 64, 450.0),
                tput("shm-poll", 65536, 1 << 30, 512 << 20, 1_000_000_000),
                tput("shm-poll", 65536, 2 << 20, 2 << 20, 10_000_000),
                tput("shm-poll", 1, 1024, 1024, 5_000_000),
            ],
            Status::Ran,
        );
        let irq = report(
            "shm-irq",
            vec![lat("shm-irq", "ping-pong (block wait)", 64, 25_000.0)],
            Status::Ran,
        );
        let skipped = report("vmm-devices", vec![], Status::Skipped("not yet".into()));
        let rows = rows(&[host, poll, irq, skipped]);
        let find = |c: &str, w: &str| {
            rows.iter()
                .find(|r| r.channel == c && r.what.starts_with(w))
                .cloned()
                .unwrap_or_else(|| panic!("no row {c} {w}: {rows:?}"))
        };
        assert_eq!(find("shm-poll", "64 B round trip").ratio, "4.5x");
        assert_eq!(find("shm-irq", "64 B round trip").ratio, "2.5x");
        let t = find("shm-poll", "throughput, 64 KiB");
        assert_eq!(t.ratio, "50.0%");
        assert!(t.what.contains("512.0 MiB moved"), "{}", t.what);
        let small = find("shm-poll", "1 KiB in 1 B");
        assert_eq!(
            (small.figure.as_str(), small.ratio.as_str()),
            ("5.00 ms", "met")
        );
        assert_eq!(find("vmm-devices", "not run").ratio, "not yet");
        let text = table(&rows);
        assert!(text.contains("shm-poll (TCG)"));
        assert!(text.contains("not run vmm-devices: not yet"));
    }

    #[test]
    fn device_rows() {
        let mut poll = tput("ivc-vmm shm-poll", 4096, 64 << 20, 64 << 20, 500_000_000);
        poll.what = format!("chan-duplex: 67108864 bytes {DUPLEX}, CPL3");
        poll.environment = "ivc-vmm, bare-metal guests on /dev/kvm: PVM".into();
        let mut db = lat(
            "ivc-vmm shm-irq",
            "doorbell write to MSI-X handler, same VM",
            0,
            300_000.0,
        );
        db.environment = poll.environment.clone();
        let host = report(
            "floors",
            vec![lat("host", what::EVENTFD, 8, 100_000.0)],
            Status::Ran,
        );
        let dev = report("vmm-devices", vec![poll, db], Status::Ran);
        let rows = rows(&[host, dev]);
        let t = rows
            .iter()
            .find(|r| r.channel == "ivc-vmm shm-poll")
            .expect("throughput row");
        assert_eq!(t.figure, "128 MiB/s");
        assert!(t.what.contains("64.0 MiB each way"), "{}", t.what);
        let d = rows
            .iter()
            .find(|r| r.what.starts_with("doorbell"))
            .expect("doorbell row");
        // One way: held against one eventfd hop, half the round trip.
        assert_eq!((d.figure.as_str(), d.ratio.as_str()), ("300.00 us", "6.0x"));
        assert_eq!(d.floor, "eventfd hop 50.00 us");
        assert!(d.what.contains("same VM"), "{}", d.what);
        assert!(table(&rows).contains("ivc-vmm shm-poll (PVM)"));
    }

    #[test]
    fn device_shm_benchmark_rows() {
        let pvm = "ivc-vmm, bare-metal guests on /dev/kvm: PVM";
        let mut ring = lat("ivc-vmm shm-poll", vmm_shm::what::RING_POLL, 64, 400.0);
        let mut line = lat("ivc-vmm shm-poll", vmm_shm::what::LINE, 64, 150.0);
        let mut irq = lat("ivc-vmm shm-irq", vmm_shm::what::RING_IRQ, 64, 120_000.0);
        let mut irq_spin = lat(
            "ivc-vmm shm-irq",
            vmm_shm::what::RING_IRQ_SPIN,
            64,
            200_000.0,
        );
        let mut stream = tput(
            "ivc-vmm shm-poll",
            64 << 10,
            1 << 30,
            1 << 30,
            1_000_000_000,
        );
        stream.what = vmm_shm::what::STREAM.into();
        // Twice as fast when the receiver only counts; not "verified", which
        // must not read as a mismatch.
        let mut counted = tput("ivc-vmm shm-poll", 64 << 10, 1 << 30, 1 << 30, 500_000_000);
        counted.what = vmm_shm::what::STREAM_UNCHECKED.into();
        if let Data::Throughput { verified, .. } = &mut counted.data {
            *verified = false;
        }
        for r in [
            &mut ring,
            &mut line,
            &mut irq,
            &mut irq_spin,
            &mut stream,
            &mut counted,
        ] {
            r.environment = pvm.into();
        }
        let host = report(
            "floors",
            vec![
                lat("host", what::CACHELINE, 64, 100.0),
                lat("host", what::EVENTFD, 8, 40_000.0),
                tput("host", MEMCPY_REFERENCE, 1 << 30, 1 << 30, 100_000_000),
                lat("host", what::RING, 1, 150.0),
                lat("host", what::RING, 64, 250.0),
            ],
            Status::Ran,
        );
        let dev = report(
            "vmm-devices",
            vec![ring, line, irq, irq_spin, stream, counted],
            Status::Ran,
        );
        let rows = rows(&[host, dev]);
        let find = |channel: &str, what: &str| {
            rows.iter()
                .find(|r| r.channel == channel && r.what.starts_with(what))
                .map(|r| (r.figure.as_str(), r.ratio.as_str()))
        };
        // The host ring reference: the 64 B record, not the 1 B one.
        assert_eq!(
            find("host", "reference: ivc ring, 64 B"),
            Some(("250 ns", "2.5x"))
        );
        assert_eq!(
            find("ivc-vmm shm-poll", "64 B round trip (median)"),
            Some(("400 ns", "4.0x"))
        );
        assert_eq!(
            find("ivc-vmm shm-poll", "64 B round trip, flag word"),
            Some(("150 ns", "1.5x"))
        );
        assert_eq!(
            find("ivc-vmm shm-irq", "64 B round trip, waiter halted"),
            Some(("120.00 us", "3.0x"))
        );
        assert_eq!(
            find("ivc-vmm shm-irq", "64 B round trip, waiter spinning"),
            Some(("200.00 us", "5.0x"))
        );
        assert_eq!(
            find("ivc-vmm shm-poll", "throughput, 64 KiB packets ("),
            Some(("1.00 GiB/s", "10.0%"))
        );
        assert_eq!(
            find(
                "ivc-vmm shm-poll",
                "throughput, 64 KiB packets, not checked"
            ),
            Some(("2.00 GiB/s", "20.0%"))
        );
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_ns(120.0), "120 ns");
        assert_eq!(fmt_ns(4_400.0), "4.40 us");
        assert_eq!(fmt_rate(12_588.0), "12.29 GiB/s");
        assert_eq!(fmt_rate(0.5), "0.50 MiB/s");
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(43_384_832), "41.4 MiB");
    }

    #[test]
    fn nested_rows_compare_with_the_exit_and_with_tcg() {
        use crate::vmm_linux::EXIT_WHAT;
        let records = vec![
            lat("linux-in-ivc-vmm", EXIT_WHAT, 0, 200_000.0),
            lat(
                "linux-in-ivc-vmm pio",
                "ping-pong (block wait)",
                64,
                2_000_000.0,
            ),
            tput(
                "linux-in-ivc-vmm pio",
                4096,
                64 << 10,
                64 << 10,
                3_200_000_000,
            ),
            lat(
                "linux-in-ivc-vmm shm-poll",
                "ping-pong (spin wait)",
                64,
                9_000.0,
            ),
            lat("shm-poll", "ping-pong (spin wait)", 64, 4_500.0),
            tput(
                "linux-in-ivc-vmm shm-irq",
                65536,
                2 << 20,
                2 << 20,
                100_000_000,
            ),
            tput("shm-irq", 65536, 2 << 20, 2 << 20, 50_000_000),
        ];
        let rows = nested_rows(&records);
        let find = |c: &str, w: &str| {
            rows.iter()
                .find(|r| r.channel == c && r.what.starts_with(w))
                .unwrap_or_else(|| panic!("no row {c} {w}: {rows:?}"))
        };
        assert_eq!(
            find("linux-in-ivc-vmm", "floor: port-I/O exit").figure,
            "200.00 us"
        );
        let pio = find("linux-in-ivc-vmm pio", "64 B round trip");
        assert_eq!(
            (pio.floor.as_str(), pio.ratio.as_str()),
            ("1 exit 200.00 us", "10.0 exits")
        );
        // 64 KiB in 3.2 s = 0.0195 MiB/s; in 200 us that is 4.1 bytes.
        assert_eq!(
            find("linux-in-ivc-vmm pio", "throughput, 4.0 KiB").ratio,
            "4.1 B/exit"
        );
        assert_eq!(
            find("linux-in-ivc-vmm shm-poll", "64 B round trip").ratio,
            "2.0x"
        );
        assert_eq!(
            find("linux-in-ivc-vmm shm-irq", "throughput, 64.0 KiB").ratio,
            "0.5x"
        );
    }
}
