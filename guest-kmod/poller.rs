// SPDX-License-Identifier: GPL-2.0

//! The poller: a delayed work item that runs while the device is open.
//!
//! It gives the transport its periodic tick (heartbeat, peer liveness,
//! handshake progress) and, for transports without interrupts, is what wakes
//! `poll`/`epoll` callers: each pass compares the transport's readiness with
//! the previous pass and wakes all waiters when it changed. The interval
//! starts at one jiffy after any change and doubles up to `poll_max_ms` while
//! nothing happens, so an idle open channel costs about `1000 / poll_max_ms`
//! short passes per second, and a closed one nothing. With interrupts the
//! interval is fixed at [`IRQ_TICK_MS`]: the doorbells do the waking.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use kernel::{
    prelude::*,
    sync::Arc,
    time::msecs_to_jiffies,
    workqueue::{self, impl_has_delayed_work, WorkItem},
};

use crate::pipe::Pipe;
use crate::stats::Stats;
use crate::transport::{Direction, Status};

/// Tick of interrupt-driven transports (heartbeat and liveness only).
pub(crate) const IRQ_TICK_MS: u32 = 100;

/// Flushes [`Pipe::stop_poller`] tries; two suffice (see there).
const STOP_FLUSHES: u32 = 100;

/// The poller's bookkeeping, inside [`Pipe`].
pub(crate) struct PollerState {
    running: AtomicBool,
    delay_ms: AtomicU32,
    last: AtomicU32,
}

impl PollerState {
    pub(crate) fn new() -> Self {
        Self {
            running: AtomicBool::new(false),
            delay_ms: AtomicU32::new(1),
            last: AtomicU32::new(0),
        }
    }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Pipe> for Pipe { self.poll_work }
}

fn bits(s: Status) -> u32 {
    u32::from(s.readable)
        | u32::from(s.writable) << 1
        | u32::from(s.hangup) << 2
        | u32::from(s.error) << 3
}

impl Pipe {
    /// A `poll` caller on the wait queue found the channel in state `s`.
    ///
    /// The poller wakes waiters when the readiness it sees differs from what
    /// it saw on its previous pass. That pass may be older than the caller's
    /// look: it may have seen data that the caller has read since. Then data
    /// arriving before the next pass leaves the readiness unchanged in the
    /// poller's eyes, and the caller sleeps until its own timeout (a 60 s
    /// `poll` in the file-semantics test did). So every readiness bit the
    /// caller found clear is cleared in the poller's record too: the first
    /// pass that finds it set after this wakes the caller, which registered
    /// on the wait queue before it looked. A pass that stores a stale "set"
    /// after this only wakes the caller early, to look again.
    pub(crate) fn poll_saw(&self, s: Status) {
        self.poller.last.fetch_and(bits(s), Ordering::AcqRel);
    }

    /// A non-blocking `read` found nothing or `write` found no room: the
    /// same as [`Pipe::poll_saw`] for that direction, because an
    /// edge-triggered `epoll` caller sleeps after such an `EAGAIN` without
    /// calling `poll` again. (Blocking callers wait with a timeout of their
    /// own, `poll_max_ms` when polled, and are left alone.)
    pub(crate) fn saw_blocked(&self, dir: Direction) {
        let bit = bits(match dir {
            Direction::Read => Status {
                readable: true,
                ..Status::default()
            },
            Direction::Write => Status {
                writable: true,
                ..Status::default()
            },
        });
        self.poller.last.fetch_and(!bit, Ordering::AcqRel);
    }

    /// Starts the poller if it is not running (called on open).
    pub(crate) fn start_poller(self: &Arc<Self>) {
        if self.poller.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.poller.delay_ms.store(1, Ordering::Relaxed);
        // Cannot be pending: only a running poller re-queues itself.
        let _ = workqueue::system_highpri().enqueue_delayed(self.clone(), 1);
    }

    /// Waits until the poller has stopped for good (called at device removal,
    /// after `shutdown`, so the work item never runs after the module is
    /// gone).
    ///
    /// Each flush runs a pending pass at once (no waiting for its timer,
    /// however long `poll_max_ms` is) and waits for it. A pass sees
    /// `removed` and stops; one that was already past that check when
    /// `shutdown` ran queues one more pass, which the next flush runs.
    pub(crate) fn stop_poller(&self) {
        for _ in 0..STOP_FLUSHES {
            crate::ffi::flush_delayed_work(&self.poll_work);
            if !self.poller.running.load(Ordering::Acquire) {
                return;
            }
        }
        dev_warn!(
            self.transport.device(),
            "ivc: the poller did not stop after {} flushes\n",
            STOP_FLUSHES
        );
    }

    fn poll_pass(self: Arc<Self>) {
        if self.removed.load(Ordering::Acquire) || self.open_count.load(Ordering::Acquire) == 0 {
            self.poller.running.store(false, Ordering::Release);
            // Re-check: an open that raced with this decision saw `running`
            // still set and did not start a new poller.
            if self.open_count.load(Ordering::Acquire) == 0 || self.removed.load(Ordering::Acquire)
            {
                return;
            }
            if self.poller.running.swap(true, Ordering::AcqRel) {
                return;
            }
        }
        Stats::inc(&self.stats.poll_ticks);
        if self.exclusive.load(Ordering::Acquire) {
            // A process runs the ring: the kernel's endpoint is not
            // attached. Without doorbells each pass wakes its `poll` (it
            // looks at the ring itself); with them the doorbells do.
            let delay = if self.transport.uses_interrupts() {
                IRQ_TICK_MS
            } else {
                self.wake();
                self.params.poll_max_ms.max(1)
            };
            let _ = workqueue::system_highpri().enqueue_delayed(self, msecs_to_jiffies(delay));
            return;
        }
        self.transport.tick();
        let now = bits(self.status());
        let before = self.poller.last.swap(now, Ordering::AcqRel);
        let delay = if self.transport.uses_interrupts() {
            if now != before {
                self.wake();
            }
            IRQ_TICK_MS
        } else if now != before {
            self.wake();
            1
        } else {
            let d = self.poller.delay_ms.load(Ordering::Relaxed);
            d.saturating_mul(2).min(self.params.poll_max_ms.max(1))
        };
        self.poller.delay_ms.store(delay, Ordering::Relaxed);
        let _ = workqueue::system_highpri().enqueue_delayed(self, msecs_to_jiffies(delay));
    }
}

impl WorkItem for Pipe {
    type Pointer = Arc<Pipe>;

    fn run(this: Arc<Pipe>) {
        this.poll_pass();
    }
}
