//! Section 4: ivc-pio's descriptor mode between bare-metal guests:
//! throughput per direction against memcpy, and the cost of one descriptor
//! exit against the port-I/O exit floor of the same run plus the VMM's two
//! copies of the bytes (guest RAM -> bounce -> ring, or back) at memcpy
//! speed.

use super::compare::{against_memcpy, no_floor};
use super::figures::{best_transfer_of, Figures};
use super::format::{fmt_bytes, fmt_ns, rate_figure};
use super::Row;
use crate::record::Data;
use crate::record::UNCHECKED;
use crate::vmm_devices::{DUPLEX, GO_EXIT};

const CHANNEL: &str = "ivc-vmm pio-desc";

/// The duplex rows, then one row per descriptor-exit size.
pub(super) fn rows(f: &Figures) -> Vec<Row> {
    let mut rows = duplex_rows(f);
    rows.extend(exit_rows(f));
    rows
}

/// Per direction, both directions at once: bytes checked, then counted only.
fn duplex_rows(f: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    for (counted, label) in [(false, ""), (true, ", not checked")] {
        let duplex = || {
            f.records
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
        rows.push(Row::new(
            CHANNEL,
            f.env_of(CHANNEL),
            format!(
                "duplex, per direction, {} calls{label} ({} each way)",
                fmt_bytes(packet),
                fmt_bytes(bytes)
            ),
            // Counted only: not a mismatch.
            rate_figure(rate, verified || counted),
            against_memcpy(rate, f.memcpy),
        ));
    }
    rows
}

/// One descriptor exit per size: small GOs show the exit's own price, large
/// ones the copies' too.
fn exit_rows(f: &Figures) -> Vec<Row> {
    let exit = f.median("ivc-vmm", "port-I/O exit round trip, guest CPL3", 0);
    let gos = f.records.iter().filter_map(|r| match &r.data {
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
    gos.map(|(ns, size, run)| {
        let columns = match (exit, f.memcpy) {
            (Some(e), Some(m)) if m > 0.0 => {
                // Two copies of `size` bytes at memcpy's MiB/s.
                let copies = 2.0 * size as f64 / (m * 1048576.0) * 1e9;
                (
                    format!("exit {} + 2 copies {}", fmt_ns(e), fmt_ns(copies)),
                    format!("{:.2}x", ns / (e + copies)),
                )
            }
            _ => no_floor(),
        };
        Row::new(
            CHANNEL,
            f.env_of(CHANNEL),
            format!("one exit moving {} ({run}, median of VMs)", fmt_bytes(size)),
            fmt_ns(ns),
            columns,
        )
    })
    .collect()
}
