//! Section 1: the host's floors, and one port-I/O exit through ivc-vmm held
//! against the raw KVM exit.

use super::compare::no_floor;
use super::figures::Figures;
use super::format::{fmt_ns, fmt_rate};
use super::Row;
use crate::floors::what;
use crate::record::Data;

/// One row per floor that was measured.
pub(super) fn rows(f: &Figures) -> Vec<Row> {
    let host = || "host".to_string();
    let kvm_env = f
        .records
        .iter()
        .find(|r| r.what == what::KVM_EXIT)
        .map(|r| r.environment.clone())
        .unwrap_or_default();
    let floors = [
        (
            "floor: cache-line round trip (2 cores)",
            f.cacheline.map(fmt_ns),
            host(),
        ),
        (
            "floor: eventfd round trip (1 hop each way)",
            f.eventfd.map(fmt_ns),
            host(),
        ),
        (
            "floor: memcpy 1 core (1 MiB blocks)",
            f.memcpy.map(fmt_rate),
            host(),
        ),
        (
            "floor: null system call",
            f.median("host", what::SYSCALL, 0).map(fmt_ns),
            host(),
        ),
        ("floor: KVM_EXIT_IO round trip", f.kvm.map(fmt_ns), kvm_env),
    ];
    floors
        .into_iter()
        .filter_map(|(what, figure, env)| Some(Row::new("host", env, what, figure?, no_floor())))
        .collect()
}

/// The blocks measured interleaved with the cache-line floor: median round
/// trip, and the median (p10-p90) of the ratios to the floor block of the
/// same repetition.
pub(super) fn interleaved_rows(f: &Figures) -> Vec<Row> {
    let floor = f.records.iter().find_map(|r| match &r.data {
        Data::Interleaved { stats, .. } if r.what.starts_with(what::INTERLEAVED) => {
            Some(stats.median_ns)
        }
        _ => None,
    });
    f.records
        .iter()
        .filter_map(|r| match &r.data {
            Data::Interleaved { stats, ratio } => {
                let name = r.what.strip_prefix(what::INTERLEAVED)?;
                let floor = floor.map(|n| format!("interleaved floor {}", fmt_ns(n)));
                Some(Row::new(
                    "host",
                    r.environment.clone(),
                    format!("{name}, {} B (interleaved)", stats.size),
                    fmt_ns(stats.median_ns),
                    (
                        floor.unwrap_or_default(),
                        format!("{:.2}x ({:.2}-{:.2})", ratio.median, ratio.p10, ratio.p90),
                    ),
                ))
            }
            _ => None,
        })
        .collect()
}

/// One port-I/O exit round trip through ivc-vmm per guest privilege level,
/// against the raw KVM_EXIT_IO floor.
pub(super) fn vmm_exit_rows(f: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    for cpl in [0, 3] {
        let w = format!("port-I/O exit round trip, guest CPL{cpl}");
        if let Some(m) = f.median("ivc-vmm", &w, 0) {
            let columns = match f.kvm {
                Some(k) if k > 0.0 => (
                    format!("KVM_EXIT_IO {}", fmt_ns(k)),
                    format!("{:.1}x", m / k),
                ),
                _ => no_floor(),
            };
            rows.push(Row::new(
                "ivc-vmm",
                f.env_of("ivc-vmm"),
                w,
                fmt_ns(m),
                columns,
            ));
        }
    }
    rows
}
