//! Section 1: the host's floors, and one port-I/O exit through ivc-vmm held
//! against the raw KVM exit.

use super::compare::no_floor;
use super::figures::Figures;
use super::format::{fmt_ns, fmt_rate};
use super::Row;
use crate::floors::what;

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
