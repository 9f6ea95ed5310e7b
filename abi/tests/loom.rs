//! Loom model checks of the ring and the wake-up suppression protocol.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p ivc-abi --release --test loom`
//! (own target dir recommended: the cfg rebuilds every dependency).
//!
//! The real `Endpoint` code runs over a `SharedMemory` backed by loom
//! atomics. A producer and a consumer move bytes through a 4-byte ring and
//! *sleep* on emulated doorbells (`loom::sync::Notify`) exactly when the
//! protocol says they may. A lost wake-up leaves both asleep, which loom
//! reports as a deadlock. The second model removes the full fence and
//! expects loom to find that deadlock, showing the check has teeth.
//!
//! The duplex model follows `ivc.ko` (`guest-kmod/pipe.rs`,
//! `shm_transport.rs`) rather than a textbook waiter: one doorbell per side
//! for both directions (an event counter under a mutex and a condition
//! variable, as `Pipe::events`/`wait`), a waiter that sleeps only when the
//! counter has not moved since it last looked, wake-up requests that are
//! never withdrawn, both directions armed before a sleep (as `poll` does),
//! the ring-or-not decisions exactly where the driver makes them, readers
//! asking for more than one byte, and indices that wrap.
// Tests: a failed unwrap is a test failure with a backtrace, which is
// what we want here.
#![allow(clippy::unwrap_used)]
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicU32, Ordering};
use loom::sync::{Arc, Condvar, Mutex, Notify};

use ivc_abi::layout::{self, CONTROL_SIZE};
use ivc_abi::{
    AttachOptions, Endpoint, FormatOptions, OutOfBounds, PeerState, Readiness, SharedMemory,
};

/// The smallest ring of layout version 2: it holds three 1-byte records
/// (16 ring bytes each) plus the next record's cleared header.
const RING: u32 = 64;
/// Words actually backed: header/peer table/ring control (0x000..0x200)
/// and the two rings' data (0x1000..0x1080). The unused rest of the control
/// area reads as zero and ignores writes, which keeps the model small.
const CTRL_WORDS: usize = 0x200 / 4;
const DATA_WORDS: usize = 0x80 / 4;
const REGION: usize = 8192;

struct LoomMem {
    ctrl: Vec<AtomicU32>,
    data: Vec<AtomicU32>,
    with_fence: bool,
}

#[derive(Clone)]
struct Mem(Arc<LoomMem>);

enum Word<'a> {
    Real(&'a AtomicU32),
    Hole,
}

impl Mem {
    fn new(with_fence: bool) -> Self {
        Mem(Arc::new(LoomMem {
            ctrl: (0..CTRL_WORDS).map(|_| AtomicU32::new(0)).collect(),
            data: (0..DATA_WORDS).map(|_| AtomicU32::new(0)).collect(),
            with_fence,
        }))
    }

    fn word(&self, off: usize) -> Result<Word<'_>, OutOfBounds> {
        if off % 4 != 0 || off >= REGION {
            return Err(OutOfBounds);
        }
        let i = off / 4;
        if i < CTRL_WORDS {
            return Ok(Word::Real(&self.0.ctrl[i]));
        }
        if off < CONTROL_SIZE {
            return Ok(Word::Hole);
        }
        match self.0.data.get((off - CONTROL_SIZE) / 4) {
            Some(w) => Ok(Word::Real(w)),
            None => Ok(Word::Hole),
        }
    }

    fn load(&self, off: usize, o: Ordering) -> Result<u32, OutOfBounds> {
        Ok(match self.word(off)? {
            Word::Real(w) => w.load(o),
            Word::Hole => 0,
        })
    }

    fn store(&self, off: usize, v: u32, o: Ordering) -> Result<(), OutOfBounds> {
        if let Word::Real(w) = self.word(off)? {
            w.store(v, o);
        }
        Ok(())
    }
}

impl SharedMemory for Mem {
    fn len(&self) -> usize {
        REGION
    }
    fn load_u32_acquire(&self, off: usize) -> Result<u32, OutOfBounds> {
        self.load(off, Ordering::Acquire)
    }
    fn load_u32_relaxed(&self, off: usize) -> Result<u32, OutOfBounds> {
        self.load(off, Ordering::Relaxed)
    }
    fn store_u32_release(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.store(off, v, Ordering::Release)
    }
    fn store_u32_relaxed(&self, off: usize, v: u32) -> Result<(), OutOfBounds> {
        self.store(off, v, Ordering::Relaxed)
    }
    fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, OutOfBounds> {
        Ok(match self.word(off)? {
            Word::Real(w) => w.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst),
            Word::Hole => Err(0),
        })
    }
    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        // Byte-granular over the words (single-byte ring accesses are what
        // a 4-byte ring needs; keeps the model simple).
        for (i, b) in dst.iter_mut().enumerate() {
            let p = off + i;
            let w = self.load(p & !3, Ordering::Relaxed)?;
            *b = w.to_le_bytes()[p % 4];
        }
        Ok(())
    }
    fn write_bytes(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        // Only the producer writes ring data, so a load/modify/store of the
        // containing word by it races with nobody's writes.
        for (i, b) in src.iter().enumerate() {
            let p = off + i;
            let mut w = self.load(p & !3, Ordering::Relaxed)?.to_le_bytes();
            w[p % 4] = *b;
            self.store(p & !3, u32::from_le_bytes(w), Ordering::Relaxed)?;
        }
        Ok(())
    }
    fn fence_seqcst(&self) {
        if self.0.with_fence {
            fence(Ordering::SeqCst);
        }
    }
}

fn connected_pair(with_fence: bool) -> (Endpoint<Mem>, Endpoint<Mem>) {
    let mem = Mem::new(with_fence);
    let fo = FormatOptions {
        ring_size: Some(RING),
        index_base: u32::MAX - 7, // wraps during the transfer
    };
    layout::format(&mem, &fo).expect("format");
    let o = AttachOptions {
        doorbell_id: None,
        format: None,
    };
    let mut a = Endpoint::attach_with(mem.clone(), 0, &o).expect("a");
    let mut b = Endpoint::attach_with(mem, 1, &o).expect("b");
    for _ in 0..3 {
        a.peer_state().expect("a");
        b.peer_state().expect("b");
    }
    assert_eq!(a.peer_state().expect("a"), PeerState::Connected);
    assert_eq!(b.peer_state().expect("b"), PeerState::Connected);
    a.needs_doorbell();
    b.needs_doorbell();
    (a, b)
}

const TOTAL: usize = 6;

fn transfer(with_fence: bool) {
    let (mut prod, mut cons) = connected_pair(with_fence);
    let data_bell = Arc::new(Notify::new());
    let space_bell = Arc::new(Notify::new());
    let (db, sb) = (data_bell.clone(), space_bell.clone());
    let producer = loom::thread::spawn(move || {
        let msg: [u8; TOTAL] = [1, 2, 3, 4, 5, 6];
        let mut sent = 0;
        while sent < TOTAL {
            // One byte per record: the ring fills after three, so the
            // producer waits for space too.
            let n = prod.write(&msg[sent..sent + 1]).expect("write");
            sent += n;
            if prod.needs_doorbell_after_write() {
                db.notify();
            }
            if n == 0 {
                if prod.arm_write_wakeup(1).expect("arm") == Readiness::MaySleep {
                    sb.wait();
                }
                let _ = prod.set_wants_write_wakeup(false);
            }
        }
        // Keep the endpoint open until the consumer is done (dropping it
        // would close the channel, which also rings).
        prod
    });
    let mut got = Vec::new();
    while got.len() < TOTAL {
        let mut buf = [0u8; 4];
        let n = cons.read(&mut buf).expect("read");
        got.extend_from_slice(&buf[..n]);
        if cons.needs_doorbell_after_read() {
            space_bell.notify();
        }
        if n == 0 {
            if cons.arm_read_wakeup(1).expect("arm") == Readiness::MaySleep {
                data_bell.wait();
            }
            let _ = cons.set_wants_read_wakeup(false);
        }
    }
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);
    let prod = producer.join().expect("join");
    drop(prod);
    drop(cons);
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    // Version 2 moves every message as a record (header polled, payload,
    // next header cleared, producer index): more atomic steps per byte than
    // loom's default of 1000 branches allows for the 1-byte-record models.
    // A spin without progress still fails, at this bound instead.
    b.max_branches = 20_000;
    b
}

#[test]
fn no_lost_wakeups_and_data_intact() {
    builder().check(|| transfer(true));
}

/// The bare store-buffering shape of the protocol, without blocking: the
/// consumer decides to sleep (arm, re-check) while the producer publishes
/// and decides whether to ring. "Slept and nobody rang" is a lost wake-up.
/// Same for the write side with a full ring.
fn one_shot(with_fence: bool) {
    // Read side.
    let (mut prod, mut cons) = connected_pair(with_fence);
    let t = loom::thread::spawn(move || {
        assert_eq!(prod.write(&[9]).expect("write"), 1);
        let rang = prod.needs_doorbell_after_write();
        (prod, rang)
    });
    let slept = cons.arm_read_wakeup(1).expect("arm") == Readiness::MaySleep;
    let (prod, rang) = t.join().expect("join");
    assert!(!slept || rang, "lost read wake-up");
    drop((prod, cons));

    // Write side.
    // Full: records of 16 and 32 ring bytes, 16 left, less than a
    // 1-byte record and the next header need.
    let (mut prod, mut cons) = connected_pair(with_fence);
    assert_eq!(prod.write(&[1; 8]).expect("fill"), 8);
    assert_eq!(prod.write(&[1; 24]).expect("fill"), 24);
    assert_eq!(prod.write(&[1]).expect("full"), 0);
    let t = loom::thread::spawn(move || {
        // The first record read whole frees its space.
        let mut b = [0u8; 8];
        assert_eq!(cons.read(&mut b).expect("read"), 8);
        let rang = cons.needs_doorbell_after_read();
        (cons, rang)
    });
    let slept = prod.arm_write_wakeup(1).expect("arm") == Readiness::MaySleep;
    let (cons, rang) = t.join().expect("join");
    assert!(!slept || rang, "lost write wake-up");
    drop((prod, cons));
}

#[test]
fn one_shot_with_fence_never_loses_a_wakeup() {
    builder().check(|| one_shot(true));
}

/// Without the full fence loom finds the store-buffering outcome in which
/// both sides miss each other's store: the check has teeth.
#[test]
#[should_panic(expected = "lost")]
fn one_shot_without_fence_loses_a_wakeup() {
    builder().check(|| one_shot(false));
}

fn attached_pair() -> (Endpoint<Mem>, Endpoint<Mem>) {
    let mem = Mem::new(true);
    let fo = FormatOptions {
        ring_size: Some(RING),
        index_base: 8,
    };
    layout::format(&mem, &fo).expect("format");
    let o = AttachOptions {
        doorbell_id: None,
        format: None,
    };
    let a = Endpoint::attach_with(mem.clone(), 0, &o).expect("a");
    let b = Endpoint::attach_with(mem, 1, &o).expect("b");
    (a, b)
}

/// Spins (bounded, yielding to loom) until `ep` is connected, then sends
/// `out` and receives one byte. Any error other than the expected ones
/// fails the model.
fn handshake_side(mut ep: Endpoint<Mem>, out: u8) -> (Endpoint<Mem>, u8) {
    let mut connected = false;
    for _ in 0..6 {
        if ep.peer_state().expect("state") == PeerState::Connected {
            connected = true;
            break;
        }
        loom::thread::yield_now();
    }
    if !connected {
        // Loom's scheduler starved us within the bound: nothing to check.
        return (ep, out);
    }
    assert_eq!(ep.write(&[out]).expect("write"), 1);
    let mut b = [0u8; 1];
    for _ in 0..6 {
        if ep.read(&mut b).expect("read") == 1 {
            return (ep, b[0]);
        }
        loom::thread::yield_now();
    }
    (ep, out ^ 0xff ^ 0xff)
}

/// The handshake under concurrency: each side's index reads happen only
/// after the other's reset (ack release -> acquire), so neither side ever
/// sees a stale index as corruption, and a byte sent right after connecting
/// arrives intact.
#[test]
fn concurrent_handshake_then_exchange() {
    builder().check(|| {
        let (a, b) = attached_pair();
        let t = loom::thread::spawn(move || handshake_side(a, 0xaa));
        let (b, got_b) = handshake_side(b, 0xbb);
        let (a, got_a) = t.join().expect("join");
        // Either side may have given up waiting (bounded loop), but what
        // arrived is the peer's byte, never garbage.
        assert!(got_b == 0xaa || got_b == 0xbb);
        assert!(got_a == 0xbb || got_a == 0xaa);
        drop((a, b));
    });
}

/// A peer that reconnects while the other side is writing and reading: the
/// writer sees data accepted or `PeerGone`, never `Corrupted`.
#[test]
fn reconnect_during_traffic_is_never_corruption() {
    builder().check(|| {
        let (mut a, mut b) = attached_pair();
        for _ in 0..3 {
            a.peer_state().expect("a");
            b.peer_state().expect("b");
        }
        let t = loom::thread::spawn(move || {
            for i in 0..2u8 {
                match a.write(&[i, i]) {
                    Ok(_) | Err(ivc_abi::ChannelError::PeerGone) => {}
                    Err(e) => panic!("writer saw {e:?}"),
                }
                let mut buf = [0u8; 2];
                match a.read(&mut buf) {
                    Ok(_) | Err(ivc_abi::ChannelError::PeerGone) => {}
                    Err(e) => panic!("writer's read saw {e:?}"),
                }
            }
            a
        });
        b.write(&[9]).expect("b write");
        b.reconnect().expect("reconnect");
        let mut buf = [0u8; 4];
        match b.read(&mut buf) {
            Ok(_) | Err(ivc_abi::ChannelError::PeerGone) => {}
            Err(e) => panic!("reconnecting side saw {e:?}"),
        }
        let a = t.join().expect("join");
        drop((a, b));
    });
}

/// Bytes each way in the duplex model (in 1-byte records, more than a
/// 64-byte ring holds).
const DUPLEX_TOTAL: usize = 5;

/// One side's doorbell as `ivc.ko` sees it: the interrupt handler bumps an
/// event counter and wakes every sleeper; a waiter sleeps only while the
/// counter still has the value it read before its last attempt.
struct Doorbell {
    events: Mutex<u64>,
    cv: Condvar,
}

impl Doorbell {
    fn new() -> Self {
        Doorbell {
            events: Mutex::new(0),
            cv: Condvar::new(),
        }
    }
    fn ring(&self) {
        let mut e = self.events.lock().unwrap();
        *e += 1;
        self.cv.notify_all();
    }
    fn snapshot(&self) -> u64 {
        *self.events.lock().unwrap()
    }
    fn sleep_unless_moved(&self, seen: u64) {
        let mut e = self.events.lock().unwrap();
        while *e == seen {
            e = self.cv.wait(e).unwrap();
        }
    }
}

/// One side of a duplex exchange: sends `DUPLEX_TOTAL` bytes in `chunk`-byte
/// writes while receiving as many; when neither direction moved it arms
/// both (reads for up to `read_min` bytes) and sleeps on its doorbell.
fn duplex_side(
    mut ep: Endpoint<Mem>,
    mine: Arc<Doorbell>,
    peers: Arc<Doorbell>,
    tag: u8,
    (chunk, read_min): (usize, u32),
) -> Endpoint<Mem> {
    let msg: Vec<u8> = (0..DUPLEX_TOTAL as u8)
        .map(|i| tag.wrapping_add(i))
        .collect();
    let (mut sent, mut got) = (0, Vec::new());
    while sent < DUPLEX_TOTAL || got.len() < DUPLEX_TOTAL {
        let seen = mine.snapshot();
        let mut moved = false;
        if sent < DUPLEX_TOTAL {
            let n = ep
                .write(&msg[sent..(sent + chunk).min(DUPLEX_TOTAL)])
                .expect("write");
            if ep.needs_doorbell_after_write() {
                peers.ring();
            }
            sent += n;
            moved |= n > 0;
        }
        if got.len() < DUPLEX_TOTAL {
            let mut buf = [0u8; 8];
            let n = ep.read(&mut buf[..DUPLEX_TOTAL - got.len()]).expect("read");
            if ep.needs_doorbell_after_read() {
                peers.ring();
            }
            got.extend_from_slice(&buf[..n]);
            moved |= n > 0;
        }
        if moved {
            continue;
        }
        let mut ready = false;
        if got.len() < DUPLEX_TOTAL {
            let min = read_min.min((DUPLEX_TOTAL - got.len()) as u32);
            ready |= ep.arm_read_wakeup(min).expect("arm read") == Readiness::Ready;
            if ep.needs_doorbell() {
                peers.ring();
            }
        }
        if sent < DUPLEX_TOTAL {
            ready |= ep.arm_write_wakeup(1).expect("arm write") == Readiness::Ready;
            if ep.needs_doorbell() {
                peers.ring();
            }
        }
        if !ready {
            mine.sleep_unless_moved(seen);
        }
    }
    let want: Vec<u8> = (0..DUPLEX_TOTAL as u8)
        .map(|i| (tag ^ 0x80).wrapping_add(i))
        .collect();
    assert_eq!(got, want);
    ep
}

fn duplex(chunk: usize, read_min: u32) {
    let (a, b) = connected_pair(true);
    let (bell_a, bell_b) = (Arc::new(Doorbell::new()), Arc::new(Doorbell::new()));
    let (ba, bb) = (bell_a.clone(), bell_b.clone());
    let t = loom::thread::spawn(move || duplex_side(b, bb, ba, 0x80, (chunk, read_min)));
    let a = duplex_side(a, bell_a, bell_b, 0x00, (chunk, read_min));
    let b = t.join().expect("join");
    drop((a, b));
}

/// Both ways at once through 64-byte rings, 3-byte writes (a record of 3
/// and one of 2, wrapping the u32 indices), one doorbell per side: nobody
/// sleeps through the data or space it waits for.
#[test]
fn duplex_as_the_driver_waits_loses_no_wakeup() {
    builder().check(|| duplex(3, 1));
}

/// The same with readers that ask to be woken for two bytes and a writer
/// that publishes one at a time: the wake index, not every publication,
/// decides.
#[test]
fn duplex_with_two_byte_wakeups_loses_no_wakeup() {
    builder().check(|| duplex(1, 2));
}
