//! [`MappedEndpoint`]: the channel endpoint (`ivc_abi::Endpoint`, the same
//! code the kernel runs) over memory this process maps, with the file
//! semantics of `/dev/ivcN` (a byte stream, end of file, `EPIPE`, `EIO`)
//! and the kernel's housekeeping done here: heartbeat, peer liveness,
//! doorbells.

use std::io;
use std::time::{Duration, Instant};

use ivc_abi::layout::{peer_entry, NUM_SLOTS, PEER_HEARTBEAT};
use ivc_abi::{
    AttachOptions, ChannelError, Endpoint, Liveness, PeerState, Readiness, SharedMemory,
};

/// How the process rings the peer and sleeps: the device file (ioctl and
/// `poll(2)`), or something else in tests.
pub trait Waker {
    /// Whether the peer is woken by doorbells (`shm-irq`); without, it
    /// polls the ring and [`ring`](Self::ring) is never called.
    fn has_doorbell(&self) -> bool;
    /// Rings the doorbell of the peer with ivshmem id `peer`.
    fn ring(&self, peer: u16) -> io::Result<()>;
    /// Sleeps until a doorbell may have changed the ring, or `timeout`.
    fn sleep(&self, timeout: Duration) -> io::Result<()>;
}

/// How a blocking call waits for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Spin on the ring: no system call at all.
    Spin,
    /// Spin this long, then arm the wake-up flags and sleep in `poll(2)`
    /// until the peer's doorbell (or, polled, the driver's tick).
    Sleep(Duration),
}

/// Which way a waiter waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Data (or end of file) to read.
    Read,
    /// Room to write (or a gone peer).
    Write,
}

/// The errno the device file would return for `e` (docs/driver.md).
pub fn errno(e: ChannelError) -> io::Error {
    let n = match e {
        ChannelError::Corrupted | ChannelError::Reset => libc::EIO,
        ChannelError::NotFormatted => libc::ENODEV,
        ChannelError::Busy => libc::EAGAIN,
        ChannelError::Incompatible => libc::EPROTO,
        ChannelError::InvalidLayout | ChannelError::InvalidSlot => libc::EINVAL,
        ChannelError::NoFreeSlot => libc::EBUSY,
        ChannelError::PeerGone => libc::EPIPE,
        ChannelError::Closed => libc::EBADF,
    };
    io::Error::from_raw_os_error(n)
}

/// Longest sleep in `poll(2)`: the heartbeat and the peer's liveness are
/// looked after at least this often while waiting.
const SLEEP_SLICE: Duration = Duration::from_millis(100);
/// Heartbeat interval (the kernel's poller beats every 100 ms too).
const BEAT_EVERY: Duration = Duration::from_millis(100);
/// Spinning turns of [`MappedEndpoint::wait`] between two looks at the clock.
const SPIN_TURNS_PER_CLOCK: u32 = 64;
/// Data-path calls between two looks at the clock.
const CALLS_PER_CLOCK: u32 = 256;
/// A connected peer whose heartbeat stalls this long is gone (the driver's
/// default `peer_timeout_ms`).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// One side of a channel, run by this process over `M`.
pub struct MappedEndpoint<M: SharedMemory, W: Waker> {
    ep: Endpoint<M>,
    waker: W,
    live: Liveness,
    born: Instant,
    last_beat: Instant,
    calls: u32,
    peer_timeout: Duration,
}

impl<M: SharedMemory + Clone, W: Waker> MappedEndpoint<M, W> {
    /// Joins the channel in `mem` (formatting it if nobody has), publishing
    /// `doorbell_id` for the peer to ring, as the driver's `open` does:
    /// waits up to 100 ms for a side that is formatting right now, and when
    /// both slots look taken takes over one whose heartbeat stands still
    /// for a second (a previous incarnation that died), else `EBUSY`.
    pub fn attach(mem: M, waker: W, doorbell_id: Option<u16>) -> io::Result<Self> {
        let opts = AttachOptions {
            doorbell_id,
            ..AttachOptions::default()
        };
        let ep = attach_retrying(mem, &opts)?;
        let now = Instant::now();
        let mut this = Self {
            ep,
            waker,
            live: Liveness::new(),
            born: now,
            last_beat: now,
            calls: 0,
            peer_timeout: PEER_TIMEOUT,
        };
        let _ = this.ep.peer_state();
        this.kick()?;
        Ok(this)
    }

    /// Gives a connected peer this long without a heartbeat before it
    /// counts as gone (`Duration::ZERO`: never).
    pub fn set_peer_timeout(&mut self, t: Duration) {
        self.peer_timeout = t;
    }

    /// The endpoint itself (its statistics, slot, ring sizes).
    pub fn endpoint(&self) -> &Endpoint<M> {
        &self.ep
    }

    /// The memory (tests use it to play a hostile process).
    pub fn memory(&self) -> &M {
        self.ep.memory()
    }

    /// The connection as seen now.
    pub fn peer_state(&mut self) -> io::Result<PeerState> {
        self.ep.peer_state().map_err(errno)
    }

    /// Rings the peer if a lifecycle change or either direction's data
    /// asks for it (the driver's `kick_if_needed`).
    fn kick(&mut self) -> io::Result<()> {
        // Decided even without doorbells, so pending kicks do not pile up.
        if self.ep.needs_doorbell() && self.waker.has_doorbell() {
            self.ring_peer()?;
        }
        Ok(())
    }

    /// The kernel poller's work, done by the process: our heartbeat, the
    /// handshake, and the peer's liveness; at most every [`BEAT_EVERY`].
    fn housekeeping(&mut self, force: bool) -> io::Result<()> {
        self.calls = self.calls.wrapping_add(1);
        if !force && self.calls % CALLS_PER_CLOCK != 0 {
            return Ok(());
        }
        let now = Instant::now();
        if now.duration_since(self.last_beat) < BEAT_EVERY {
            return Ok(());
        }
        self.last_beat = now;
        let _ = self.ep.heartbeat();
        let now_ms = u64::try_from(now.duration_since(self.born).as_millis()).unwrap_or(u64::MAX);
        let timeout_ms = u64::try_from(self.peer_timeout.as_millis()).unwrap_or(u64::MAX);
        self.live.check(&mut self.ep, now_ms, timeout_ms);
        self.kick()
    }

    /// Non-blocking read, as `read(2)` with `O_NONBLOCK`: `Ok(n > 0)` bytes,
    /// `Ok(0)` end of file (the peer closed and everything it sent was
    /// read), `WouldBlock` when there is nothing yet, `EIO` once the shared
    /// memory broke the protocol.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.housekeeping(false)?;
        let r = self.ep.read(buf);
        if self.waker.has_doorbell() && self.ep.needs_doorbell_after_read() {
            self.ring_peer()?;
        }
        match r {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(ChannelError::PeerGone) => Ok(0),
            Err(e) => Err(errno(e)),
        }
    }

    /// Non-blocking write, as `write(2)` with `O_NONBLOCK`: `Ok(n > 0)`
    /// bytes taken, `WouldBlock` when the ring is full or no peer is
    /// connected yet, `EPIPE` once the peer left, `EIO` as for reads.
    pub fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.housekeeping(false)?;
        let r = self.ep.write(data);
        if self.waker.has_doorbell() && self.ep.needs_doorbell_after_write() {
            self.ring_peer()?;
        }
        match r {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(e) => Err(errno(e)),
        }
    }

    fn ring_peer(&mut self) -> io::Result<()> {
        if let Ok(Some(peer)) = self.ep.peer_doorbell_id() {
            self.waker.ring(peer)?;
        }
        Ok(())
    }

    /// Blocking read: at least one byte, or `Ok(0)` at end of file.
    /// Spinning retries the read itself: one look at the ring per turn.
    pub fn read(&mut self, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
        loop {
            match self.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match wait {
                    Wait::Spin => std::hint::spin_loop(),
                    Wait::Sleep(_) => self.wait(Direction::Read, wait)?,
                },
                r => return r,
            }
        }
    }

    /// Blocking write of all of `data`.
    pub fn write_all(&mut self, mut data: &[u8], wait: Wait) -> io::Result<()> {
        while !data.is_empty() {
            match self.try_write(data) {
                Ok(n) => data = data.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match wait {
                    Wait::Spin => std::hint::spin_loop(),
                    Wait::Sleep(_) => self.wait(Direction::Write, wait)?,
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether a call in `dir` would not block (an error counts as ready:
    /// the call reports it).
    fn ready(&mut self, dir: Direction) -> bool {
        let gone = matches!(self.ep.peer_state(), Ok(PeerState::Gone) | Err(_));
        gone || match dir {
            Direction::Read => self.ep.readable_bytes().map_or(true, |n| n > 0),
            Direction::Write => self.ep.writable_bytes().map_or(true, |n| n > 0),
        }
    }

    /// Waits until a call in `dir` may make progress. `Wait::Spin` never
    /// makes a system call (except a doorbell the peer asked for);
    /// `Wait::Sleep` spins for its duration, then arms the wake-up flag and
    /// sleeps in `poll(2)` on the device, in slices of at most 100 ms that
    /// keep the heartbeat going.
    pub fn wait(&mut self, dir: Direction, how: Wait) -> io::Result<()> {
        let start = Instant::now();
        let mut spinning = match how {
            Wait::Spin => None,
            Wait::Sleep(d) => Some(d).filter(|d| !d.is_zero()),
        };
        let mut turns = 0u32;
        loop {
            if self.ready(dir) {
                return Ok(());
            }
            self.housekeeping(false)?;
            if matches!(how, Wait::Spin) {
                std::hint::spin_loop();
                continue;
            }
            if let Some(d) = spinning {
                // The clock only every few turns: in a guest whose
                // clocksource has no vDSO (jiffies under TCG) every
                // reading is a system call.
                turns = turns.wrapping_add(1);
                if turns % SPIN_TURNS_PER_CLOCK != 0 || start.elapsed() < d {
                    std::hint::spin_loop();
                    continue;
                }
                spinning = None;
            }
            let armed = match dir {
                Direction::Read => self.ep.arm_read_wakeup(1),
                Direction::Write => self.ep.arm_write_wakeup(1),
            };
            self.kick()?;
            match armed {
                Ok(Readiness::MaySleep) => {}
                // Ready, or an error the next call reports.
                _ => return Ok(()),
            }
            self.waker.sleep(SLEEP_SLICE)?;
            self.housekeeping(true)?;
        }
    }
}

impl<M: SharedMemory, W: Waker> Drop for MappedEndpoint<M, W> {
    /// Leaves the channel as the driver's last close does: the peer reads
    /// what we sent, then end of file (and is rung to notice at once).
    fn drop(&mut self) {
        let peer = self.ep.peer_doorbell_id().ok().flatten();
        self.ep.close();
        if self.waker.has_doorbell() && self.ep.needs_doorbell() {
            if let Some(peer) = peer {
                let _ = self.waker.ring(peer);
            }
        }
    }
}

/// `attach_any`, retried as the driver retries: a format in progress for up
/// to 100 ms, and both slots taken: take over one whose heartbeat does not
/// move for a second. (`attach_any` claims nothing when it fails, so it can
/// be retried with a clone of the same memory handle.)
fn attach_retrying<M: SharedMemory + Clone>(
    mem: M,
    opts: &AttachOptions,
) -> io::Result<Endpoint<M>> {
    let mut tries = 0;
    loop {
        match Endpoint::attach_any(mem.clone(), opts) {
            Ok(ep) => return Ok(ep),
            Err(ChannelError::Busy) if tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(ChannelError::NoFreeSlot) => return take_over_stale_slot(mem, opts),
            Err(e) => return Err(errno(e)),
        }
    }
}

fn take_over_stale_slot<M: SharedMemory>(mem: M, opts: &AttachOptions) -> io::Result<Endpoint<M>> {
    let beat = |m: &M, slot: u32| m.load_u32_relaxed(peer_entry(slot) + PEER_HEARTBEAT).ok();
    let before: Vec<Option<u32>> = (0..NUM_SLOTS).map(|s| beat(&mem, s)).collect();
    std::thread::sleep(Duration::from_secs(1));
    for slot in 0..NUM_SLOTS {
        let was = before.get(slot as usize).copied().flatten();
        if was.is_some() && beat(&mem, slot) == was {
            return Endpoint::attach_with(mem, slot, opts).map_err(errno);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EBUSY))
}
