//! The register model of `ivc-pio` (map: `ivc_abi::pio`), over a
//! channel [`Endpoint`] this VMM attaches to the shared memory.
//!
//! Pure logic without KVM, unit-tested against a second endpoint. The
//! endpoint never blocks, so every access is served inline in the vCPU
//! exit. Counts come from the endpoint at the moment of the access:
//! `TX_FREE` can only grow until this guest writes, `RX_AVAIL` only grow
//! until it reads, so a guest that moves at most what it was told never
//! loses a byte; bytes beyond that are dropped (writes) or read as 0xff and
//! set `STATUS_ERROR`, as the map says.

mod descriptor;

use std::time::Duration;

use self::descriptor::Descriptors;
pub use self::descriptor::GuestRam;

use ivc_abi::pio::{
    CONTROL_CLEAR_ERROR, CONTROL_CLOSE, CONTROL_OPEN, CONTROL_RESUME, MAGIC, REG_CONTROL, REG_DATA,
    REG_ID, REG_RX_AVAIL, REG_STATUS, REG_TX_FREE, REG_VERSION, STATUS_CONNECTED, STATUS_ERROR,
    STATUS_PEER_GONE, STATUS_RX_READY, STATUS_TX_SPACE, VERSION,
};
use ivc_abi::{AttachOptions, ChannelError, Endpoint, Liveness, PeerState, SharedMemory};

/// What went wrong in one access (the device logs it; the model has set
/// `STATUS_ERROR` already).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PioFault {
    #[error(
        "{len}-byte {} at offset {offset:#x}: no such register or width",
        direction(.write)
    )]
    BadAccess {
        offset: u64,
        len: usize,
        write: bool,
    },
    #[error("DATA read of {wanted} bytes, {got} available (rest read as 0xff)")]
    ShortRead { wanted: usize, got: usize },
    #[error("DATA write of {wanted} bytes, {took} accepted (rest dropped)")]
    ShortWrite { wanted: usize, took: usize },
    #[error("channel: {0}")]
    Channel(ChannelError),
    #[error("CONTROL write {0:#x} has unknown bits")]
    BadControl(u32),
}

/// The word for an access's direction in a [`PioFault::BadAccess`] message.
fn direction(write: &bool) -> &'static str {
    if *write {
        "write"
    } else {
        "read"
    }
}

/// How often a concurrent format (`Busy`) is retried before giving up.
const BUSY_RETRIES: u32 = 200;

/// How long a connected peer's heartbeat may stand still before the peer
/// is taken for dead: `ivc.ko`'s default `peer_timeout_ms`.
pub const PEER_TIMEOUT_MS: u64 = 5000;

/// What the guest did through the device: VM exits (one per register
/// access; a string instruction's exit carries many elements) and the bytes
/// each way. ivc-vmm logs it when the VM stops; the benchmarks read bytes
/// per exit from it.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Traffic {
    /// Every access to the BAR.
    pub exits: u64,
    /// Accesses to `DATA` (string or not).
    pub data_exits: u64,
    /// `TX_GO`/`RX_GO` reads.
    pub go_exits: u64,
    /// Bytes the guest sent (through `DATA` or a descriptor).
    pub bytes_sent: u64,
    /// Bytes the guest received.
    pub bytes_received: u64,
}

impl std::fmt::Display for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let moved = self.bytes_sent + self.bytes_received;
        let per_exit = if self.exits > 0 {
            moved as f64 / self.exits as f64
        } else {
            0.0
        };
        write!(
            f,
            "exits={} data_exits={} go_exits={} sent={} received={} bytes_per_exit={per_exit:.1}",
            self.exits, self.data_exits, self.go_exits, self.bytes_sent, self.bytes_received
        )
    }
}

pub struct PioRegisters<M: SharedMemory + Copy> {
    mem: M,
    doorbell_id: Option<u16>,
    ep: Option<Endpoint<M>>,
    error: bool,
    peer_gone: bool,
    /// What the guest was last told it may write (`TX_FREE`; `STATUS` does
    /// not grant), less what it wrote since. A write within the grant that the endpoint refuses
    /// (the peer vanished meanwhile) is dropped without `STATUS_ERROR`: the
    /// guest did nothing wrong and learns of it from `STATUS_PEER_GONE`.
    tx_granted: u32,
    /// Bytes dropped because the connection ended under a granted write.
    dropped: u64,
    /// The peer's heartbeat as the last tick saw it.
    liveness: Liveness,
    /// Descriptor mode's registers.
    desc: Descriptors,
    /// Guest RAM for descriptor mode (without it, `CAPS` offers nothing).
    ram: Option<Box<dyn GuestRam>>,
    traffic: Traffic,
}

fn le32(data: &[u8]) -> Option<u32> {
    let b: [u8; 4] = data.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

impl<M: SharedMemory + Copy> PioRegisters<M> {
    /// `doorbell_id`: our rendezvous id, published in the channel's peer
    /// table so that the peer's VMM can mark us absent when we vanish.
    pub fn new(mem: M, doorbell_id: Option<u16>) -> Self {
        PioRegisters {
            mem,
            doorbell_id,
            ep: None,
            error: false,
            peer_gone: false,
            tx_granted: 0,
            dropped: 0,
            liveness: Liveness::new(),
            desc: Descriptors::default(),
            ram: None,
            traffic: Traffic::default(),
        }
    }

    /// Gives descriptor mode its access to guest RAM (and offers it in
    /// `CAPS`).
    pub fn set_guest_ram(&mut self, ram: Box<dyn GuestRam>) {
        self.ram = Some(ram);
    }

    /// `TX_GO`/`RX_GO`: runs one descriptor (see [`descriptor`]); the
    /// value the guest's `IN` returns, and the fault to report if the
    /// channel broke under it (`STATUS_ERROR` is latched then).
    fn descriptor_go(&mut self, dir: descriptor::Direction) -> (u32, Option<PioFault>) {
        self.traffic.go_exits += 1;
        // The end of the connection was taken from the endpoint and is now
        // STATUS's to report. Until a new peer connects, a read moves
        // nothing and must not reach the endpoint: its read is a "user came
        // back" call, which would let it take a new peer while the guest's
        // user, not yet told of the end, is about to see end of file and
        // close (that peer would then see its connection end before it sent
        // a byte). String I/O never gets there: the driver touches DATA
        // only when RX_AVAIL says so.
        let rx_ended = dir == descriptor::Direction::Rx && self.peer_gone && !self.refresh().2;
        match self
            .desc
            .run(dir, self.ep.as_mut(), self.ram.as_deref(), rx_ended)
        {
            Ok(v) => {
                if v & ivc_abi::pio::DESC_ERROR == 0 {
                    match dir {
                        descriptor::Direction::Tx => self.traffic.bytes_sent += u64::from(v),
                        descriptor::Direction::Rx => self.traffic.bytes_received += u64::from(v),
                    }
                }
                (v, None)
            }
            // The end of the connection. A read took it from the endpoint:
            // STATUS reports it from now on, as after DATA. A write that
            // met it first left the reader's end of file owed in the
            // endpoint, where STATUS or the next read takes it.
            Err((v, ChannelError::PeerGone)) => {
                if dir == descriptor::Direction::Rx {
                    self.peer_gone = true;
                }
                (v, None)
            }
            Err((v, e)) => {
                self.error = true;
                (v, Some(PioFault::Channel(e)))
            }
        }
    }

    /// One heartbeat tick at `now_ms` (milliseconds on a monotonic clock):
    /// bumps our heartbeat in the channel's peer table while joined (the
    /// peer may use it to notice that this VMM stopped running), and checks
    /// the peer's with [`Liveness`]: a connected peer whose heartbeat has
    /// stood still for more than [`PEER_TIMEOUT_MS`] died without closing
    /// (a killed VM, or a VMM without a rendezvous server to announce its
    /// exit), and its slot is marked absent, so the guest drains what it
    /// sent and then sees `STATUS_PEER_GONE`. Returns `true` when it did
    /// that.
    pub fn heartbeat(&mut self, now_ms: u64) -> bool {
        let Some(ep) = &mut self.ep else {
            return false;
        };
        // A broken or closed endpoint refuses; nothing to do then.
        let _ = ep.heartbeat();
        let gone = self.liveness.check(ep, now_ms, PEER_TIMEOUT_MS);
        if gone {
            log::warn!(
                "ivc-pio: the peer's heartbeat stood still for over {PEER_TIMEOUT_MS} ms; marking it absent"
            );
        }
        gone
    }

    /// Bytes dropped because the peer went away in the middle of a write
    /// the guest was entitled to make.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn endpoint(&self) -> Option<&Endpoint<M>> {
        self.ep.as_ref()
    }

    fn fail<T>(&mut self, f: PioFault) -> Result<T, PioFault> {
        self.error = true;
        Err(f)
    }

    /// Joins the channel (CONTROL_OPEN): the first free slot, formatting
    /// the region if nobody has.
    fn open(&mut self) -> Result<(), PioFault> {
        if self.ep.is_some() {
            return Ok(());
        }
        let opts = AttachOptions {
            doorbell_id: self.doorbell_id,
            ..AttachOptions::default()
        };
        let mut tries = 0;
        let r = loop {
            match Endpoint::attach_any(self.mem, &opts) {
                // Another side is formatting right now: it takes microseconds.
                Err(ChannelError::Busy) if tries < BUSY_RETRIES => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                r => break r,
            }
        };
        match r {
            Ok(ep) => {
                self.ep = Some(ep);
                self.peer_gone = false;
                Ok(())
            }
            Err(e) => self.fail(PioFault::Channel(e)),
        }
    }

    fn close(&mut self) {
        if let Some(mut ep) = self.ep.take() {
            ep.close();
        }
        self.peer_gone = false;
    }

    /// Current (rx_avail, tx_free, connected); advances the handshake and
    /// consumes the end of a connection once its data is drained.
    fn refresh(&mut self) -> (u32, u32, bool) {
        let Some(ep) = &mut self.ep else {
            return (0, 0, false);
        };
        let r = (|| -> Result<(u32, u32, bool), ChannelError> {
            let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            match ep.peer_state()? {
                PeerState::Connected => {
                    let rx = clamp(ep.readable_bytes()?);
                    // The guest's string writes arrive one element per
                    // exit, each a record of its own in the ring (layout
                    // version 2): grant what fits in 1-byte records.
                    let tx = clamp(ep.writable_bytes_in_pieces(1)?);
                    Ok((rx, tx, true))
                }
                PeerState::Gone => {
                    let rx = clamp(ep.readable_bytes()?);
                    Ok((rx, 0, false))
                }
                PeerState::Waiting | PeerState::Connecting => Ok((0, 0, false)),
            }
        })();
        match r {
            Ok((rx, tx, connected)) => {
                if connected {
                    self.peer_gone = false;
                } else if rx == 0
                    && !self.peer_gone
                    && matches!(ep.peer_state(), Ok(PeerState::Gone))
                {
                    // Drained: take the end from the endpoint once (it then
                    // holds off a new peer until the guest's user, having
                    // read the end of file, comes back: CONTROL_RESUME) and
                    // report it in STATUS until a new peer connects.
                    let mut b = [0u8; 1];
                    let _ = ep.read(&mut b);
                    self.peer_gone = true;
                }
                (rx, tx, connected)
            }
            Err(_) => {
                self.error = true;
                (0, 0, false)
            }
        }
    }

    fn status(&mut self) -> u32 {
        // STATUS does not grant: the guest driver's poller reads it at any
        // time, also in the middle of a `rep outs` the writer sized from
        // TX_FREE (the writer can be preempted between two elements), and a
        // grant shrunk there would turn the rest of that write into the
        // guest's error.
        let (rx, tx, connected) = self.refresh();
        let mut s = 0;
        if rx > 0 {
            s |= STATUS_RX_READY;
        }
        if tx > 0 {
            s |= STATUS_TX_SPACE;
        }
        if connected {
            s |= STATUS_CONNECTED;
        }
        if self.peer_gone && rx == 0 {
            s |= STATUS_PEER_GONE;
        }
        if self.error || self.ep.as_ref().is_some_and(|e| e.broken().is_some()) {
            s |= STATUS_ERROR;
        }
        s
    }

    /// What the guest did so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// A guest `IN` (any width, or a string of `data.len()` bytes).
    pub fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), PioFault> {
        self.traffic.exits += 1;
        let len = data.len();
        let bad = PioFault::BadAccess {
            offset,
            len,
            write: false,
        };
        if offset == u64::from(REG_DATA) {
            self.traffic.data_exits += 1;
            let r = self.read_data(data);
            if r.is_ok() {
                self.traffic.bytes_received += len as u64;
            }
            return r;
        }
        if len != 4 {
            data.fill(0xff);
            return self.fail(bad);
        }
        let v = match u16::try_from(offset) {
            Ok(REG_STATUS) => Some(self.status()),
            Ok(REG_RX_AVAIL) => Some(self.refresh().0),
            Ok(REG_TX_FREE) => {
                self.tx_granted = self.refresh().1;
                Some(self.tx_granted)
            }
            Ok(REG_ID) => Some(MAGIC),
            Ok(REG_VERSION) => Some(VERSION),
            Ok(reg) => match Descriptors::go(reg) {
                Some(dir) => {
                    let (v, fault) = self.descriptor_go(dir);
                    data.copy_from_slice(&v.to_le_bytes());
                    return fault.map_or(Ok(()), Err);
                }
                None => self.desc.read(reg, self.ram.is_some()),
            },
            Err(_) => None,
        };
        let Some(v) = v else {
            data.fill(0xff);
            return self.fail(bad);
        };
        data.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn read_data(&mut self, data: &mut [u8]) -> Result<(), PioFault> {
        let wanted = data.len();
        let mut got = 0;
        let mut err = None;
        if let Some(ep) = &mut self.ep {
            while got < wanted {
                // `got <= wanted` holds (the endpoint returns at most what
                // fits); `get_mut` keeps even a broken promise panic-free.
                let Some(rest) = data.get_mut(got..) else {
                    break;
                };
                match ep.read(rest) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(ChannelError::PeerGone) => {
                        self.peer_gone = true;
                        break;
                    }
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(rest) = data.get_mut(got..) {
            rest.fill(0xff);
        }
        if let Some(e) = err {
            return self.fail(PioFault::Channel(e));
        }
        if got < wanted {
            return self.fail(PioFault::ShortRead { wanted, got });
        }
        Ok(())
    }

    fn write_data(&mut self, data: &[u8]) -> Result<(), PioFault> {
        let wanted = data.len();
        let mut took = 0;
        let mut err = None;
        if let Some(ep) = &mut self.ep {
            while took < wanted {
                let Some(rest) = data.get(took..) else { break };
                match ep.write(rest) {
                    Ok(0) => break,
                    Ok(n) => took += n,
                    Err(ChannelError::PeerGone) => break,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
        }
        let granted = self.tx_granted as usize;
        // The guest uses up its grant whether or not the bytes got through
        // (a string write arrives as many exits, all within one grant).
        self.tx_granted = self
            .tx_granted
            .saturating_sub(u32::try_from(wanted).unwrap_or(u32::MAX));
        if let Some(e) = err {
            return self.fail(PioFault::Channel(e));
        }
        if took < wanted {
            if wanted <= granted {
                // The connection ended under a write the guest was allowed
                // to make: not its fault; PEER_GONE tells it.
                self.dropped += (wanted - took) as u64;
                return Ok(());
            }
            return self.fail(PioFault::ShortWrite { wanted, took });
        }
        Ok(())
    }

    /// A guest `OUT` (any width, or a string).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), PioFault> {
        self.traffic.exits += 1;
        if offset == u64::from(REG_DATA) {
            self.traffic.data_exits += 1;
            let r = self.write_data(data);
            if r.is_ok() {
                self.traffic.bytes_sent += data.len() as u64;
            }
            return r;
        }
        let bad = PioFault::BadAccess {
            offset,
            len: data.len(),
            write: true,
        };
        match (u16::try_from(offset), le32(data)) {
            (Ok(REG_CONTROL), Some(v)) => self.control(v),
            (Ok(reg), Some(v)) if self.desc.write(reg, v) => Ok(()),
            _ => self.fail(bad),
        }
    }

    fn control(&mut self, v: u32) -> Result<(), PioFault> {
        let known = CONTROL_OPEN | CONTROL_CLOSE | CONTROL_CLEAR_ERROR | CONTROL_RESUME;
        if v & CONTROL_CLEAR_ERROR != 0 {
            self.error = false;
            // A broken endpoint stays broken: join again.
            if self.ep.as_ref().is_some_and(|e| e.broken().is_some()) {
                self.ep = None;
                self.open()?;
            }
        }
        if v & CONTROL_CLOSE != 0 {
            self.close();
        }
        if v & CONTROL_OPEN != 0 {
            self.open()?;
        }
        if v & CONTROL_RESUME != 0 {
            if let Some(ep) = &mut self.ep {
                ep.resume();
            }
        }
        if v & !known != 0 {
            return self.fail(PioFault::BadControl(v));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU32;
    use ivc_abi::layout::{ring_ctrl, RING_PROD};
    use ivc_abi::AtomicMem;

    fn words(bytes: usize) -> Vec<AtomicU32> {
        (0..bytes / 4).map(|_| AtomicU32::new(0)).collect()
    }

    fn rd32<M: SharedMemory + Copy>(r: &mut PioRegisters<M>, reg: u16) -> u32 {
        let mut b = [0u8; 4];
        r.read(u64::from(reg), &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn open<M: SharedMemory + Copy>(r: &mut PioRegisters<M>) {
        r.write(
            u64::from(REG_CONTROL),
            &(CONTROL_CLEAR_ERROR | CONTROL_OPEN).to_le_bytes(),
        )
        .unwrap();
    }

    fn close<M: SharedMemory + Copy>(r: &mut PioRegisters<M>) {
        r.write(u64::from(REG_CONTROL), &CONTROL_CLOSE.to_le_bytes())
            .unwrap();
    }

    /// Lets the two endpoints finish the handshake (each status read
    /// advances it).
    fn settle<M: SharedMemory + Copy>(a: &mut PioRegisters<M>, b: &mut PioRegisters<M>) {
        for _ in 0..3 {
            let _ = rd32(a, REG_STATUS);
            let _ = rd32(b, REG_STATUS);
        }
    }

    /// Two devices over `mem`, both opened and connected.
    fn connected_pair<M: SharedMemory + Copy>(mem: M) -> (PioRegisters<M>, PioRegisters<M>) {
        let mut a = PioRegisters::new(mem, Some(1));
        let mut b = PioRegisters::new(mem, Some(2));
        open(&mut a);
        open(&mut b);
        settle(&mut a, &mut b);
        (a, b)
    }

    #[test]
    fn identity_and_connection() {
        let w = words(64 << 10);
        let mem = AtomicMem::from_words(&w);
        let mut a = PioRegisters::new(mem, Some(1));
        assert_eq!(rd32(&mut a, REG_ID), MAGIC);
        assert_eq!(rd32(&mut a, REG_VERSION), VERSION);
        assert_eq!(rd32(&mut a, REG_STATUS), 0, "not opened");
        open(&mut a);
        let mut b = PioRegisters::new(mem, Some(2));
        open(&mut b);
        let _ = rd32(&mut a, REG_STATUS);
        let _ = rd32(&mut b, REG_STATUS);
        let st = rd32(&mut a, REG_STATUS);
        assert_eq!(st, STATUS_CONNECTED | STATUS_TX_SPACE, "{st:#x}");
        let free = rd32(&mut a, REG_TX_FREE);
        // 16 KiB of ring in 1-byte records of 16 ring bytes, and the next
        // record's header.
        assert_eq!(free, ((16 << 10) - 8) / 16);
        let hb = b.endpoint().unwrap().peer_heartbeat().unwrap();
        a.heartbeat(0);
        assert_eq!(
            b.endpoint().unwrap().peer_heartbeat().unwrap(),
            hb.wrapping_add(1)
        );

        // Byte, word, dword and string writes arrive in order.
        a.write(0, &[1]).unwrap();
        a.write(0, &[2, 3]).unwrap();
        a.write(0, &[4, 5, 6, 7]).unwrap();
        let big: Vec<u8> = (0..3000u32).map(|i| ((i * 7) & 0xff) as u8).collect();
        a.write(0, &big).unwrap();
        assert_eq!(rd32(&mut b, REG_RX_AVAIL), 3007);
        assert_ne!(rd32(&mut b, REG_STATUS) & STATUS_RX_READY, 0);
        let mut got = vec![0u8; 7];
        b.read(0, &mut got[..1]).unwrap();
        b.read(0, &mut got[1..3]).unwrap();
        b.read(0, &mut got[3..7]).unwrap();
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7]);
        let mut rest = vec![0u8; 3000];
        b.read(0, &mut rest).unwrap();
        assert_eq!(rest, big);
        assert_eq!(rd32(&mut b, REG_STATUS) & STATUS_ERROR, 0);

        // Back-pressure: more than TX_FREE is an error, the excess dropped.
        // (Each write is a record with a header: a grant is what fits in
        // 1-byte writes, so filling the ring takes a few grants.)
        let mut filled = 0;
        loop {
            let free = rd32(&mut a, REG_TX_FREE) as usize;
            if free == 0 {
                break;
            }
            a.write(0, &vec![9u8; free]).unwrap();
            filled += free;
        }
        assert!(filled > 8 << 10, "{filled}");
        assert_eq!(rd32(&mut a, REG_STATUS) & STATUS_TX_SPACE, 0);
        assert!(matches!(
            a.write(0, &[1, 2]),
            Err(PioFault::ShortWrite { took: 0, .. })
        ));
        assert_ne!(rd32(&mut a, REG_STATUS) & STATUS_ERROR, 0);
        a.write(u64::from(REG_CONTROL), &CONTROL_CLEAR_ERROR.to_le_bytes())
            .unwrap();
        assert_eq!(rd32(&mut a, REG_STATUS) & STATUS_ERROR, 0);
        // Everything arrives; then reading more than RX_AVAIL (nothing):
        // 0xff and an error.
        let mut drained = 0;
        loop {
            let avail = rd32(&mut b, REG_RX_AVAIL) as usize;
            if avail == 0 {
                break;
            }
            let mut buf = vec![0u8; avail];
            b.read(0, &mut buf).unwrap();
            assert!(buf.iter().all(|&x| x == 9));
            drained += avail;
        }
        assert_eq!(drained, filled);
        let mut buf = vec![0u8; 5];
        assert!(b.read(0, &mut buf).is_err());
        assert!(buf.iter().all(|&x| x == 0xff));

        // Close: the peer drains, then sees PEER_GONE; writes fail.
        a.write(0, b"bye").unwrap();
        close(&mut a);
        let st = rd32(&mut b, REG_STATUS);
        assert_eq!(
            st & (STATUS_PEER_GONE | STATUS_CONNECTED),
            0,
            "data left: {st:#x}"
        );
        assert_eq!(rd32(&mut b, REG_RX_AVAIL), 3);
        let mut bye = [0u8; 3];
        b.read(0, &mut bye).unwrap();
        assert_eq!(&bye, b"bye");
        let st = rd32(&mut b, REG_STATUS);
        assert_ne!(st & STATUS_PEER_GONE, 0, "{st:#x}");
        assert_eq!(rd32(&mut b, REG_TX_FREE), 0);

        // A new incarnation of the peer appears. B's user has not come back
        // since the end of file (it may be about to close): B holds off.
        open(&mut a);
        settle(&mut a, &mut b);
        let st = rd32(&mut b, REG_STATUS);
        assert_eq!(
            st & (STATUS_PEER_GONE | STATUS_CONNECTED),
            STATUS_PEER_GONE,
            "held: {st:#x}"
        );
        assert_eq!(rd32(&mut a, REG_TX_FREE), 0, "the new peer waits");
        // B's user comes back: they connect.
        b.write(u64::from(REG_CONTROL), &CONTROL_RESUME.to_le_bytes())
            .unwrap();
        settle(&mut a, &mut b);
        let st = rd32(&mut b, REG_STATUS);
        assert_eq!(
            st & (STATUS_PEER_GONE | STATUS_CONNECTED),
            STATUS_CONNECTED,
            "{st:#x}"
        );
    }

    /// One descriptor of `len` bytes at `buf` for `dir`, kept at `at` in
    /// `ram`; returns the `GO` value.
    fn go<M: SharedMemory + Copy>(
        r: &mut PioRegisters<M>,
        ram: &super::descriptor::test_ram::FakeRam,
        tx: bool,
        buf: u64,
        len: u32,
    ) -> u32 {
        use ivc_abi::pio::{
            Desc, REG_RX_DESC_HI, REG_RX_DESC_LO, REG_RX_GO, REG_TX_DESC_HI, REG_TX_DESC_LO,
            REG_TX_GO,
        };
        let (at, lo, hi, go) = if tx {
            (0x1000u32, REG_TX_DESC_LO, REG_TX_DESC_HI, REG_TX_GO)
        } else {
            (0x1010u32, REG_RX_DESC_LO, REG_RX_DESC_HI, REG_RX_GO)
        };
        assert!(ram.write(u64::from(at), &Desc::encode(buf, len)));
        r.write(u64::from(lo), &at.to_le_bytes()).unwrap();
        r.write(u64::from(hi), &0u32.to_le_bytes()).unwrap();
        rd32(r, go)
    }

    type Ram = std::sync::Arc<super::descriptor::test_ram::FakeRam>;

    /// Two connected devices over `mem`, each with `ram_bytes` of guest
    /// RAM at 0x1000 for descriptor mode.
    fn desc_pair(mem: AtomicMem<'_>, ram_bytes: usize) -> [(PioRegisters<AtomicMem<'_>>, Ram); 2] {
        let (a, b) = connected_pair(mem);
        [a, b].map(|mut r| {
            let ram = Ram::new(super::descriptor::test_ram::FakeRam::new(0x1000, ram_bytes));
            r.set_guest_ram(Box::new(ram.clone()));
            (r, ram)
        })
    }

    /// The interleaving that failed in CI (tier 4, pio descriptor mode,
    /// transfer A->B then B->A): B read everything A sent, its poller took
    /// the end of the connection when A closed and reopened at once, and
    /// B's reader, still in the same `read(2)`, issued one more `RX_GO`.
    /// That read used to reach the endpoint as if B's user had come back,
    /// so B took A's new incarnation as its peer while its user saw end of
    /// file and closed: A then read end of file before B's next incarnation
    /// sent a byte.
    #[test]
    fn a_descriptor_read_after_the_end_keeps_the_new_peer_waiting() {
        use super::descriptor::GuestRam;
        let w = words(64 << 10);
        let [(mut a, ram_a), (mut b, ram_b)] = desc_pair(AtomicMem::from_words(&w), 0x10000);
        assert!(ram_a.write(0x2000, &[7u8; 100]));
        assert_eq!(go(&mut a, &ram_a, true, 0x2000, 100), 100);
        assert_eq!(go(&mut b, &ram_b, false, 0x4000, 4096), 100);
        assert_eq!(go(&mut b, &ram_b, false, 0x4000, 4096), 0, "empty");
        // A's user closes, and a new one opens straight away.
        close(&mut a);
        open(&mut a);
        // B's poller sees the end; B's reader tries once more.
        assert_ne!(rd32(&mut b, REG_STATUS) & STATUS_PEER_GONE, 0);
        assert_eq!(go(&mut b, &ram_b, false, 0x4000, 4096), 0, "after the end");
        settle(&mut a, &mut b);
        let st = rd32(&mut b, REG_STATUS);
        assert_eq!(
            st & (STATUS_PEER_GONE | STATUS_CONNECTED),
            STATUS_PEER_GONE,
            "B is held: {st:#x}"
        );
        // B's user read end of file and closes; A's new incarnation must
        // still be waiting, not at the end of a connection it never had.
        close(&mut b);
        let st = rd32(&mut a, REG_STATUS);
        assert_eq!(st & (STATUS_PEER_GONE | STATUS_CONNECTED), 0, "{st:#x}");
        // B's next incarnation connects and what it sends arrives.
        open(&mut b);
        settle(&mut a, &mut b);
        assert!(ram_b.write(0x2000, &[9u8; 50]));
        assert_eq!(go(&mut b, &ram_b, true, 0x2000, 50), 50);
        assert_eq!(go(&mut a, &ram_a, false, 0x4000, 4096), 50);
        let mut got = [0u8; 50];
        assert!(ram_a.read(0x4000, &mut got));
        assert_eq!(got, [9u8; 50]);
    }

    /// A descriptor read that fills the device's bounce buffer exactly and
    /// meets the end of the connection right after it reports the data;
    /// the next `RX_GO` reports the end.
    #[test]
    fn the_end_after_a_full_bounce_buffer_comes_with_the_next_read() {
        use ivc_abi::pio::{DESC_ERROR, DESC_ERR_PEER_GONE};
        let w = words(1 << 20);
        let [(mut a, ram_a), (mut b, ram_b)] = desc_pair(AtomicMem::from_words(&w), 0x40000);
        let n = 64 << 10;
        assert_eq!(go(&mut a, &ram_a, true, 0x2000, n), n);
        close(&mut a);
        assert_eq!(go(&mut b, &ram_b, false, 0x2000, 2 * n), n);
        assert_eq!(
            go(&mut b, &ram_b, false, 0x2000, 2 * n),
            DESC_ERROR | DESC_ERR_PEER_GONE
        );
        assert_ne!(rd32(&mut b, REG_STATUS) & STATUS_PEER_GONE, 0);
    }

    #[test]
    fn peer_gone_during_a_granted_write_is_not_an_error() {
        let w = words(64 << 10);
        let mem = AtomicMem::from_words(&w);
        let (mut a, b) = connected_pair(mem);
        assert!(rd32(&mut a, REG_TX_FREE) > 100);
        a.write(0, &[1; 8]).unwrap();
        // The peer's VMM dies; ours marks it absent (what the peer watcher
        // does on the server's leave announcement).
        let slot_b = b.endpoint().unwrap().slot();
        ivc_abi::mark_absent(&mem, slot_b).unwrap();
        a.write(0, &[2; 8]).unwrap();
        a.write(0, &[2; 4]).unwrap();
        assert_eq!(a.dropped(), 12);
        let st = rd32(&mut a, REG_STATUS);
        assert_eq!(
            st & (STATUS_ERROR | STATUS_PEER_GONE),
            STATUS_PEER_GONE,
            "{st:#x}"
        );
        // Beyond the grant (TX_FREE now says 0) it is the guest's error.
        assert_eq!(rd32(&mut a, REG_TX_FREE), 0);
        assert!(a.write(0, &[3; 4]).is_err());
        assert_ne!(rd32(&mut a, REG_STATUS) & STATUS_ERROR, 0);
    }

    /// The guest driver's poller reads STATUS whenever it runs, also while
    /// a writer is preempted in the middle of a `rep outsl` it sized from
    /// TX_FREE. If the connection ended meanwhile, the rest of that write
    /// is still within its grant: dropped, PEER_GONE, no ERROR (so `EPIPE`,
    /// not `EIO`). Seen in a Linux guest under nested KVM, where STATUS used
    /// to reset the grant: the writer got `EIO` at offset 8192.
    #[test]
    fn a_status_read_in_the_middle_of_a_granted_write_keeps_the_grant() {
        let w = words(64 << 10);
        let mem = AtomicMem::from_words(&w);
        let (mut a, b) = connected_pair(mem);
        let grant = rd32(&mut a, REG_TX_FREE);
        assert!(grant > 100);
        a.write(0, &[1; 4]).unwrap();
        ivc_abi::mark_absent(&mem, b.endpoint().unwrap().slot()).unwrap();
        // The poller looks; then the writer's string write goes on.
        assert_ne!(rd32(&mut a, REG_STATUS) & STATUS_PEER_GONE, 0);
        for _ in 0..10 {
            a.write(0, &[2; 4]).unwrap();
        }
        assert_eq!(a.dropped(), 40);
        let st = rd32(&mut a, REG_STATUS);
        assert_eq!(
            st & (STATUS_ERROR | STATUS_PEER_GONE),
            STATUS_PEER_GONE,
            "{st:#x}"
        );
    }

    #[test]
    fn a_peer_whose_heartbeat_stalls_is_taken_for_dead() {
        let w = words(64 << 10);
        let mem = AtomicMem::from_words(&w);
        let (mut a, mut b) = connected_pair(mem);
        b.write(0, &[5; 10]).unwrap();
        // Both alive, ticking every 100 ms: the connection stays, however
        // long.
        let mut now = 0;
        for _ in 0..3 * PEER_TIMEOUT_MS / 100 {
            now += 100;
            assert!(!a.heartbeat(now));
            assert!(!b.heartbeat(now));
        }
        assert_ne!(rd32(&mut a, REG_STATUS) & STATUS_CONNECTED, 0);
        // B's VMM stops (no close, no server to say so). A's next tick sees
        // B's last bump; A gives up on B once that is more than
        // PEER_TIMEOUT_MS old, not before.
        now += 100;
        let last_bump_seen = now;
        assert!(!a.heartbeat(now));
        assert!(!a.heartbeat(last_bump_seen + PEER_TIMEOUT_MS));
        assert_ne!(rd32(&mut a, REG_STATUS) & STATUS_CONNECTED, 0);
        assert!(a.heartbeat(last_bump_seen + PEER_TIMEOUT_MS + 100));
        now = last_bump_seen + PEER_TIMEOUT_MS + 100;
        // What B sent is still delivered, then the end.
        let st = rd32(&mut a, REG_STATUS);
        assert_eq!(
            st & (STATUS_CONNECTED | STATUS_RX_READY),
            STATUS_RX_READY,
            "{st:#x}"
        );
        let mut got = [0u8; 10];
        a.read(0, &mut got).unwrap();
        assert_eq!(got, [5; 10]);
        let st = rd32(&mut a, REG_STATUS);
        assert_eq!(
            st & (STATUS_PEER_GONE | STATUS_ERROR),
            STATUS_PEER_GONE,
            "{st:#x}"
        );
        // Not connected any more: ticks do nothing.
        for _ in 0..2 * PEER_TIMEOUT_MS / 100 {
            now += 100;
            assert!(!a.heartbeat(now));
        }
    }

    #[test]
    fn garbage_accesses_are_errors_not_panics() {
        let w = words(16 << 10);
        let mem = AtomicMem::from_words(&w);
        let mut r = PioRegisters::new(mem, None);
        for offset in 0..0x44u64 {
            for len in [1usize, 2, 3, 4, 8, 4096] {
                let mut buf = vec![0u8; len];
                let _ = r.read(offset, &mut buf);
                for v in [0u8, 0xff, 0x5a] {
                    let _ = r.write(offset, &vec![v; len]);
                }
            }
        }
        assert!(r.read(u64::from(REG_STATUS), &mut [0u8; 2]).is_err());
        assert!(r.write(u64::from(REG_STATUS), &[0u8; 4]).is_err());
        assert!(r.write(u64::from(REG_CONTROL), &[0u8; 2]).is_err());
        assert!(r
            .write(u64::from(REG_CONTROL), &0x80u32.to_le_bytes())
            .is_err());
        let mut b = [0u8; 4];
        assert!(r.read(u64::from(REG_CONTROL), &mut b).is_err());
        assert_eq!(b, [0xff; 4]);
    }

    #[test]
    fn corrupted_indices_set_status_error() {
        let w = words(64 << 10);
        let mem = AtomicMem::from_words(&w);
        let (mut a, mut b) = connected_pair(mem);
        let slot_b = b.endpoint().unwrap().slot();
        // The peer's producer index jumps beyond the ring.
        mem.store_u32_release(ring_ctrl(slot_b) + RING_PROD, 0x7fff_0000)
            .unwrap();
        let st = rd32(&mut a, REG_STATUS);
        assert_ne!(st & STATUS_ERROR, 0, "{st:#x}");
        assert_eq!(rd32(&mut a, REG_RX_AVAIL), 0);
        let mut buf = [0u8; 8];
        assert!(a.read(0, &mut buf).is_err());
        // A scribbled header: the other side's endpoint reports it too.
        for off in (0..0x200).step_by(4) {
            mem.store_u32_relaxed(off, 0xdead_beef).unwrap();
        }
        assert_ne!(rd32(&mut b, REG_STATUS) & STATUS_ERROR, 0);
        let mut buf = [0u8; 8];
        assert!(b.read(0, &mut buf).is_err());
        // Clearing the error joins again (the region is re-formatted);
        // nothing panics either way.
        let _ = a.write(u64::from(REG_CONTROL), &CONTROL_CLEAR_ERROR.to_le_bytes());
        let _ = rd32(&mut a, REG_STATUS);
    }
}

#[cfg(test)]
mod byte_exit_tests {
    use super::*;
    use core::sync::atomic::AtomicU32;
    use ivc_abi::AtomicMem;

    /// String I/O that reaches the VMM one byte per exit (what KVM does
    /// for `rep outsb`), interleaved with the peer's reads.
    #[test]
    fn byte_at_a_time_streams_arrive_in_order() {
        let w: Vec<AtomicU32> = (0..(1 << 20) / 4).map(|_| AtomicU32::new(0)).collect();
        let mem = AtomicMem::from_words(&w);
        let mut a = PioRegisters::new(mem, Some(0));
        let mut b = PioRegisters::new(mem, Some(1));
        let ctl = |r: &mut PioRegisters<AtomicMem>| {
            r.write(
                u64::from(REG_CONTROL),
                &(CONTROL_CLEAR_ERROR | CONTROL_OPEN).to_le_bytes(),
            )
            .unwrap()
        };
        ctl(&mut a);
        ctl(&mut b);
        let st = |r: &mut PioRegisters<AtomicMem>, reg: u16| {
            let mut x = [0u8; 4];
            r.read(u64::from(reg), &mut x).unwrap();
            u32::from_le_bytes(x)
        };
        let (mut sent, mut got) = (0u32, 0u32);
        let total = 64 << 10;
        while got < total {
            let sa = st(&mut a, REG_STATUS);
            assert_eq!(
                sa & (STATUS_ERROR | STATUS_PEER_GONE),
                0,
                "a {sa:#x} sent {sent}"
            );
            if sent < total && sa & STATUS_TX_SPACE != 0 {
                let n = st(&mut a, REG_TX_FREE).min(4096).min(total - sent);
                for _ in 0..n {
                    a.write(0, &[(sent & 0xff) as u8]).unwrap();
                    sent += 1;
                }
            }
            let sb = st(&mut b, REG_STATUS);
            assert_eq!(sb & (STATUS_ERROR | STATUS_PEER_GONE), 0, "b {sb:#x}");
            if sb & STATUS_RX_READY != 0 {
                let n = st(&mut b, REG_RX_AVAIL).min(4096);
                let mut buf = vec![0u8; n as usize];
                b.read(0, &mut buf).unwrap();
                for x in buf {
                    assert_eq!(x, (got & 0xff) as u8);
                    got += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod property_tests {
    //! Register fuzzing with proptest: random access sequences from two
    //! guests (and a third party scribbling over the shared control area)
    //! never panic and never break the register contract; an honest pair
    //! driven with random widths and interleavings delivers the exact stream.
    use super::descriptor::test_ram::FakeRam;
    use super::descriptor::GuestRam;
    use super::*;
    use core::sync::atomic::AtomicU32;
    use ivc_abi::pio::{
        Desc, DESC_ERROR, DESC_ERR_RANGE, DESC_MAX_LEN, REG_CAPS, REG_RX_DESC_HI, REG_RX_DESC_LO,
        REG_RX_GO, REG_TX_DESC_HI, REG_TX_DESC_LO, REG_TX_GO,
    };
    use ivc_abi::AtomicMem;
    use proptest::prelude::*;

    const MEM: usize = 64 << 10;
    /// Guest RAM for descriptor commands: 64 KiB at 1 MiB.
    const RAM_BASE: u64 = 1 << 20;
    const DEFINED_STATUS: u32 =
        STATUS_RX_READY | STATUS_TX_SPACE | STATUS_CONNECTED | STATUS_PEER_GONE | STATUS_ERROR;

    #[derive(Debug, Clone)]
    enum Op {
        Read {
            side: usize,
            offset: u64,
            len: usize,
        },
        Write {
            side: usize,
            offset: u64,
            len: usize,
            value: u64,
        },
        Control {
            side: usize,
            value: u32,
        },
        Scribble {
            word: usize,
            value: u32,
        },
        Descriptor {
            side: usize,
            /// Where the descriptor is (in RAM or not).
            at: u64,
            addr: u64,
            len: u32,
            tx: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let side = 0..2usize;
        let len = prop::sample::select(vec![1usize, 2, 3, 4, 4, 4, 8, 100, 4096]);
        prop_oneof![
            4 => (side.clone(), 0..0x44u64, len.clone())
                .prop_map(|(side, offset, len)| Op::Read { side, offset, len }),
            3 => (side.clone(), 0..0x44u64, len, any::<u64>())
                .prop_map(|(side, offset, len, value)| Op::Write { side, offset, len, value }),
            // Descriptors (and the buffers they name): near, inside and
            // past the guest's RAM, any length, either direction.
            2 => (side.clone(),
                  prop_oneof![3 => RAM_BASE..RAM_BASE + 0x100, 1 => Just(0u64), 1 => any::<u64>()],
                  prop_oneof![Just(0u64), RAM_BASE - 8..RAM_BASE + 0x11000, any::<u64>()],
                  prop_oneof![0..0x2000u32, any::<u32>()], any::<bool>())
                .prop_map(|(side, at, addr, len, tx)| Op::Descriptor { side, at, addr, len, tx }),
            1 => (side, prop::sample::select(vec![
                    CONTROL_OPEN,
                    CONTROL_CLOSE,
                    CONTROL_RESUME,
                    CONTROL_CLEAR_ERROR | CONTROL_OPEN,
                ]))
                .prop_map(|(side, value)| Op::Control { side, value }),
            1 => (0..0x80usize, any::<u32>()).prop_map(|(word, value)| Op::Scribble { word, value }),
        ]
    }

    fn rd32(r: &mut PioRegisters<AtomicMem>, reg: u16) -> u32 {
        let mut x = [0u8; 4];
        let _ = r.read(u64::from(reg), &mut x);
        u32::from_le_bytes(x)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the guests and a corrupting third party do: no panic (a
        /// panic is a vCPU thread, now the whole VMM, dying), STATUS carries
        /// only defined bits, the counts never exceed the shared memory,
        /// the identity registers never change, and an access the map does
        /// not define reads all ones and reports a fault.
        #[test]
        fn hostile_sequences_keep_the_register_contract(ops in prop::collection::vec(op(), 1..400)) {
            let w: Vec<AtomicU32> = (0..MEM / 4).map(|_| AtomicU32::new(0)).collect();
            let mem = AtomicMem::from_words(&w);
            let mut sides = [PioRegisters::new(mem, Some(1)), PioRegisters::new(mem, Some(2))];
            let rams = [
                std::sync::Arc::new(FakeRam::new(RAM_BASE, 0x10000)),
                std::sync::Arc::new(FakeRam::new(RAM_BASE, 0x10000)),
            ];
            for (s, ram) in sides.iter_mut().zip(&rams) {
                s.set_guest_ram(Box::new(ram.clone()));
            }
            for op in ops {
                match op {
                    Op::Read { side, offset, len } => {
                        let mut buf = vec![0u8; len];
                        let r = sides[side].read(offset, &mut buf);
                        let defined = offset == u64::from(REG_DATA)
                            || (len == 4 && [REG_STATUS, REG_RX_AVAIL, REG_TX_FREE, REG_ID, REG_VERSION,
                                REG_CAPS, REG_TX_DESC_LO, REG_TX_DESC_HI, REG_RX_DESC_LO, REG_RX_DESC_HI,
                                REG_TX_GO, REG_RX_GO]
                                .iter().any(|&reg| u64::from(reg) == offset));
                        if !defined {
                            prop_assert!(r.is_err(), "read {offset:#x}/{len} accepted");
                            prop_assert!(buf.iter().all(|&b| b == 0xff));
                        }
                    }
                    Op::Write { side, offset, len, value } => {
                        let v = value.to_le_bytes();
                        let data: Vec<u8> = (0..len).map(|i| v[i % 8]).collect();
                        let _ = sides[side].write(offset, &data);
                    }
                    Op::Control { side, value } => {
                        let _ = sides[side].write(u64::from(REG_CONTROL), &value.to_le_bytes());
                    }
                    Op::Scribble { word, value } => {
                        let _ = mem.store_u32_relaxed(word * 4, value);
                    }
                    Op::Descriptor { side, at, addr, len, tx } => {
                        let r = &mut sides[side];
                        let (lo, hi, go) = if tx {
                            (REG_TX_DESC_LO, REG_TX_DESC_HI, REG_TX_GO)
                        } else {
                            (REG_RX_DESC_LO, REG_RX_DESC_HI, REG_RX_GO)
                        };
                        for (reg, v) in [(lo, (at & 0xffff_ffff) as u32), (hi, (at >> 32) as u32)] {
                            prop_assert!(r.write(u64::from(reg), &v.to_le_bytes()).is_ok());
                        }
                        let desc_in_ram = rams[side].write(at, &Desc::encode(addr, len));
                        let res = rd32(r, go);
                        let in_ram = addr >= RAM_BASE
                            && addr.checked_add(u64::from(len)).is_some_and(|e| e <= RAM_BASE + 0x10000);
                        if res & DESC_ERROR == 0 {
                            // Bytes moved: a buffer in RAM, at most its length.
                            prop_assert!(desc_in_ram && at != 0, "moved {} with the descriptor at {:#x}", res, at);
                            prop_assert!(in_ram, "moved {} from {:#x}+{}", res, addr, len);
                            prop_assert!(res <= len);
                        } else if at != 0 && (!desc_in_ram || (!in_ram && len <= DESC_MAX_LEN)) {
                            prop_assert_eq!(res, DESC_ERROR | DESC_ERR_RANGE);
                        }
                    }
                }
                for r in &mut sides {
                    let st = rd32(r, REG_STATUS);
                    prop_assert_eq!(st & !DEFINED_STATUS, 0, "undefined STATUS bits {:#x}", st);
                    prop_assert!(rd32(r, REG_RX_AVAIL) as usize <= MEM);
                    prop_assert!(rd32(r, REG_TX_FREE) as usize <= MEM);
                    prop_assert_eq!(rd32(r, REG_ID), MAGIC);
                    prop_assert_eq!(rd32(r, REG_VERSION), VERSION);
                }
            }
        }

        /// Two honest guests, each following the register protocol (write
        /// at most TX_FREE bytes, read at most RX_AVAIL), with random access
        /// widths and a random interleaving: the receiver gets exactly the
        /// sender's bytes, in order, and no error is ever raised.
        #[test]
        fn honest_pairs_deliver_the_exact_stream(
            steps in prop::collection::vec((any::<bool>(), 1..5000usize, prop::sample::select(vec![1usize, 2, 4, 4096])), 1..300)
        ) {
            let w: Vec<AtomicU32> = (0..MEM / 4).map(|_| AtomicU32::new(0)).collect();
            let mem = AtomicMem::from_words(&w);
            let mut a = PioRegisters::new(mem, Some(1));
            let mut b = PioRegisters::new(mem, Some(2));
            for r in [&mut a, &mut b] {
                r.write(u64::from(REG_CONTROL), &(CONTROL_CLEAR_ERROR | CONTROL_OPEN).to_le_bytes())
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            }
            for _ in 0..3 {
                let _ = rd32(&mut a, REG_STATUS);
                let _ = rd32(&mut b, REG_STATUS);
            }
            for r in [&mut a, &mut b] {
                prop_assert_ne!(rd32(r, REG_STATUS) & STATUS_CONNECTED, 0, "not connected");
            }
            let byte = |i: u64| ((i.wrapping_mul(31) ^ (i >> 8)) & 0xff) as u8;
            let (mut sent, mut got) = (0u64, 0u64);
            for (send, amount, width) in steps {
                if send {
                    let free = rd32(&mut a, REG_TX_FREE) as usize;
                    let mut n = amount.min(free);
                    while n > 0 {
                        let k = width.min(n);
                        let chunk: Vec<u8> = (0..k as u64).map(|i| byte(sent + i)).collect();
                        prop_assert!(a.write(u64::from(REG_DATA), &chunk).is_ok());
                        sent += k as u64;
                        n -= k;
                    }
                } else {
                    let avail = rd32(&mut b, REG_RX_AVAIL) as usize;
                    let mut n = amount.min(avail);
                    while n > 0 {
                        let k = width.min(n);
                        let mut chunk = vec![0u8; k];
                        prop_assert!(b.read(u64::from(REG_DATA), &mut chunk).is_ok());
                        for (i, x) in chunk.iter().enumerate() {
                            prop_assert_eq!(*x, byte(got + i as u64), "byte {}", got + i as u64);
                        }
                        got += k as u64;
                        n -= k;
                    }
                }
                for r in [&mut a, &mut b] {
                    prop_assert_eq!(rd32(r, REG_STATUS) & (STATUS_ERROR | STATUS_PEER_GONE), 0);
                }
            }
            // Drain: everything sent arrives.
            loop {
                let avail = rd32(&mut b, REG_RX_AVAIL) as usize;
                if avail == 0 {
                    break;
                }
                let mut chunk = vec![0u8; avail];
                prop_assert!(b.read(u64::from(REG_DATA), &mut chunk).is_ok());
                for (i, x) in chunk.iter().enumerate() {
                    prop_assert_eq!(*x, byte(got + i as u64));
                }
                got += avail as u64;
            }
            prop_assert_eq!(got, sent);
        }
    }
}
