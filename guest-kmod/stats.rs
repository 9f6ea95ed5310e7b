// SPDX-License-Identifier: GPL-2.0

//! Per-device counters, exported read-only in debugfs under
//! `/sys/kernel/debug/ivcN/counters/` (see docs/driver.md).

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::{
    debugfs::{Dir, Scope},
    prelude::*,
    sync::Arc,
};

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
    /// Doorbell-mode sleeps that ended by timeout: a wake-up that never came.
    pub(crate) irq_wait_timeouts: AtomicU64,
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

/// The debugfs view of a device's counters: `/sys/kernel/debug/<name>/`
/// holds one read-only file per counter. Removed when dropped (the files
/// refer to the counters through the `Arc` the scope keeps).
pub(crate) struct DebugfsStats {
    _scope: Pin<KBox<Scope<Arc<Stats>>>>,
    _dir: Dir,
}

impl DebugfsStats {
    /// Creates the directory `name` with a file per counter.
    pub(crate) fn new(name: &CStr, stats: Arc<Stats>) -> Result<Self> {
        let dir = Dir::new(name);
        let scope = KBox::pin_init(
            dir.scope(stats, c"counters", |s, d| {
                d.read_only_file(c"bytes_read", &s.bytes_read);
                d.read_only_file(c"bytes_written", &s.bytes_written);
                d.read_only_file(c"doorbells_sent", &s.doorbells_sent);
                d.read_only_file(c"doorbells_received", &s.doorbells_received);
                d.read_only_file(c"wakeups", &s.wakeups);
                d.read_only_file(c"poll_ticks", &s.poll_ticks);
                d.read_only_file(c"errors", &s.errors);
                d.read_only_file(c"irq_wait_timeouts", &s.irq_wait_timeouts);
            }),
            GFP_KERNEL,
        )?;
        Ok(Self {
            _scope: scope,
            _dir: dir,
        })
    }
}
