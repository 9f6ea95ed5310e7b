//! How the summary writes durations, sizes and rates.

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

/// A throughput figure, marked when the receiver found a byte wrong.
pub(super) fn rate_figure(mib_s: f64, verified: bool) -> String {
    format!(
        "{}{}",
        fmt_rate(mib_s),
        if verified { "" } else { " DATA MISMATCH" }
    )
}
