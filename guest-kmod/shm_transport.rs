// SPDX-License-Identifier: GPL-2.0

//! The shared-memory transport (`ivc-shm`, QEMU's ivshmem).
//!
//! The channel itself (layout, rings, handshake, hardening) is
//! [`crate::ivc_abi`]; this file connects it to the device: BAR2 mapped
//! write-back as the channel memory, BAR0's Doorbell register to wake the
//! peer, IVPosition as our doorbell identity. The endpoint exists while the
//! device is open (the first open attaches, the last close closes), so the
//! peer sees end of file when our last opener goes, as with a pipe.
//!
//! Every value in the shared memory is untrusted; the endpoint validates
//! them and latches `Corrupted`, which becomes `EIO` here.
//!
//! The device's resources end with its binding, not with the last open
//! file: `shutdown` (at removal) drops the shared mapping, which lives only
//! in the locked state, and revokes the registers, so a file kept open
//! across an unbind gets `ENODEV` and never touches either again.

use kernel::{
    device::Device,
    new_mutex,
    prelude::*,
    revocable::Revocable,
    sync::{aref::ARef, Arc, Mutex},
    time::{delay::fsleep, Delta, Instant, Monotonic},
};

use crate::ffi::{IoRegion, MmapArea, SharedMapping, UserBuf};
use crate::ivc_abi::{
    ivshmem::{self, Doorbell},
    layout::{self, peer_entry, NUM_SLOTS, PEER_HEARTBEAT},
    AttachOptions, ChannelError, CopyError, Endpoint, Liveness, OutOfBounds, PeerState, Readiness,
    SharedMemory,
};
use crate::stats::Stats;
use crate::transport::{Direction, ReadOutcome, Status};

/// The shared mapping, shared between the transport and its endpoint.
#[derive(Clone)]
pub(crate) struct ShmRef(Arc<SharedMapping>);

impl SharedMemory for ShmRef {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn load_u32_acquire(&self, off: usize) -> Result<u32, OutOfBounds> {
        self.0.load_u32_acquire(off)
    }
    fn load_u32_relaxed(&self, off: usize) -> Result<u32, OutOfBounds> {
        self.0.load_u32_relaxed(off)
    }
    fn store_u32_release(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.0.store_u32_release(off, v)
    }
    fn store_u32_relaxed(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.0.store_u32_relaxed(off, v)
    }
    fn compare_exchange_u32(
        &self,
        off: usize,
        cur: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds> {
        self.0.compare_exchange_u32(off, cur, new)
    }
    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        self.0.read_bytes(off, dst)
    }
    fn write_bytes(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.0.write_bytes(off, src)
    }
    fn fence_seqcst(&self) {
        self.0.fence_seqcst()
    }
}

struct State {
    /// The shared memory while the device is bound; `None` once `shutdown`
    /// ran: the device is gone and every call fails with `ENODEV`.
    mem: Option<ShmRef>,
    /// `open` could not attach without waiting; the next read, write or
    /// poller pass does (see `ShmTransport::open`).
    attach_pending: bool,
    ep: Option<Endpoint<ShmRef>>,
    /// A protocol violation was already logged.
    reported: bool,
    live: Liveness,
}

/// One ivc-shm channel.
pub(crate) struct ShmTransport {
    mem_len: usize,
    /// BAR0, revoked at removal (usable from the interrupt handler too).
    regs: Pin<KBox<Revocable<IoRegion>>>,
    /// Doorbells on: we publish our IVPosition and ring the peer's.
    irq: bool,
    my_id: u16,
    peer_timeout_ms: u32,
    /// The origin of the milliseconds `Liveness` is given.
    born: Instant<Monotonic>,
    state: Pin<KBox<Mutex<State>>>,
    pub(crate) stats: Arc<Stats>,
    name: &'static CStr,
    /// The PCI device, for `dev_*` log lines.
    dev: ARef<Device>,
}

fn errno(e: ChannelError) -> Error {
    match e {
        ChannelError::Corrupted | ChannelError::Reset => EIO,
        ChannelError::NotFormatted => ENODEV,
        ChannelError::Busy => EAGAIN,
        ChannelError::Incompatible => EPROTO,
        ChannelError::InvalidLayout | ChannelError::InvalidSlot => EINVAL,
        ChannelError::NoFreeSlot => EBUSY,
        ChannelError::PeerGone => EPIPE,
        ChannelError::Closed => EBADF,
    }
}

impl ShmTransport {
    /// A transport over `mem` with BAR0 registers `regs`.
    pub(crate) fn new(
        mem: SharedMapping,
        regs: IoRegion,
        irq: bool,
        peer_timeout_ms: u32,
        stats: Arc<Stats>,
        name: &'static CStr,
        dev: ARef<Device>,
    ) -> Result<Self> {
        let mem_len = mem.len();
        let my_id = if irq {
            // IVPosition is a peer id from the rendezvous server (< 65536).
            u16::try_from(regs.read32(usize::from(ivshmem::REG_IV_POSITION))?).map_err(|_| EIO)?
        } else {
            0
        };
        let state = KBox::pin_init(
            new_mutex!(
                State {
                    mem: Some(ShmRef(Arc::new(mem, GFP_KERNEL)?)),
                    attach_pending: false,
                    ep: None,
                    reported: false,
                    live: Liveness::new(),
                },
                "ivc_shm_state"
            ),
            GFP_KERNEL,
        )?;
        Ok(Self {
            mem_len,
            regs: KBox::pin_init(Revocable::new(regs), GFP_KERNEL)?,
            irq,
            my_id,
            peer_timeout_ms,
            born: Instant::now(),
            state,
            stats,
            name,
            dev,
        })
    }

    /// Size of the shared memory in bytes.
    pub(crate) fn mem_len(&self) -> usize {
        self.mem_len
    }

    /// The PCI device.
    pub(crate) fn device(&self) -> &Device {
        &self.dev
    }

    /// Our ivshmem peer id (doorbell mode).
    pub(crate) fn my_id(&self) -> u16 {
        self.my_id
    }

    /// Reads and clears the INTx status; `true` if the interrupt was ours.
    pub(crate) fn ack_intx(&self) -> bool {
        self.regs
            .try_access_with(|r| r.read32(usize::from(ivshmem::REG_INTR_STATUS)))
            .and_then(|r| r.ok())
            .is_some_and(|s| s != 0)
    }

    /// Enables the INTx interrupt (MSI-X needs nothing).
    pub(crate) fn enable_intx(&self) -> Result {
        self.regs
            .try_access_with(|r| r.write32(usize::from(ivshmem::REG_INTR_MASK), 1))
            .unwrap_or(Err(ENODEV))
    }

    /// Latches a protocol error into a logged `EIO` (once per breakage).
    fn fail(&self, st: &mut State, e: ChannelError) -> Error {
        if matches!(e, ChannelError::Corrupted | ChannelError::Reset) {
            Stats::inc(&self.stats.errors);
            if !st.reported {
                st.reported = true;
                dev_err!(
                    self.dev,
                    "{}: shared memory broke the channel protocol ({:?}); channel disabled until reopened\n",
                    self.name, e);
            }
        }
        errno(e)
    }

    fn ring(&self, ep: &mut Endpoint<ShmRef>) {
        self.ring_peer(ep.peer_doorbell_id().ok().flatten());
    }

    fn ring_peer(&self, peer: Option<u16>) {
        if !self.irq {
            return;
        }
        // The id is the peer's claim in shared memory: untrusted, but only
        // ever used as a doorbell target, which the VMM validates.
        if let Some(peer) = peer {
            // Vector 0: the driver allocates one MSI-X vector per device.
            let value = Doorbell { peer, vector: 0 }.value();
            let rung = self
                .regs
                .try_access_with(|r| r.write32(usize::from(ivshmem::REG_DOORBELL), value));
            if matches!(rung, Some(Ok(()))) {
                Stats::inc(&self.stats.doorbells_sent);
            }
        }
    }

    /// Closes our side and tells the peer. The doorbell target is read
    /// first: a closed endpoint no longer reads shared memory, so asking it
    /// afterwards would skip the close notification and leave a peer asleep
    /// in `poll` until its next poller tick noticed.
    fn close_endpoint(&self, st: &mut State) {
        if let Some(mut ep) = st.ep.take() {
            let peer = ep.peer_doorbell_id().ok().flatten();
            ep.close();
            if ep.needs_doorbell() {
                self.ring_peer(peer);
            }
        }
    }

    fn kick_if_needed(&self, ep: &mut Endpoint<ShmRef>) {
        if ep.needs_doorbell() {
            self.ring(ep);
        }
    }

    /// First opener: attach to a free slot (formatting the region if it
    /// holds no channel yet).
    ///
    /// This runs under the kernel's global misc-device mutex (`misc_open`),
    /// so it must not sleep: it tries once. When the other side is
    /// formatting the region right now (`Busy`) or both slots look taken
    /// (`NoFreeSlot`, a previous incarnation may have died holding one), the
    /// attach is left pending and finished by the first read or write, or
    /// by the poller, which may wait (up to 100 ms for a format, up to 3 s
    /// to tell a stale slot from a live one). Until then the channel is
    /// simply not connected yet, which users already see at every open.
    pub(crate) fn open(&self) -> Result {
        let mut st = self.state.lock();
        let Some(mem) = st.mem.clone() else {
            return Err(ENODEV);
        };
        match Endpoint::attach_any(mem, &self.attach_options()) {
            Ok(ep) => {
                self.install(&mut st, ep);
                Ok(())
            }
            Err(ChannelError::Busy | ChannelError::NoFreeSlot) => {
                st.attach_pending = true;
                Ok(())
            }
            Err(e) => Err(self.fail(&mut st, e)),
        }
    }

    fn attach_options(&self) -> AttachOptions {
        AttachOptions {
            doorbell_id: if self.irq { Some(self.my_id) } else { None },
            ..AttachOptions::default()
        }
    }

    fn install(&self, st: &mut State, mut ep: Endpoint<ShmRef>) {
        st.attach_pending = false;
        st.reported = false;
        st.live = Liveness::new();
        let _ = ep.peer_state();
        self.kick_if_needed(&mut ep);
        st.ep = Some(ep);
    }

    /// Finishes an attach `open` left pending; may sleep (process context or
    /// the poller's work item, never under the misc mutex).
    fn finish_attach(&self, st: &mut State) -> Result {
        let Some(mem) = st.mem.clone() else {
            return Err(ENODEV);
        };
        let opts = self.attach_options();
        let mut tries = 0;
        let ep = loop {
            match Endpoint::attach_any(mem.clone(), &opts) {
                Ok(ep) => break ep,
                // The other side is formatting right now.
                Err(ChannelError::Busy) if tries < 100 => {
                    tries += 1;
                    fsleep(Delta::from_millis(1));
                }
                Err(ChannelError::NoFreeSlot) => break self.take_over_stale_slot(&mem, &opts)?,
                Err(e) => return Err(self.fail(st, e)),
            }
        };
        self.install(st, ep);
        Ok(())
    }

    /// Both slots claim to be in use: one is a previous incarnation that died
    /// (a VM killed while open). Take over a slot whose heartbeat is still
    /// over a sampling interval.
    fn take_over_stale_slot(&self, mem: &ShmRef, opts: &AttachOptions) -> Result<Endpoint<ShmRef>> {
        let beat = |slot: u32| mem.load_u32_relaxed(peer_entry(slot) + PEER_HEARTBEAT).ok();
        let before: [Option<u32>; NUM_SLOTS as usize] = [beat(0), beat(1)];
        let wait = self.peer_timeout_ms.clamp(200, 3000);
        fsleep(Delta::from_millis(i64::from(wait)));
        for slot in 0..NUM_SLOTS {
            if before[slot as usize].is_some() && beat(slot) == before[slot as usize] {
                dev_warn!(
                    self.dev,
                    "{}: slot {} looks abandoned (no heartbeat for {} ms); taking it over\n",
                    self.name,
                    slot,
                    wait
                );
                return Endpoint::attach_with(mem.clone(), slot, opts).map_err(errno);
            }
        }
        Err(EBUSY)
    }

    /// Last closer: close our side; the peer reads what we sent, then EOF.
    pub(crate) fn release(&self) {
        let mut st = self.state.lock();
        st.attach_pending = false;
        self.close_endpoint(&mut st);
    }

    /// The device is being removed: close (telling the peer), unmap the
    /// shared memory and revoke the registers (waiting for any user of
    /// them, the interrupt handler included, to finish).
    pub(crate) fn shutdown(&self) {
        let mut st = self.state.lock();
        self.close_endpoint(&mut st);
        st.mem = None;
        drop(st);
        self.regs.revoke();
    }

    fn with_ep<R>(&self, f: impl FnOnce(&Self, &mut State) -> Result<R>) -> Result<R> {
        let mut st = self.state.lock();
        if st.mem.is_none() {
            return Err(ENODEV);
        }
        if st.attach_pending {
            self.finish_attach(&mut st)?;
        }
        f(self, &mut st)
    }

    /// Non-blocking read.
    pub(crate) fn try_read(&self, out: &UserBuf) -> Result<ReadOutcome> {
        self.with_ep(|this, st| {
            let Some(ep) = st.ep.as_mut() else {
                return Err(EBADF);
            };
            // Straight from the ring into the user's buffer: one copy.
            let r = ep.read_with(out.len(), |mem: &ShmRef, off, to, n| {
                mem.0.copy_to_user(off, out, to, n)
            });
            if this.irq && ep.needs_doorbell_after_read() {
                this.ring(ep);
            }
            match r {
                Ok(0) => Ok(ReadOutcome::Empty),
                Ok(n) => Ok(ReadOutcome::Data(n)),
                // A bad user address: nothing was consumed.
                Err(CopyError::Copy(e)) => Err(e),
                Err(CopyError::Channel(ChannelError::PeerGone)) => Ok(ReadOutcome::Eof),
                Err(CopyError::Channel(e)) => Err(this.fail(st, e)),
            }
        })
    }

    /// Non-blocking write of `input`'s bytes from `from` on.
    pub(crate) fn try_write(&self, input: &UserBuf, from: usize) -> Result<usize> {
        self.with_ep(|this, st| {
            let Some(ep) = st.ep.as_mut() else {
                return Err(EBADF);
            };
            let len = input.len().saturating_sub(from);
            // Straight from the user's buffer into the ring: one copy.
            let r = ep.write_with(len, |mem: &ShmRef, off, at, n| {
                mem.0.copy_from_user(off, input, from.saturating_add(at), n)
            });
            if this.irq && ep.needs_doorbell_after_write() {
                this.ring(ep);
            }
            match r {
                Ok(n) => Ok(n),
                // A bad user address: nothing was published.
                Err(CopyError::Copy(e)) => Err(e),
                Err(CopyError::Channel(e)) => Err(this.fail(st, e)),
            }
        })
    }

    /// A user call begins (see `Transport::resume`). The endpoint's data
    /// path resumes by itself; this is for `poll`.
    pub(crate) fn resume(&self) {
        if let Some(ep) = self.state.lock().ep.as_mut() {
            ep.resume();
        }
    }

    /// Readiness for `poll` and the poller.
    pub(crate) fn status(&self) -> Status {
        let mut st = self.state.lock();
        if st.mem.is_none() {
            return Status {
                readable: true,
                writable: true,
                hangup: true,
                error: true,
            };
        }
        let Some(ep) = st.ep.as_mut() else {
            return Status::default();
        };
        let peer = ep.peer_state();
        let readable = ep.readable_bytes();
        let writable = ep.writable_bytes();
        if self.irq {
            self.kick_if_needed(ep);
        }
        match (peer, readable, writable) {
            (Ok(peer), Ok(r), Ok(w)) => {
                let gone = peer == PeerState::Gone;
                Status {
                    readable: r > 0 || gone,
                    writable: w > 0 || gone,
                    hangup: gone,
                    error: false,
                }
            }
            _ => Status {
                readable: true,
                writable: true,
                hangup: false,
                error: true,
            },
        }
    }

    /// Arms a doorbell for `dir`; `true` if progress is possible already.
    pub(crate) fn arm(&self, dir: Direction) -> bool {
        let mut st = self.state.lock();
        let Some(ep) = st.ep.as_mut() else {
            return true;
        };
        let r = match dir {
            Direction::Read => ep.arm_read_wakeup(1),
            Direction::Write => ep.arm_write_wakeup(1),
        };
        self.kick_if_needed(ep);
        !matches!(r, Ok(Readiness::MaySleep))
    }

    /// `mmap(2)` of the shared memory for an exclusive file (see
    /// `Pipe::mmap`); `ENODEV` once the device is gone. Under the state
    /// lock, so a removal either finds the mapping made (and zaps it) or
    /// makes this fail.
    pub(crate) fn mmap(&self, area: &MmapArea<'_>) -> Result {
        let st = self.state.lock();
        match st.mem.as_ref() {
            Some(mem) => mem.0.map_to_user(area),
            None => Err(ENODEV),
        }
    }

    /// Rings ivshmem peer `peer`'s doorbell for a process that runs the
    /// ring itself (the `IVC_IOC_DOORBELL` ioctl). `EOPNOTSUPP` in polled
    /// mode, `ENODEV` once the device is gone. The id is as untrusted as
    /// the one the kernel reads from shared memory and goes to the same
    /// register, which the VMM validates.
    pub(crate) fn ring_for_user(&self, peer: u16) -> Result {
        if !self.irq {
            return Err(EOPNOTSUPP);
        }
        let value = Doorbell { peer, vector: 0 }.value();
        self.regs
            .try_access_with(|r| r.write32(usize::from(ivshmem::REG_DOORBELL), value))
            .unwrap_or(Err(ENODEV))?;
        Stats::inc(&self.stats.doorbells_sent);
        Ok(())
    }

    /// Whether waiters are woken by doorbell interrupts.
    pub(crate) fn uses_interrupts(&self) -> bool {
        self.irq
    }

    /// Heartbeat, handshake progress, and the liveness check: a connected
    /// peer whose heartbeat stalls for `peer_timeout_ms` died without
    /// closing (its VM was killed), so the connection is given up.
    pub(crate) fn tick(&self) {
        let mut st = self.state.lock();
        if st.attach_pending {
            // Readers and writers finish it too; this serves `poll` callers.
            let _ = self.finish_attach(&mut st);
        }
        let State { ep, live, .. } = &mut *st;
        let Some(ep) = ep.as_mut() else { return };
        let _ = ep.heartbeat();
        let now_ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(0);
        if live.check(ep, now_ms, u64::from(self.peer_timeout_ms)) {
            dev_warn!(
                self.dev,
                "{}: peer heartbeat stalled for {} ms; treating the peer as gone\n",
                self.name,
                self.peer_timeout_ms
            );
        }
        self.kick_if_needed(ep);
    }

    /// Logs both rings' indices and wake-up requests as shared memory holds
    /// them now (raw values: this is for a human, not for decisions).
    pub(crate) fn debug_dump(&self) {
        let st = self.state.lock();
        let (Some(ep), Some(mem)) = (st.ep.as_ref(), st.mem.as_ref()) else {
            return;
        };
        let w = |off: usize| mem.load_u32_relaxed(off).unwrap_or(u32::MAX);
        for ring in 0..2u32 {
            let c = layout::ring_ctrl(ring);
            let size = if ring == 0 {
                ep.tx_ring_size()
            } else {
                ep.rx_ring_size()
            };
            dev_warn!(
                self.dev,
                "ivc: {} ring{} (slot {} -> {}): prod={} space_wanted={} space_wake_at={} cons={} data_wanted={} data_wake_at={} (we are slot {}; our tx/rx ring {} bytes)\n",
                self.name,
                ring,
                ring,
                ring ^ 1,
                w(c + layout::RING_PROD),
                w(c + layout::RING_SPACE_WANTED),
                w(c + layout::RING_SPACE_WAKE_AT),
                w(c + layout::RING_CONS),
                w(c + layout::RING_DATA_WANTED),
                w(c + layout::RING_DATA_WAKE_AT),
                ep.slot(),
                size
            );
        }
    }
}
