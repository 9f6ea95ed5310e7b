//! Section 5: Linux guests in ivc-vmm (nested under TCG on hosts without
//! hardware virtualization): each channel's round trip and throughput beside
//! what the same run measured for it elsewhere: port I/O against one exit
//! through ivc-vmm in the same nested host, shared memory against the same
//! channel between QEMU TCG guests (the other emulated device model).

use super::channels::{interleaved_speedup_row, mapped_speedup_row};
use super::compare::{no_floor, one_kib_in_bytes};
use super::figures::Figures;
use super::format::{fmt_bytes, fmt_ns, fmt_rate, rate_figure};
use super::Row;
use crate::record::{path_channel, Data, Record};
use crate::vmm_linux::{has_mapped_path, CHANNELS, DESC_EXIT_WHAT, EXIT_WHAT, EXIT_WHAT_CPL3};

const HOST_CHANNEL: &str = "linux-in-ivc-vmm";

/// The nested section's rows, in table order.
pub(super) fn rows(records: &[Record]) -> Vec<Row> {
    let f = Figures::new(records);
    let exit = f.median(HOST_CHANNEL, EXIT_WHAT, 0);
    let mut rows = Vec::new();
    if let Some(e) = exit {
        rows.push(Row::new(
            HOST_CHANNEL,
            f.env_of(HOST_CHANNEL),
            format!("floor: {EXIT_WHAT}"),
            fmt_ns(e),
            no_floor(),
        ));
    }
    rows.extend(descriptor_exit_row(&f));
    for (kind, channel) in CHANNELS {
        // Shared memory's mapped path (`<channel>/mmap`) right after its
        // read/write path, as in the QEMU TCG section, with the same
        // speed-up rows.
        let mut paths = vec![("syscall", channel.to_string())];
        if has_mapped_path(kind) {
            paths.push(("mmap", path_channel(channel, "mmap")));
        }
        for (path, channel) in paths {
            let environment = f.env_of(&channel);
            rows.extend(round_trip_row(&f, kind, path, &channel, exit, &environment));
            rows.extend(mapped_speedup_row(&f, &channel, "ping-pong", &environment));
            rows.extend(interleaved_speedup_row(&f, &channel, &environment));
            rows.extend(throughput_row(&f, kind, path, &channel, exit, &environment));
            rows.extend(one_kib_in_bytes(records, &channel, &environment));
        }
    }
    rows
}

/// One descriptor exit of the test guests in the nested host, against one
/// plain exit from the same CPL there.
fn descriptor_exit_row(f: &Figures) -> Option<Row> {
    let (ns, size) = f.records.iter().find_map(|r| match &r.data {
        Data::Latency { stats, .. } if r.channel == HOST_CHANNEL && r.what == DESC_EXIT_WHAT => {
            Some((stats.median_ns, stats.size))
        }
        _ => None,
    })?;
    let columns = match f.median(HOST_CHANNEL, EXIT_WHAT_CPL3, 0) {
        Some(e) if e > 0.0 => (
            format!("exit (CPL3) {}", fmt_ns(e)),
            format!("{:.2}x", ns / e),
        ),
        _ => no_floor(),
    };
    Some(Row::new(
        "linux-in-ivc-vmm pio-desc",
        f.env_of(HOST_CHANNEL),
        format!(
            "one descriptor exit moving {} (test guests, median of VMs)",
            fmt_bytes(size)
        ),
        fmt_ns(ns),
        columns,
    ))
}

/// The same channel on the same `path` between QEMU TCG guests, when that
/// suite ran: its channel and headline ping-pong (empty for port I/O, which
/// has none).
fn tcg_twin(kind: &str, path: &str) -> (String, &'static str) {
    let (channel, ping) = match kind {
        "shm-poll" => ("shm-poll", "ping-pong (spin"),
        "shm-irq" => ("shm-irq", "ping-pong"),
        "shm-irq-spin" => ("shm-irq+spin", "ping-pong"),
        _ => return (String::new(), ""),
    };
    (path_channel(channel, path), ping)
}

/// The 64 B round trip: port I/O in exits, shared memory against QEMU TCG.
fn round_trip_row(
    f: &Figures,
    kind: &str,
    path: &str,
    channel: &str,
    exit: Option<f64>,
    environment: &str,
) -> Option<Row> {
    let m = f.median(channel, "ping-pong", 64)?;
    let columns = if kind.starts_with("pio") {
        match exit {
            Some(e) if e > 0.0 => (
                format!("1 exit {}", fmt_ns(e)),
                format!("{:.1} exits", m / e),
            ),
            _ => no_floor(),
        }
    } else {
        let (tcg_chan, tcg_ping) = tcg_twin(kind, path);
        match f.median(&tcg_chan, tcg_ping, 64) {
            Some(t) if t > 0.0 => (format!("QEMU TCG {}", fmt_ns(t)), format!("{:.1}x", m / t)),
            _ => no_floor(),
        }
    };
    Some(Row::new(
        channel,
        environment.into(),
        "64 B round trip (median)",
        fmt_ns(m),
        columns,
    ))
}

/// The best transfer (4 KiB packets for port I/O, 64 KiB for shared memory):
/// port I/O as bytes per exit, shared memory against QEMU TCG.
fn throughput_row(
    f: &Figures,
    kind: &str,
    path: &str,
    channel: &str,
    exit: Option<f64>,
    environment: &str,
) -> Option<Row> {
    let packet = if kind == "pio" { 4096 } else { 64 << 10 };
    let (rate, bytes, verified) = f.best_transfer(channel, packet)?;
    let columns = if kind.starts_with("pio") {
        match exit {
            // Bytes moved in the time of one exit: what one port access
            // carries, all costs included.
            Some(e) if e > 0.0 => (
                format!("1 exit {}", fmt_ns(e)),
                format!("{:.1} B/exit", rate * 1048576.0 * e / 1e9),
            ),
            _ => no_floor(),
        }
    } else {
        match f.best_transfer(&tcg_twin(kind, path).0, packet) {
            Some((t, _, _)) if t > 0.0 => (
                format!("QEMU TCG {}", fmt_rate(t)),
                format!("{:.1}x", rate / t),
            ),
            _ => no_floor(),
        }
    };
    Some(Row::new(
        channel,
        environment.into(),
        format!(
            "throughput, {} packets ({} moved)",
            fmt_bytes(packet),
            fmt_bytes(bytes)
        ),
        rate_figure(rate, verified),
        columns,
    ))
}
