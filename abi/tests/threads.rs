//! Concurrency: two threads stream data both ways through a small ring with
//! real sleeping on emulated doorbells, and verify every byte. A lost
//! wake-up shows up as a doorbell wait that times out.
//!
//! Also the hostile test: a third thread scribbles random values over the
//! header, peer table, ring control blocks and ring data while both sides
//! run; every call must return data or an error, never panic, never hang.
// Tests: a failed unwrap is a test failure with a backtrace, which is
// what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use common::{opts, pair, Region};
use ivc_abi::{AtomicMem, ChannelError, Endpoint, Readiness, SharedMemory};

/// An emulated doorbell/interrupt: a latched event.
#[derive(Default)]
struct Bell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.cv.notify_one();
    }
    /// Waits for a ring; false on timeout.
    fn wait(&self, t: Duration) -> bool {
        let g = self.rung.lock().unwrap();
        let (mut g, res) = self.cv.wait_timeout_while(g, t, |r| !*r).unwrap();
        *g = false;
        !res.timed_out()
    }
}

/// xorshift32 byte stream, so both threads can generate/verify a stream
/// without sharing it.
struct Stream(u32);
impl Stream {
    fn next(&mut self) -> u8 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x >> 24) as u8
    }
}

/// One side: sends `send` bytes from stream `tx_seed`, receives `recv`
/// bytes expected from stream `rx_seed`. Returns (doorbell waits, fnv hash).
fn run_side(
    ep: &mut Endpoint<AtomicMem<'_>>,
    my_bell: &Bell,
    peer_bell: &Bell,
    send: usize,
    tx_seed: u32,
    recv: usize,
    rx_seed: u32,
) -> (u64, u64) {
    let mut tx = Stream(tx_seed);
    let mut rx = Stream(rx_seed);
    let mut pending: Vec<u8> = Vec::new();
    let (mut sent, mut got) = (0usize, 0usize);
    let mut waits = 0u64;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut buf = [0u8; 1000];
    while sent < send || got < recv {
        let mut progress = false;
        if sent < send {
            while pending.len() < 700 && sent + pending.len() < send {
                pending.push(tx.next());
            }
            let n = ep.write(&pending).expect("write");
            pending.drain(..n);
            sent += n;
            progress |= n > 0;
        }
        if got < recv {
            let n = ep.read(&mut buf).expect("read");
            for &b in &buf[..n] {
                assert_eq!(b, rx.next(), "byte {got}");
                hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                got += 1;
            }
            progress |= n > 0;
        }
        if ep.needs_doorbell() {
            peer_bell.ring();
        }
        if progress {
            continue;
        }
        // No progress: arm what we wait for, sleep only if both say so.
        let mut sleep = true;
        if got < recv && ep.arm_read_wakeup(1).expect("arm r") == Readiness::Ready {
            sleep = false;
        }
        if sent < send && ep.arm_write_wakeup(1).expect("arm w") == Readiness::Ready {
            sleep = false;
        }
        if sleep {
            waits += 1;
            assert!(
                my_bell.wait(Duration::from_secs(10)),
                "lost wake-up: sent {sent}/{send} got {got}/{recv}"
            );
        }
        let _ = ep.set_wants_read_wakeup(false);
        let _ = ep.set_wants_write_wakeup(false);
    }
    (waits, hash)
}

#[test]
fn two_threads_stream_both_ways() {
    let r = Region::new(16384);
    let (mut a, mut b) = pair(r.mem(), &opts(Some(256), (u32::MAX - 1000) & !7));
    let (ba, bb) = (Bell::default(), Bell::default());
    // Miri is ~1000x slower: a smaller stream still wraps the ring often.
    let (a_to_b, b_to_a) = if cfg!(miri) {
        (6000, 2000)
    } else {
        (3 << 20, 1 << 20)
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| run_side(&mut a, &ba, &bb, a_to_b, 1, b_to_a, 2));
        let hb = s.spawn(|| run_side(&mut b, &bb, &ba, b_to_a, 2, a_to_b, 1));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(a.stats().bytes_written, a_to_b as u64);
    assert_eq!(b.stats().bytes_read, a_to_b as u64);
    assert_eq!(a.stats().bytes_read, b_to_a as u64);
    // The checksums were computed on verified bytes; report for the log.
    eprintln!("waits a={} b={} hash a={:x} b={:x}", ra.0, rb.0, ra.1, rb.1);
}

/// Tiny deterministic PRNG for the scribbler (no shared state with the
/// sides).
fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 7;
    *state ^= *state >> 9;
    *state
}

const ROUNDS: u64 = if cfg!(miri) { 3 } else { 40 };
const STEPS: usize = if cfg!(miri) { 150 } else { 3000 };

#[test]
fn hostile_scribbler_never_panics_or_hangs() {
    let r = Region::new(8192);
    let mem = r.mem();
    let detected = std::sync::atomic::AtomicUsize::new(0);
    let side_fn = |ep: &mut Endpoint<AtomicMem<'_>>| {
        let mut buf = [0u8; 200];
        for i in 0..STEPS {
            let r = if i % 2 == 0 {
                ep.write(&buf[..(i % 150) + 1]).map(|_| ())
            } else {
                ep.read(&mut buf).map(|_| ())
            };
            let _ = ep.arm_read_wakeup(i as u32);
            let _ = ep.needs_doorbell();
            match r {
                Ok(()) | Err(ChannelError::PeerGone) => {}
                Err(ChannelError::Corrupted) | Err(ChannelError::Reset) => {
                    // Latched from now on.
                    assert_eq!(ep.write(b"x"), r.map(|_| 0));
                    detected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    };
    let side = &side_fn;
    for round in 0..ROUNDS {
        ivc_abi::format(
            &mem,
            &ivc_abi::FormatOptions {
                ring_size: Some(128),
                index_base: (round as u32).wrapping_mul(0x1234_5679) & !7,
            },
        )
        .unwrap();
        let (mut a, mut b) = pair(mem, &opts(Some(128), 0));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut st = 0x9e37_79b9_7f4a_7c15u64 ^ round;
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let x = rng(&mut st);
                    // Mostly the control area (where the damage is), some
                    // header and ring data; rarely, a valid-looking value.
                    let off = match x % 8 {
                        0 => (x >> 8) as usize % 0x40,
                        1..=5 => 0x40 + (x >> 8) as usize % 0x1c0,
                        _ => 0x1000 + (x >> 8) as usize % 0x100,
                    } & !3;
                    let v = match (x >> 40) % 4 {
                        0 => (x >> 20) as u32 % 300,
                        _ => (x >> 20) as u32,
                    };
                    let _ = mem.store_u32_relaxed(off, v);
                    i = i.wrapping_add(1);
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
            });
            let ha = s.spawn(move || side(&mut a));
            side(&mut b);
            ha.join().unwrap();
            stop.store(true, Ordering::Relaxed);
        });
    }
    let d = detected.load(Ordering::Relaxed);
    eprintln!("sides that detected corruption: {d} of {}", 2 * ROUNDS);
    assert!(d > 0, "the scribbler never hit anything");
}

/// Two sides attach to a fresh (all-zero) region at the same moment: exactly
/// one formats (the other sees `Busy` or the finished format), they get
/// their slots, and connect. Also with `attach_any`: distinct slots.
#[test]
fn concurrent_first_attach_formats_once() {
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for round in 0..rounds {
        let r = Region::new(8192);
        let mem = r.mem();
        let any = round % 2 == 1;
        let attach = |slot: u32| -> Endpoint<AtomicMem<'_>> {
            let o = ivc_abi::AttachOptions::default();
            for _ in 0..1_000_000 {
                let res = if any {
                    Endpoint::attach_any(mem, &o)
                } else {
                    Endpoint::attach_with(mem, slot, &o)
                };
                match res {
                    Ok(ep) => return ep,
                    Err(ChannelError::Busy) => std::thread::yield_now(),
                    Err(e) => panic!("attach: {e:?}"),
                }
            }
            panic!("format never finished");
        };
        let (mut a, mut b) = std::thread::scope(|s| {
            let ha = s.spawn(|| attach(0));
            let b = attach(1);
            (ha.join().unwrap(), b)
        });
        assert_ne!(a.slot(), b.slot());
        assert_eq!(a.layout(), b.layout());
        common::connect(&mut a, &mut b);
        assert_eq!(a.write(b"x").unwrap(), 1);
        assert_eq!(b.read(&mut [0u8; 2]).unwrap(), 1);
    }
}

/// Echoes of varying small sizes between two spinning threads over a
/// 256 KiB ring: the writer pads to the ring's end after every window
/// whenever the reader has caught up, and races with it doing so; every
/// echo comes back intact and in order, byte stream semantics included
/// (the echoing side reads in pieces that do not match the records).
#[test]
fn ping_pong_through_the_window_pads() {
    let r = Region::new(1 << 20);
    let (mut a, mut b) = pair(r.mem(), &opts(None, 0));
    let rounds = if cfg!(miri) { 200 } else { 20_000 };
    let mut st = 0x0fed_cba9_8765_4321u64;
    let lens: Vec<usize> = (0..rounds)
        .map(|_| (rng(&mut st) % 199) as usize + 1)
        .collect();
    let total: usize = lens.iter().sum();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut buf = [0u8; 97];
            let mut echoed = 0usize;
            let mut st = 0x1234_5678_9abc_def1u64;
            while echoed < total {
                let want = ((rng(&mut st) % 97) as usize + 1).min(total - echoed);
                let n = match b.read(&mut buf[..want]) {
                    Ok(n) => n,
                    Err(e) => panic!("echo read: {e:?}"),
                };
                let mut sent = 0;
                while sent < n {
                    sent += b.write(&buf[sent..n]).expect("echo write");
                }
                echoed += n;
                if n == 0 {
                    std::hint::spin_loop();
                }
            }
            // Keep the endpoint open until the other side has read the
            // last echo (dropping it closes the channel).
            b
        });
        let mut back = [0u8; 200];
        for (i, &len) in lens.iter().enumerate() {
            let msg: Vec<u8> = (0..len).map(|k| (i as u8).wrapping_add(k as u8)).collect();
            let mut sent = 0;
            while sent < len {
                sent += a.write(&msg[sent..]).expect("write");
            }
            let mut got = 0;
            while got < len {
                got += a.read(&mut back[got..len]).expect("read");
            }
            assert_eq!(&back[..len], &msg[..], "round {i}");
        }
    });
}
