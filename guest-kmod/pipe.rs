// SPDX-License-Identifier: GPL-2.0

//! Pipe semantics of `/dev/ivcN` over a [`Transport`].
//!
//! - byte stream, full duplex; `read` returns what is there (at least one
//!   byte, blocking until then), `write` blocks until everything is written
//!   and returns a partial count only when a signal or a gone peer
//!   interrupts it after some bytes went through, as a pipe does;
//! - `O_NONBLOCK`: `EAGAIN` instead of blocking;
//! - end of file once the peer closed and its data was read, `EPIPE` on
//!   writes to a gone peer, `EIO` once the shared memory broke the protocol,
//!   `ENODEV` once the device was removed;
//! - signals interrupt waits (`ERESTARTSYS`).
//!
//! Several openers share the one stream; readers are serialised with each
//! other, and so are writers, so one `write` is never interleaved with
//! another.
//!
//! Exclusive (mapped) mode: a file opened with `O_EXCL` on a shared-memory
//! device takes the whole channel for one process, which maps the ring
//! (`mmap`) and runs its own endpoint in user space. The kernel's endpoint
//! does not attach while it is open: other opens fail with `EBUSY`, and
//! `read`/`write` on the exclusive file fail with `EBUSY` too. The kernel
//! never touches the ring in this mode; it only lends the doorbell
//! (`IVC_IOC_DOORBELL`) and wakes `poll` callers when a doorbell (or, when
//! polled, a poller tick) may have changed the ring.
//!
//! Waiting: every wake-up source (the doorbell interrupt, the poller, a close)
//! bumps `events` under its lock and wakes `wait`. A waiter snapshots
//! `events` before it tries the operation and sleeps only if it is unchanged,
//! holding the lock, so no wake-up between the try and the sleep is lost.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use kernel::{
    fs::File,
    new_mutex, new_poll_condvar, new_spinlock_irq,
    prelude::*,
    processor::cpu_relax,
    sync::{
        poll::{PollCondVar, PollTable},
        Arc, CondVarTimeoutResult, Mutex, SpinLockIrq,
    },
    time::{msecs_to_jiffies, Instant, Monotonic},
    workqueue::{new_delayed_work, DelayedWork},
};

use crate::ffi::{FileOps, InodeMappings, MmapArea, UserBuf};
use crate::stats::Stats;
use crate::transport::{Direction, ReadOutcome, RxStaging, Staging, Status, Transport};

/// Tunables of the waiting strategy (from the module parameters).
#[derive(Clone, Copy)]
pub(crate) struct WaitParams {
    /// Polled transports: how long a waiter spins before it sleeps.
    pub(crate) spin_us: u32,
    /// Interrupt-driven transports: how long a waiter spins before it arms
    /// the doorbell and sleeps (0: at once).
    pub(crate) irq_spin_us: u32,
    /// Polled transports: the longest sleep between two looks.
    pub(crate) poll_max_ms: u32,
}

/// `IVC_IOC_INFO`: `_IOR('v', 1, struct ivc_info)`, 16 bytes: the shared
/// memory's size (u64), flags (u32, [`INFO_DOORBELL`]) and our ivshmem peer
/// id (u32), all little-endian.
pub(crate) const IVC_IOC_INFO: u32 = (2 << 30) | (16 << 16) | ((b'v' as u32) << 8) | 1;
/// `IVC_IOC_DOORBELL`: `_IO('v', 2)`, the argument is the ivshmem peer id
/// whose doorbell to ring (exclusive files on `shm-irq` only).
pub(crate) const IVC_IOC_DOORBELL: u32 = ((b'v' as u32) << 8) | 2;
/// `ivc_info.flags`: the device rings doorbells (`shm-irq`).
pub(crate) const INFO_DOORBELL: u32 = 1;

/// Who has the device open.
struct Openers {
    /// Files opened without `O_EXCL` (the kernel's endpoint serves them).
    count: u32,
    /// The exclusive file, while open (it owns the channel).
    exclusive: Option<InodeMappings>,
}

/// One channel device's file-level state.
#[pin_data]
pub(crate) struct Pipe {
    pub(crate) transport: Transport,
    pub(crate) params: WaitParams,
    #[pin]
    events: SpinLockIrq<u64>,
    #[pin]
    wait: PollCondVar,
    /// Serialises readers; holds the transport's staging buffer (empty for
    /// shared memory) and bytes a failed copy left there.
    #[pin]
    rx: Mutex<RxStaging>,
    /// Mirror of the bytes held in `rx`, for readiness (`poll` and the
    /// poller must not wait for the mutex a blocked reader holds).
    rx_held: AtomicUsize,
    /// Serialises writers, so one `write` is never interleaved with another;
    /// the staging buffer as for `rx`.
    #[pin]
    tx: Mutex<Staging>,
    #[pin]
    openers: Mutex<Openers>,
    /// Open files of either kind, mirrored for the poller, which must not
    /// sleep on the mutex.
    pub(crate) open_count: AtomicU32,
    /// An exclusive file is open (mirror of `openers.exclusive`).
    pub(crate) exclusive: AtomicBool,
    /// The event count the last `poll` of the exclusive file reported.
    excl_seen: AtomicU64,
    /// Readers, writers and poll callers currently waiting.
    pub(crate) waiters: AtomicU32,
    pub(crate) removed: AtomicBool,
    #[pin]
    pub(crate) poll_work: DelayedWork<Pipe>,
    pub(crate) poller: crate::poller::PollerState,
    pub(crate) stats: Arc<Stats>,
}

impl Pipe {
    /// A pipe over `transport`, with its staging buffers (see [`Staging`]).
    pub(crate) fn new(
        transport: Transport,
        (rx, tx): (Staging, Staging),
        params: WaitParams,
        stats: Arc<Stats>,
    ) -> Result<impl PinInit<Self, Error>> {
        let rx = RxStaging::new(rx);
        Ok(try_pin_init!(Self {
            transport,
            params,
            events <- new_spinlock_irq!(0, "ivc_events"),
            wait <- new_poll_condvar!("ivc_wait"),
            rx <- new_mutex!(rx, "ivc_rx"),
            rx_held: AtomicUsize::new(0),
            tx <- new_mutex!(tx, "ivc_tx"),
            openers <- new_mutex!(
                Openers {
                    count: 0,
                    exclusive: None,
                },
                "ivc_openers"
            ),
            open_count: AtomicU32::new(0),
            exclusive: AtomicBool::new(false),
            excl_seen: AtomicU64::new(0),
            waiters: AtomicU32::new(0),
            removed: AtomicBool::new(false),
            poll_work <- new_delayed_work!("ivc_poller"),
            poller: crate::poller::PollerState::new(),
            stats,
        }? Error))
    }

    /// Wakes every waiter (readers, writers, `poll`); callable from any
    /// context, including hard interrupts.
    pub(crate) fn wake(&self) {
        let mut g = self.events.lock();
        *g = g.wrapping_add(1);
        self.wait.notify_all();
    }

    fn snapshot(&self) -> u64 {
        *self.events.lock()
    }

    /// The device is going away: fail everything from now on and wake all
    /// sleepers so they see it.
    pub(crate) fn shutdown(&self) {
        self.removed.store(true, Ordering::Release);
        self.transport.shutdown();
        // A process that mapped the ring loses the mapping (its accesses
        // fault from now on): the memory is the device's, which is going.
        // After `transport.shutdown`, so no `mmap` can come in between.
        if let Some(m) = self.openers.lock().exclusive.as_ref() {
            m.zap();
        }
        self.wake();
    }

    fn is_shm(&self) -> bool {
        matches!(self.transport, Transport::Shm(_))
    }

    /// `poll` on the exclusive file: the kernel does not know the ring's
    /// state (the process runs the endpoint), so it reports an edge: readable
    /// and writable once for every batch of wake-ups (doorbells, poller
    /// ticks when polled) since the previous report. The process arms its
    /// wake-up flags, checks the ring, then polls; a doorbell that came in
    /// between is reported at once, a stale one costs one more look.
    fn poll_exclusive(&self, file: &File, table: &PollTable<'_>) -> u32 {
        table.register_wait(file, &self.wait);
        if self.removed.load(Ordering::Acquire) {
            return kernel::bindings::POLLERR | kernel::bindings::POLLHUP;
        }
        let now = self.snapshot();
        if self.excl_seen.swap(now, Ordering::AcqRel) != now {
            kernel::bindings::POLLIN
                | kernel::bindings::POLLRDNORM
                | kernel::bindings::POLLOUT
                | kernel::bindings::POLLWRNORM
        } else {
            0
        }
    }

    /// The transport's readiness, readable too while bytes a failed copy
    /// left in the staging buffer wait for a read.
    pub(crate) fn status(&self) -> Status {
        let mut s = self.transport.status();
        if self.rx_held.load(Ordering::Acquire) > 0 {
            s.readable = true;
        }
        s
    }

    fn ready(&self, dir: Direction) -> bool {
        let s = self.status();
        match dir {
            Direction::Read => s.readable,
            Direction::Write => s.writable,
        }
    }

    /// A non-blocking call is about to return `EAGAIN`. With doorbells, ask
    /// the peer for one first, as `poll` does: an edge-triggered `epoll`
    /// waiter sleeps after `EAGAIN` without calling `poll` again, and would
    /// otherwise be woken only by the poller's backstop tick. `true`: what
    /// we wait for arrived while we looked, so look once more instead of
    /// failing (at most once per call, `armed`). The price: a caller that
    /// spins on `EAGAIN` makes the peer ring for every write it sees (such
    /// a caller wants `mode=shm-poll`).
    fn arm_after_eagain(&self, dir: Direction, armed: &mut bool) -> bool {
        if *armed || !self.transport.uses_interrupts() {
            return false;
        }
        *armed = true;
        self.transport.arm(dir)
    }

    /// Sleeps until something may have changed since `seq` for `dir`.
    fn wait_for(&self, seq: u64, dir: Direction) -> Result {
        if self.removed.load(Ordering::Acquire) {
            return Err(ENODEV);
        }
        let irq = self.transport.uses_interrupts();
        let spin_us = if irq {
            self.params.irq_spin_us
        } else {
            self.params.spin_us
        };
        if spin_us > 0 {
            // A peer that answers quickly is caught without the cost of a
            // sleep and a wake-up (and, with interrupts, of a doorbell: the
            // peer rings only for a waiter that armed one).
            let start = Instant::<Monotonic>::now();
            let limit = i64::from(spin_us);
            while start.elapsed().as_micros_ceil() < limit {
                if self.ready(dir) {
                    return Ok(());
                }
                cpu_relax();
            }
        }
        if irq && self.transport.arm(dir) {
            return Ok(());
        }
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let timeout = if irq {
            // Interrupts wake us; the timeout only bounds the damage of a
            // lost doorbell (a peer that died between the check and the
            // ring).
            msecs_to_jiffies(1000)
        } else {
            msecs_to_jiffies(self.params.poll_max_ms.max(1))
        };
        let mut g = self.events.lock();
        let res = if *g == seq {
            self.wait.wait_interruptible_timeout(&mut g, timeout)
        } else {
            CondVarTimeoutResult::Woken { jiffies: 0 }
        };
        // A wake-up that comes as the timeout expires (or is only scheduled
        // after it) reads as a timeout; the event count says it came.
        let woken = *g != seq;
        drop(g);
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        Stats::inc(&self.stats.wakeups);
        match res {
            CondVarTimeoutResult::Signal { .. } => Err(ERESTARTSYS),
            CondVarTimeoutResult::Timeout if irq && !woken && self.ready(dir) => {
                // What we waited for is there, yet nothing woke us: a
                // doorbell was lost, or is still on its way (the peer acted
                // just before the timeout). Say what the ring looked like,
                // so it can be placed. A timeout with nothing to do is only
                // a quiet second, and one with a wake-up at the deadline
                // was a wake-up: neither is worth a word.
                Stats::inc(&self.stats.irq_wait_timeouts);
                let s = self.status();
                let what = if dir == Direction::Read {
                    "read"
                } else {
                    "write"
                };
                dev_warn!(
                    self.transport.device(),
                    "ivc: {} wait timed out unwoken although the channel was ready (readable={} writable={} hangup={} error={}): doorbell lost or late\n",
                    what,
                    s.readable,
                    s.writable,
                    s.hangup,
                    s.error
                );
                self.transport.debug_dump();
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl FileOps for Pipe {
    fn open(this: &Arc<Self>, exclusive: Option<InodeMappings>) -> Result {
        let mut o = this.openers.lock();
        if this.removed.load(Ordering::Acquire) {
            return Err(ENODEV);
        }
        match exclusive {
            Some(m) => {
                // Only shared memory can be mapped; port I/O has none the
                // guest can see.
                if !this.is_shm() {
                    return Err(ENODEV);
                }
                if o.count > 0 || o.exclusive.is_some() {
                    return Err(EBUSY);
                }
                o.exclusive = Some(m);
                this.excl_seen.store(this.snapshot(), Ordering::Release);
                this.exclusive.store(true, Ordering::Release);
            }
            None => {
                if o.exclusive.is_some() {
                    return Err(EBUSY);
                }
                if o.count == 0 {
                    this.transport.open()?;
                }
                o.count += 1;
            }
        }
        this.open_count.store(
            o.count + u32::from(o.exclusive.is_some()),
            Ordering::Release,
        );
        drop(o);
        this.start_poller();
        Ok(())
    }

    fn release(&self, excl: bool) {
        let mut o = self.openers.lock();
        if excl {
            o.exclusive = None;
            self.exclusive.store(false, Ordering::Release);
        } else {
            o.count = o.count.saturating_sub(1);
            if o.count == 0 {
                self.transport.release();
            }
        }
        self.open_count.store(
            o.count + u32::from(o.exclusive.is_some()),
            Ordering::Release,
        );
        drop(o);
        self.wake();
    }

    fn read(&self, excl: bool, out: &UserBuf, nonblock: bool) -> Result<usize> {
        if excl {
            // The process that mapped the ring reads it itself.
            return Err(EBUSY);
        }
        if out.is_empty() {
            return Ok(0);
        }
        self.transport.resume();
        // The lock serialises readers; it holds port I/O's staging.
        let mut rx = self.rx.lock();
        let mut armed = false;
        loop {
            let seq = self.snapshot();
            let r = self.transport.try_read(out, &mut rx);
            self.rx_held.store(rx.held(), Ordering::Release);
            match r? {
                ReadOutcome::Data(n) => {
                    Stats::add(&self.stats.bytes_read, n as u64);
                    return Ok(n);
                }
                ReadOutcome::Eof => return Ok(0),
                ReadOutcome::Empty => {}
            }
            if nonblock {
                self.saw_blocked(Direction::Read);
                if self.arm_after_eagain(Direction::Read, &mut armed) {
                    continue;
                }
                return Err(EAGAIN);
            }
            self.wait_for(seq, Direction::Read)?;
        }
    }

    fn write(&self, excl: bool, input: &UserBuf, nonblock: bool) -> Result<usize> {
        if excl {
            return Err(EBUSY);
        }
        let total = input.len();
        if total == 0 {
            return Ok(0);
        }
        self.transport.resume();
        // The lock serialises writers, so one `write` is never interleaved
        // with another; the buffer is port I/O's staging.
        let mut bounce = self.tx.lock();
        let mut done = 0usize;
        let mut armed = false;
        // Only errors before the first byte are reported; after that the
        // caller gets the count, as write(2) on a pipe does.
        let partial = |done: usize, e: Error| if done > 0 { Ok(done) } else { Err(e) };
        while done < total {
            let seq = self.snapshot();
            match self.transport.try_write(input, done, &mut bounce) {
                Ok(0) => {}
                Ok(n) => {
                    done += n;
                    Stats::add(&self.stats.bytes_written, n as u64);
                    continue;
                }
                Err(e) => return partial(done, e),
            }
            if nonblock {
                self.saw_blocked(Direction::Write);
                if self.arm_after_eagain(Direction::Write, &mut armed) {
                    continue;
                }
                return partial(done, EAGAIN);
            }
            if let Err(e) = self.wait_for(seq, Direction::Write) {
                return partial(done, e);
            }
        }
        Ok(done)
    }

    fn poll(&self, excl: bool, file: &File, table: &PollTable<'_>) -> u32 {
        if excl {
            return self.poll_exclusive(file, table);
        }
        table.register_wait(file, &self.wait);
        self.transport.resume();
        let mut s = self.status();
        if self.transport.uses_interrupts() {
            // Ask for the doorbells that would change the answer.
            if !s.readable && self.transport.arm(Direction::Read) {
                s = self.status();
            }
            if !s.writable && self.transport.arm(Direction::Write) {
                s = self.status();
            }
        }
        // The poller wakes us when it sees the readiness change (polled
        // transports; with doorbells it is the backstop for a doorbell that
        // never comes), comparing with its own previous look, which may be
        // older than ours: make what we found missing count as a change.
        self.poll_saw(s);
        let mut mask = 0;
        if s.readable {
            mask |= kernel::bindings::POLLIN | kernel::bindings::POLLRDNORM;
        }
        if s.writable {
            mask |= kernel::bindings::POLLOUT | kernel::bindings::POLLWRNORM;
        }
        if s.hangup {
            mask |= kernel::bindings::POLLHUP;
        }
        if s.error || self.removed.load(Ordering::Acquire) {
            mask |= kernel::bindings::POLLERR;
        }
        mask
    }

    fn mmap(&self, excl: bool, area: &MmapArea<'_>) -> Result {
        let Transport::Shm(t) = &self.transport else {
            return Err(ENODEV);
        };
        // Only the exclusive file may map the ring: the kernel's endpoint
        // is not attached then, so nobody else in this guest uses it.
        if !excl {
            return Err(EINVAL);
        }
        t.mmap(area)
    }

    fn ioctl(&self, excl: bool, cmd: u32, arg: usize) -> Result<isize> {
        let Transport::Shm(t) = &self.transport else {
            return Err(ENODEV);
        };
        match cmd {
            IVC_IOC_INFO => {
                let mut info = [0u8; 16];
                let len = u64::try_from(t.mem_len()).map_err(|_| EINVAL)?;
                let flags = if t.uses_interrupts() {
                    INFO_DOORBELL
                } else {
                    0
                };
                info[..8].copy_from_slice(&len.to_le_bytes());
                info[8..12].copy_from_slice(&flags.to_le_bytes());
                info[12..].copy_from_slice(&u32::from(t.my_id()).to_le_bytes());
                let user = kernel::uaccess::UserSlice::new(
                    kernel::uaccess::UserPtr::from_addr(arg),
                    info.len(),
                );
                user.writer().write_slice(&info)?;
                Ok(0)
            }
            IVC_IOC_DOORBELL => {
                if !excl {
                    return Err(EINVAL);
                }
                if self.removed.load(Ordering::Acquire) {
                    return Err(ENODEV);
                }
                let peer = u16::try_from(arg).map_err(|_| EINVAL)?;
                t.ring_for_user(peer)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}
