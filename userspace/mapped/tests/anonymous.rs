//! The mapped endpoint over an anonymous shared mapping standing in for the
//! device's ring: streams both ways and checked byte for byte (spinning and
//! sleeping), interoperation with a plain `Endpoint` (what the driver runs
//! for a process that uses read/write), end of file, doorbell decisions,
//! and a process that scribbles over its own mapping getting `EIO`.

#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ivc_abi::layout::{ring_ctrl, HDR_RING0_OFFSET, HDR_RING0_SIZE, RING_CONS, RING_DATA_WANTED};
use ivc_abi::{Endpoint, SharedMemory};
use ivc_kit::stream::{fill, verify};
use ivc_mapped::{Info, MappedEndpoint, Mapping, Wait, Waker};

const REGION: usize = 64 * 1024;

/// A waker without a device: counts doorbells, sleeps briefly.
#[derive(Clone, Default)]
struct TestWaker {
    doorbell: bool,
    rung: Arc<AtomicU32>,
}

impl Waker for TestWaker {
    fn has_doorbell(&self) -> bool {
        self.doorbell
    }
    fn ring(&self, _peer: u16) -> io::Result<()> {
        self.rung.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn sleep(&self, timeout: Duration) -> io::Result<()> {
        thread::sleep(timeout.min(Duration::from_micros(200)));
        Ok(())
    }
}

fn pair(
    doorbell: bool,
) -> (
    MappedEndpoint<Mapping, TestWaker>,
    MappedEndpoint<Mapping, TestWaker>,
) {
    let mem = Mapping::anonymous(REGION).unwrap();
    let w = TestWaker {
        doorbell,
        ..TestWaker::default()
    };
    let a = MappedEndpoint::attach(mem.clone(), w.clone(), Some(1)).unwrap();
    let b = MappedEndpoint::attach(mem, w, Some(2)).unwrap();
    (a, b)
}

fn send(
    ep: &mut MappedEndpoint<Mapping, TestWaker>,
    seed: u64,
    total: u64,
    chunk: usize,
    wait: Wait,
) {
    let mut buf = vec![0u8; chunk];
    let mut off = 0u64;
    while off < total {
        let n = chunk.min((total - off) as usize);
        fill(seed, off, &mut buf[..n]);
        ep.write_all(&buf[..n], wait).unwrap();
        off += n as u64;
    }
}

fn recv(
    ep: &mut MappedEndpoint<Mapping, TestWaker>,
    seed: u64,
    total: u64,
    chunk: usize,
    wait: Wait,
) {
    let mut buf = vec![0u8; chunk];
    let mut off = 0u64;
    while off < total {
        let n = ep.read(&mut buf, wait).unwrap();
        assert!(n > 0, "end of file after {off} of {total} bytes");
        assert_eq!(verify(seed, off, &buf[..n]), None, "stream mismatch");
        off += n as u64;
    }
}

fn stream_both_ways(wait: Wait, doorbell: bool) {
    let (mut a, mut b) = pair(doorbell);
    let total = 1 << 20;
    let tb = thread::spawn(move || {
        recv(&mut b, 11, total, 3000, wait);
        send(&mut b, 12, total, 777, wait);
        // End of file once A closed.
        let mut x = [0u8; 8];
        assert_eq!(b.read(&mut x, wait).unwrap(), 0);
    });
    send(&mut a, 11, total, 4096, wait);
    recv(&mut a, 12, total, 512, wait);
    drop(a);
    tb.join().unwrap();
}

#[test]
fn streams_both_ways_spinning() {
    stream_both_ways(Wait::Spin, false);
}

#[test]
fn streams_both_ways_sleeping_with_doorbells() {
    stream_both_ways(Wait::Sleep(Duration::from_micros(20)), true);
}

#[test]
fn streams_both_ways_sleeping_polled() {
    stream_both_ways(Wait::Sleep(Duration::ZERO), false);
}

/// One side mapped, the other a plain endpoint (what the driver runs for
/// read/write): same ring, same protocol.
#[test]
fn interoperates_with_a_plain_endpoint() {
    let mem = Mapping::anonymous(REGION).unwrap();
    let mut plain = Endpoint::attach_any(mem.clone(), &Default::default()).unwrap();
    let mut mapped = MappedEndpoint::attach(mem, TestWaker::default(), None).unwrap();
    let total = 256 * 1024u64;
    let t = thread::spawn(move || {
        let mut buf = vec![0u8; 1000];
        let mut off = 0u64;
        while off < total {
            fill(21, off, &mut buf);
            let n = buf.len().min((total - off) as usize);
            match plain.write(&buf[..n]) {
                Ok(k) => off += k as u64,
                Err(e) => panic!("plain write: {e:?}"),
            }
        }
        // Then read the answer.
        let mut got = 0u64;
        while got < total {
            match plain.read(&mut buf) {
                Ok(0) => thread::yield_now(),
                Ok(k) => {
                    assert_eq!(verify(22, got, &buf[..k]), None);
                    got += k as u64;
                }
                Err(e) => panic!("plain read: {e:?}"),
            }
        }
    });
    recv(&mut mapped, 21, total, 4096, Wait::Spin);
    send(&mut mapped, 22, total, 4096, Wait::Spin);
    t.join().unwrap();
}

/// Nobody asked for a wake-up while both spin: no doorbell. A sleeping
/// reader arms its flag, and the writer rings.
#[test]
fn doorbells_only_when_asked() {
    let (mut a, mut b) = pair(true);
    // Connect both (handshake kicks may ring once each way).
    a.write_all(b"x", Wait::Spin).unwrap();
    let mut one = [0u8; 1];
    assert_eq!(b.read(&mut one, Wait::Spin).unwrap(), 1);
    let rung = a.endpoint().stats().doorbells;
    a.write_all(b"y", Wait::Spin).unwrap();
    assert_eq!(b.read(&mut one, Wait::Spin).unwrap(), 1);
    assert_eq!(
        a.endpoint().stats().doorbells,
        rung,
        "rang with nobody waiting"
    );
    let t = thread::spawn(move || {
        let mut z = [0u8; 1];
        b.read(&mut z, Wait::Sleep(Duration::ZERO)).unwrap();
        z[0]
    });
    // Until the reader has armed its flag (then it sleeps, or is about to).
    let wanted = ring_ctrl(a.endpoint().slot()) + RING_DATA_WANTED;
    let t0 = Instant::now();
    while a.memory().load_u32_acquire(wanted).unwrap() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "reader never armed");
        thread::sleep(Duration::from_millis(1));
    }
    a.write_all(b"z", Wait::Spin).unwrap();
    assert_eq!(t.join().unwrap(), b'z');
    assert!(
        a.endpoint().stats().doorbells > rung,
        "a sleeping reader was not rung"
    );
}

/// A process that scribbles over the ring it mapped breaks its own
/// channel: every later call fails with EIO, nothing panics.
#[test]
fn scribbled_ring_gives_eio() {
    let (mut a, mut b) = pair(false);
    a.write_all(b"hello", Wait::Spin).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(b.read(&mut buf, Wait::Spin).unwrap(), 5);
    // The length word of the next record A would write, where B polls
    // (layout version 2: records with an inline length), says more than
    // the ring holds.
    let slot = a.endpoint().slot() as usize;
    let m = b.memory();
    let ring = m.load_u32_relaxed(HDR_RING0_OFFSET + 8 * slot).unwrap() as usize;
    let size = m.load_u32_relaxed(HDR_RING0_SIZE + 8 * slot).unwrap();
    let cons = m
        .load_u32_relaxed(ring_ctrl(slot as u32) + RING_CONS)
        .unwrap();
    let header = ring + (cons & (size - 1)) as usize;
    m.store_u32_relaxed(header, 0x7fff_fff0).unwrap();
    for _ in 0..3 {
        let e = b.read(&mut buf, Wait::Spin).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EIO), "{e}");
    }
}

/// `EIO` on Linux.
const EIO: i32 = 5;

#[test]
fn info_decodes_the_drivers_bytes() {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    b[12..].copy_from_slice(&7u32.to_le_bytes());
    let i = Info::decode(&b).unwrap();
    assert_eq!((i.mem_len, i.doorbell, i.my_id), (1 << 20, true, 7));
    b[12..].copy_from_slice(&0x1_0000u32.to_le_bytes());
    assert!(Info::decode(&b).is_err());
}

#[test]
fn mapping_bounds_are_checked() {
    let m = Mapping::anonymous(4096).unwrap();
    assert!(m.load_u32_relaxed(4092).is_ok());
    assert!(m.load_u32_relaxed(4096).is_err());
    assert!(m.write_bytes(4090, &[0; 8]).is_err());
}

/// The mapping's own bulk copies move exactly the bytes asked for, at every
/// offset and length around the 8-byte words, and nothing beside them.
#[test]
fn copies_are_exact_at_every_offset_and_length() {
    let m = Mapping::anonymous(4096).unwrap();
    let src: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(13) ^ 0x5c).collect();
    for off in 0..24 {
        for n in 0..40 {
            m.write_bytes(0, &[0xee; 128]).unwrap();
            m.write_bytes(off, &src[..n]).unwrap();
            let mut back = vec![0u8; 128];
            m.read_bytes(0, &mut back).unwrap();
            let mut want = vec![0xeeu8; 128];
            want[off..off + n].copy_from_slice(&src[..n]);
            assert_eq!(back, want, "off={off} n={n}");
            let mut part = vec![0u8; n + 2];
            m.read_bytes(off, &mut part[1..=n]).unwrap();
            assert_eq!(&part[1..=n], &src[..n]);
            assert_eq!((part[0], part[n + 1]), (0, 0));
        }
    }
    assert!(m.read_bytes(4090, &mut [0u8; 7]).is_err());
}
