// SPDX-License-Identifier: GPL-2.0

//! Per-device counters, exported read-only in debugfs under
//! `/sys/kernel/debug/ivc/ivcN/` (see docs/driver.md).

use core::sync::atomic::{AtomicU64, Ordering};

/// Counters of one channel. Relaxed atomics: they are statistics, nothing
/// synchronises through them.
#[derive(Default)]
pub(crate) struct Stats {
    /// Bytes handed to `read(2)` callers.
    pub(crate) bytes_read: AtomicU64,
    /// Bytes accepted from `write(2)` callers.
    pub(crate) bytes_written: AtomicU64,
    /// Doorbells rung towards the peer.
    pub(crate) doorbells_sent: AtomicU64,
    /// Interrupts received from the peer.
    pub(crate) doorbells_received: AtomicU64,
    /// Times a sleeping reader, writer or poller was woken.
    pub(crate) wakeups: AtomicU64,
    /// Poller passes.
    pub(crate) poll_ticks: AtomicU64,
    /// Protocol violations and I/O errors seen (each also logged).
    pub(crate) errors: AtomicU64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub(crate) fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }
}
