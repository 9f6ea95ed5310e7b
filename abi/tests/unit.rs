//! Unit tests of layout, attach, handshake, data path, lifecycle, wake-up
//! suppression and error latching.
// Tests: a failed unwrap is a test failure with a backtrace, which is
// what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{connect, opts, pair, Region};
use ivc_abi::layout::{
    self, peer_entry, ring_ctrl, CONTROL_SIZE, HDR_MAGIC, HDR_RING1_SIZE, HDR_VERSION,
    MAGIC_FORMATTING, PEER_BROKEN, PEER_CLOSED, PEER_STATE, RING_CONS, RING_PROD,
};
use ivc_abi::{
    AtomicMem, AttachOptions, ChannelError, CopyError, Endpoint, FormatOptions, Layout, Liveness,
    OutOfBounds, PeerState, Readiness, SharedMemory,
};

const SMALL: usize = 8192;

#[test]
fn compute_default_layouts() {
    let l = Layout::compute(1 << 20, &FormatOptions::default()).unwrap();
    assert_eq!(l.region_size, 1 << 20);
    assert_eq!(l.rings[0].offset, CONTROL_SIZE);
    assert_eq!(l.rings[0].size, 256 << 10);
    assert_eq!(l.rings[1].offset, CONTROL_SIZE + (256 << 10));
    assert_eq!(l.rings[1].size, 256 << 10);

    let l = Layout::compute(SMALL, &FormatOptions::default()).unwrap();
    assert_eq!(l.rings[0].size, 2048);

    // Not a power of two: rounded down.
    let l = Layout::compute(3 << 20, &FormatOptions::default()).unwrap();
    assert_eq!(l.region_size, 2 << 20);

    // Huge: capped at 2 GiB.
    let l = Layout::compute(usize::MAX, &FormatOptions::default()).unwrap();
    assert_eq!(l.region_size, 1 << 31);
    assert_eq!(l.rings[0].size, 1 << 29);

    assert_eq!(
        Layout::compute(CONTROL_SIZE, &FormatOptions::default()),
        Err(ChannelError::InvalidLayout)
    );
    assert_eq!(
        Layout::compute(0, &FormatOptions::default()),
        Err(ChannelError::InvalidLayout)
    );
    // Ring size not a power of two / too big.
    for rs in [0, 3, 100, 1 << 31, 4096] {
        let o = FormatOptions {
            ring_size: Some(rs),
            index_base: 0,
        };
        assert_eq!(
            Layout::compute(SMALL, &o),
            Err(ChannelError::InvalidLayout),
            "{rs}"
        );
    }
}

#[test]
fn hello_both_ways() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    assert_eq!(a.write(b"ping").unwrap(), 4);
    assert_eq!(b.write(b"pong!").unwrap(), 5);
    let mut buf = [0u8; 16];
    assert_eq!(b.readable_bytes().unwrap(), 4);
    assert_eq!(b.read(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(a.read(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"pong!");
    assert_eq!(a.read(&mut buf).unwrap(), 0);
    assert_eq!(a.stats().bytes_written, 4);
    assert_eq!(a.stats().bytes_read, 5);
    assert_eq!(a.stats().connections, 1);
}

#[test]
fn not_connected_yet_reads_and_writes_nothing() {
    let r = Region::new(SMALL);
    let mut a = Endpoint::attach(r.mem(), 0).unwrap();
    assert_eq!(a.peer_state().unwrap(), PeerState::Waiting);
    assert_eq!(a.write(b"x").unwrap(), 0);
    assert_eq!(a.read(&mut [0u8; 4]).unwrap(), 0);
    assert_eq!(a.writable_bytes().unwrap(), 0);
    assert_eq!(a.arm_read_wakeup(1).unwrap(), Readiness::MaySleep);
    let mut b = Endpoint::attach(r.mem(), 1).unwrap();
    // b accepted a during its attach; a's accept completes both acks, b
    // sees that on its next call.
    assert_eq!(b.peer_state().unwrap(), PeerState::Connecting);
    assert_eq!(a.peer_state().unwrap(), PeerState::Connected);
    assert_eq!(b.peer_state().unwrap(), PeerState::Connected);
    assert_eq!(a.peer_state().unwrap(), PeerState::Connected);
    // A record header and the next record's header are not payload.
    assert_eq!(a.writable_bytes().unwrap(), 2048 - 16);
    assert_eq!(a.tx_capacity(), 2048 - 16);
}

#[test]
fn fill_exactly_and_drain_with_wrap() {
    // index_base near u32::MAX: indices wrap during the test.
    let r = Region::new(SMALL);
    let o = opts(Some(64), (u32::MAX - 100) & !7);
    let (mut a, mut b) = pair(r.mem(), &o);
    let mut expect = Vec::new();
    let mut got = Vec::new();
    let mut counter = 0u8;
    for round in 0..50 {
        let chunk: Vec<u8> = (0..(round % 70 + 1))
            .map(|_| {
                counter = counter.wrapping_add(1);
                counter
            })
            .collect();
        // A write takes what `writable_bytes` promised (one record).
        let room = a.writable_bytes().unwrap();
        assert!(room <= 48, "{room}");
        let n = a.write(&chunk).unwrap();
        assert_eq!(n, chunk.len().min(room));
        expect.extend_from_slice(&chunk[..n]);
        if round % 3 == 0 {
            let mut buf = [0u8; 40];
            let m = b.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..m]);
        }
        if expect.len() == got.len() {
            assert_eq!(a.writable_bytes().unwrap(), 48, "empty ring");
        }
    }
    let mut buf = [0u8; 64];
    loop {
        let m = b.read(&mut buf).unwrap();
        if m == 0 {
            break;
        }
        got.extend_from_slice(&buf[..m]);
    }
    assert_eq!(got, expect);
    assert!(expect.len() > 200, "{}", expect.len());
}

/// A connected pair on 128-byte rings whose indices stand at 96 (one
/// record of 88 bytes written and read), so the payload of a 50-byte record
/// (at 104, after its header) wraps: pieces of 24 and 26.
fn pair_at_96(r: &Region) -> (Endpoint<AtomicMem<'_>>, Endpoint<AtomicMem<'_>>) {
    let (mut a, mut b) = pair(r.mem(), &opts(Some(128), 0));
    assert_eq!(a.write(&[0u8; 88]).unwrap(), 88);
    assert_eq!(b.read(&mut [0u8; 88]).unwrap(), 88);
    (a, b)
}

/// A copy failure of the tests below (ivc.ko's is `EFAULT`).
#[derive(Debug, PartialEq)]
struct Fault;

#[test]
fn write_with_and_read_with_copy_through_the_callers_hooks_across_the_wrap() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair_at_96(&r);
    let src: Vec<u8> = (1..=50).collect();
    let mut pieces = Vec::new();
    let n = a
        .write_with(src.len(), |mem, off, from, n| {
            pieces.push((from, n));
            mem.write_bytes(off, &src[from..from + n])
                .map_err(|_| Fault)
        })
        .unwrap();
    assert_eq!(n, 50);
    assert_eq!(pieces, vec![(0, 24), (24, 26)]);
    let mut dst = [0u8; 64];
    let m = b
        .read_with(dst.len(), |mem, off, to, n| {
            mem.read_bytes(off, &mut dst[to..to + n]).map_err(|_| Fault)
        })
        .unwrap();
    assert_eq!(m, 50);
    assert_eq!(&dst[..50], &src[..]);
}

#[test]
fn a_failed_first_copy_moves_nothing_and_a_failed_second_moves_the_first_piece() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair_at_96(&r);
    // First piece fails: nothing published, the error is the caller's.
    let e = a.write_with(50, |_, _, _, _| Err(Fault)).unwrap_err();
    assert_eq!(e, CopyError::Copy(Fault));
    assert_eq!(b.readable_bytes().unwrap(), 0);
    // Second piece fails: the first (24 bytes, up to the wrap) is published.
    let n = a
        .write_with(50, |mem, off, from, n| {
            if from > 0 {
                return Err(Fault);
            }
            mem.write_bytes(off, &[7u8; 64][..n]).map_err(|_| Fault)
        })
        .unwrap();
    assert_eq!(n, 24);
    assert_eq!(b.readable_bytes().unwrap(), 24);
    // Fill past the wrap, then the same on the reading side.
    assert_eq!(a.write(&[9u8; 26]).unwrap(), 26);
    let e = b.read_with(64, |_, _, _, _| Err(Fault)).unwrap_err();
    assert_eq!(e, CopyError::Copy(Fault));
    assert_eq!(
        b.readable_bytes().unwrap(),
        50,
        "a failed copy consumes nothing"
    );
    let mut got = Vec::new();
    let m = b
        .read_with(64, |mem, off, to, n| {
            if to > 0 {
                return Err(Fault);
            }
            let mut piece = vec![0u8; n];
            mem.read_bytes(off, &mut piece).map_err(|_| Fault)?;
            got.extend_from_slice(&piece);
            Ok(())
        })
        .unwrap();
    assert_eq!((m, got.as_slice()), (24, &[7u8; 24][..]));
    assert_eq!(b.readable_bytes().unwrap(), 26);
    let mut rest = [0u8; 26];
    assert_eq!(b.read(&mut rest).unwrap(), 26);
    assert_eq!(rest, [9u8; 26]);
}

#[test]
fn write_with_reports_channel_errors_as_write_does() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &opts(Some(64), 0));
    b.close();
    let e = a
        .write_with(8, |_, _, _, _| Ok::<(), Fault>(()))
        .unwrap_err();
    assert_eq!(e, CopyError::Channel(ChannelError::PeerGone));
}

#[test]
fn full_ring_returns_zero() {
    let r = Region::new(SMALL);
    let (mut a, _b) = pair(r.mem(), &opts(Some(64), 0));
    assert_eq!(a.write(&[1; 60]).unwrap(), 48);
    assert_eq!(a.write(&[1; 60]).unwrap(), 0);
    assert_eq!(a.write(&[]).unwrap(), 0);
}

#[test]
fn format_claims_and_errors() {
    let r = Region::new(SMALL);
    let no_format = AttachOptions {
        doorbell_id: None,
        format: None,
    };
    assert_eq!(
        Endpoint::attach_with(r.mem(), 0, &no_format).err(),
        Some(ChannelError::NotFormatted)
    );
    assert_eq!(
        Endpoint::attach(r.mem(), 2).err(),
        Some(ChannelError::InvalidSlot)
    );
    // Another side is formatting.
    r.mem()
        .store_u32_relaxed(HDR_MAGIC, MAGIC_FORMATTING)
        .unwrap();
    assert_eq!(Endpoint::attach(r.mem(), 0).err(), Some(ChannelError::Busy));
    // A forced format clears it.
    layout::format(&r.mem(), &FormatOptions::default()).unwrap();
    let a = Endpoint::attach_with(r.mem(), 0, &no_format).unwrap();
    drop(a);
    // A version 1 region (or any other version): refused, not
    // reformatted, and the mismatch can be told.
    assert_eq!(layout::version_mismatch(&r.mem()), None);
    r.mem().store_u32_relaxed(HDR_VERSION, 1).unwrap();
    assert_eq!(
        Endpoint::attach(r.mem(), 0).err(),
        Some(ChannelError::Incompatible)
    );
    let v = layout::version_mismatch(&r.mem()).unwrap();
    assert_eq!((v.found, v.supported), (1, 2));
    assert_eq!(
        v.to_string(),
        "channel layout version 1 found, this build supports version 2 only"
    );
    assert_eq!(
        r.mem().load_u32_relaxed(HDR_VERSION).unwrap(),
        1,
        "not reformatted"
    );
    r.mem()
        .store_u32_relaxed(HDR_VERSION, layout::VERSION)
        .unwrap();
    // Ring past the end: corrupted header.
    r.mem().store_u32_relaxed(HDR_RING1_SIZE, 1 << 20).unwrap();
    assert_eq!(
        Endpoint::attach(r.mem(), 0).err(),
        Some(ChannelError::Corrupted)
    );
    // Memory too small to format.
    let tiny = Region::new(1024);
    assert_eq!(
        Endpoint::attach(tiny.mem(), 0).err(),
        Some(ChannelError::InvalidLayout)
    );
    let empty = Region::new(0);
    assert_eq!(
        Endpoint::attach(empty.mem(), 0).err(),
        Some(ChannelError::InvalidLayout)
    );
}

#[test]
fn attach_any_takes_free_slots() {
    let r = Region::new(SMALL);
    let o = AttachOptions::default();
    let mut a = Endpoint::attach_any(r.mem(), &o).unwrap();
    let mut b = Endpoint::attach_any(r.mem(), &o).unwrap();
    assert_eq!((a.slot(), b.slot()), (0, 1));
    assert_eq!(
        Endpoint::attach_any(r.mem(), &o).err(),
        Some(ChannelError::NoFreeSlot)
    );
    connect(&mut a, &mut b);
    b.close();
    // A closed slot is free again.
    let c = Endpoint::attach_any(r.mem(), &o).unwrap();
    assert_eq!(c.slot(), 1);
}

#[test]
fn clean_close_drains_then_eof_then_reconnect() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"last words").unwrap();
    a.close();
    assert_eq!(a.write(b"x"), Err(ChannelError::Closed));
    assert_eq!(b.peer_state().unwrap(), PeerState::Gone);
    assert_eq!(b.write(b"x"), Err(ChannelError::PeerGone));
    assert_eq!(b.arm_read_wakeup(1).unwrap(), Readiness::Ready);
    let mut buf = [0u8; 4];
    let mut got = Vec::new();
    loop {
        match b.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(ChannelError::PeerGone) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, b"last words");
    // EOF is reported once; writes keep failing until a new peer arrives.
    assert_eq!(b.read(&mut buf).unwrap(), 0);
    assert_eq!(b.write(b"x"), Err(ChannelError::PeerGone));
    assert_eq!(b.peer_state().unwrap(), PeerState::Gone);

    let mut a2 = Endpoint::attach(r.mem(), 0).unwrap();
    assert_ne!(a2.generation(), a.generation());
    connect(&mut a2, &mut b);
    assert_eq!(b.write(b"again").unwrap(), 5);
    let mut buf = [0u8; 8];
    assert_eq!(a2.read(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"again");
    assert_eq!(b.stats().connections, 2);
}

#[test]
fn crashed_peer_restart_waits_for_drain() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    b.write(b"for old a").unwrap();
    a.write(b"from old a").unwrap();
    // a dies without closing; its state stays UP.
    std::mem::forget(a);
    let mut a2 = Endpoint::attach(r.mem(), 0).unwrap();
    // b still drains what old a left; a2 must wait for that.
    assert_eq!(a2.peer_state().unwrap(), PeerState::Waiting);
    assert_eq!(b.peer_state().unwrap(), PeerState::Gone);
    assert_eq!(a2.write(b"new").unwrap(), 0);
    let mut buf = [0u8; 32];
    assert_eq!(b.read(&mut buf).unwrap(), 10);
    assert_eq!(&buf[..10], b"from old a");
    assert_eq!(b.read(&mut buf), Err(ChannelError::PeerGone));
    connect(&mut a2, &mut b);
    // Nothing of the old connection reaches the new incarnation.
    assert_eq!(a2.read(&mut buf).unwrap(), 0);
    a2.write(b"new").unwrap();
    assert_eq!(b.read(&mut buf).unwrap(), 3);
}

#[test]
fn write_side_eof_then_reconnect_without_reader() {
    let r = Region::new(SMALL);
    let (a, mut b) = pair(r.mem(), &AttachOptions::default());
    drop(a); // clean close
    assert_eq!(b.write(b"x"), Err(ChannelError::PeerGone));
    // A new peer is accepted even though nobody read the EOF; the read
    // side still gets its EOF first.
    let mut a2 = Endpoint::attach(r.mem(), 0).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(b.read(&mut buf), Err(ChannelError::PeerGone));
    connect(&mut a2, &mut b);
    assert_eq!(b.write(b"ok").unwrap(), 2);
}

#[test]
fn reconnect_discards_undrained_data() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"never read").unwrap();
    drop(a);
    let mut a2 = Endpoint::attach(r.mem(), 0).unwrap();
    b.reconnect().unwrap();
    connect(&mut a2, &mut b);
    assert_eq!(b.read(&mut [0u8; 16]).unwrap(), 0);
}

#[test]
fn reconnect_on_a_live_connection_is_clean_for_the_peer() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"before").unwrap();
    b.write(b"unread by b's peer").unwrap();
    let g = b.generation();
    b.reconnect().unwrap();
    assert_ne!(b.generation(), g);
    assert_eq!(b.write(b"x"), Err(ChannelError::PeerGone));
    // a drains what b wrote, sees the end, then both connect again.
    let mut buf = [0u8; 64];
    assert_eq!(a.read(&mut buf).unwrap(), 18);
    assert_eq!(a.read(&mut buf), Err(ChannelError::PeerGone));
    connect(&mut a, &mut b);
    assert_eq!(b.read(&mut buf).unwrap(), 0);
    a.write(b"after").unwrap();
    assert_eq!(b.read(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"after");
    assert!(a.broken().is_none() && b.broken().is_none());
}

#[test]
fn vmm_marks_peer_absent() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"abc").unwrap();
    layout::mark_absent(&r.mem(), 0).unwrap();
    assert_eq!(
        layout::mark_absent(&r.mem(), 7),
        Err(ChannelError::InvalidSlot)
    );
    let mut buf = [0u8; 8];
    assert_eq!(b.read(&mut buf).unwrap(), 3);
    assert_eq!(b.read(&mut buf), Err(ChannelError::PeerGone));
    std::mem::forget(a);
}

#[test]
fn reformat_is_reset_and_latched() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    layout::format(&r.mem(), &FormatOptions::default()).unwrap();
    assert_eq!(a.write(b"x"), Err(ChannelError::Reset));
    assert_eq!(a.read(&mut [0; 4]), Err(ChannelError::Reset));
    assert_eq!(b.peer_state(), Err(ChannelError::Reset));
    assert_eq!(a.broken(), Some(ChannelError::Reset));
    drop(a);
    drop(b);
    // The new format is usable.
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"y").unwrap();
    assert_eq!(b.read(&mut [0; 4]).unwrap(), 1);
}

#[test]
fn corrupted_index_latches_and_tells_peer() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"abcd").unwrap();
    // a's producer index now claims more than the ring holds (the data path
    // polls record headers; the readable count reads the index).
    r.mem()
        .store_u32_relaxed(ring_ctrl(0) + RING_PROD, 5000)
        .unwrap();
    assert_eq!(b.readable_bytes(), Err(ChannelError::Corrupted));
    // Latched, even after the value is repaired.
    r.mem()
        .store_u32_relaxed(ring_ctrl(0) + RING_PROD, 4)
        .unwrap();
    assert_eq!(b.read(&mut [0; 4]), Err(ChannelError::Corrupted));
    assert_eq!(b.write(b"x"), Err(ChannelError::Corrupted));
    assert_eq!(b.readable_bytes(), Err(ChannelError::Corrupted));
    assert_eq!(
        r.mem()
            .load_u32_relaxed(peer_entry(1) + PEER_STATE)
            .unwrap(),
        PEER_BROKEN
    );
    assert!(b.needs_doorbell_after_read());
    assert_eq!(a.peer_state().unwrap(), PeerState::Gone);
    assert_eq!(a.write(b"x"), Err(ChannelError::PeerGone));
}

#[test]
fn consumer_index_going_backwards_or_ahead_is_corruption() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(&[7; 100]).unwrap();
    a.write(&[7; 100]).unwrap();
    b.read(&mut [0; 160]).unwrap();
    // The first record (112 bytes with its header) is free again, the
    // second not yet: space comes back a whole record at a time.
    assert_eq!(a.writable_bytes().unwrap(), 2048 - 112 - 16);
    // Backwards.
    r.mem()
        .store_u32_relaxed(ring_ctrl(0) + RING_CONS, 10)
        .unwrap();
    assert_eq!(a.writable_bytes(), Err(ChannelError::Corrupted));

    let r = Region::new(SMALL);
    let (mut a, _b) = pair(r.mem(), &AttachOptions::default());
    a.write(&[7; 100]).unwrap();
    // Ahead of what was written.
    r.mem()
        .store_u32_relaxed(ring_ctrl(0) + RING_CONS, 150)
        .unwrap();
    // A write that fits in the space already known free does not look at
    // the index (that saves a cache miss per message); the next look does,
    // and the error is latched.
    assert_eq!(a.write(b"x"), Ok(1));
    assert_eq!(a.write(&[7; 2048]), Err(ChannelError::Corrupted));
    assert_eq!(a.write(b"x"), Err(ChannelError::Corrupted));
}

#[test]
fn reader_polls_record_headers_not_the_producer_index() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(&[3; 100]).unwrap();
    assert_eq!(b.read(&mut [0; 10]), Ok(10));
    // The data path never reads the producer index (that line stays in
    // the producer's cache); the readable count does, and finds it corrupt.
    r.mem()
        .store_u32_relaxed(ring_ctrl(0) + RING_PROD, 4000)
        .unwrap();
    assert_eq!(b.read(&mut [0; 200]), Ok(90));
    assert_eq!(b.read(&mut [0; 1]), Ok(0));
    assert_eq!(b.readable_bytes(), Err(ChannelError::Corrupted));
    assert_eq!(b.read(&mut [0; 1]), Err(ChannelError::Corrupted));
}

#[test]
fn bad_record_headers_are_corruption() {
    let ring0 = |r: &Region| {
        let l = ivc_abi::Layout::read(&r.mem()).unwrap();
        l.rings[0].offset
    };
    // A length beyond the largest record.
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"abc").unwrap();
    r.mem()
        .store_u32_relaxed(ring0(&r) + layout::REC_LEN, 2048 - 15)
        .unwrap();
    assert_eq!(b.read(&mut [0; 8]), Err(ChannelError::Corrupted));
    // A pad that does not end at the ring's end.
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"abc").unwrap();
    r.mem()
        .store_u32_relaxed(ring0(&r) + layout::REC_LEN, layout::REC_PAD | 64)
        .unwrap();
    assert_eq!(b.read(&mut [0; 8]), Err(ChannelError::Corrupted));
    // A record the producer index does not cover: the readable count
    // checks it (the data path cannot without reading the index).
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(b"abc").unwrap();
    r.mem()
        .store_u32_relaxed(ring0(&r) + layout::REC_LEN, 200)
        .unwrap();
    assert_eq!(b.readable_bytes(), Err(ChannelError::Corrupted));
}

#[test]
fn producer_index_going_backwards_is_corruption() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.write(&[1; 50]).unwrap();
    assert_eq!(b.readable_bytes().unwrap(), 50);
    b.read(&mut [0; 10]).unwrap();
    // Still within one ring of b's consumer index, but behind what b saw.
    r.mem()
        .store_u32_relaxed(ring_ctrl(0) + RING_PROD, 20)
        .unwrap();
    assert_eq!(b.readable_bytes(), Err(ChannelError::Corrupted));
}

#[test]
fn unknown_peer_state_is_corruption() {
    let r = Region::new(SMALL);
    let (mut a, _b) = pair(r.mem(), &AttachOptions::default());
    r.mem()
        .store_u32_relaxed(peer_entry(1) + PEER_STATE, 77)
        .unwrap();
    assert_eq!(a.peer_state(), Err(ChannelError::Corrupted));
}

#[test]
fn doorbell_only_when_asked() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    // Consume the lifecycle kicks from attach/handshake.
    a.needs_doorbell();
    b.needs_doorbell();
    assert!(!a.needs_doorbell());

    // Reader not waiting: no doorbell.
    a.write(b"1").unwrap();
    assert!(!a.needs_doorbell_after_write());
    b.read(&mut [0; 8]).unwrap();
    assert!(!b.needs_doorbell_after_read());

    // Reader arms: the next write rings, once.
    assert_eq!(b.arm_read_wakeup(1).unwrap(), Readiness::MaySleep);
    a.write(b"2").unwrap();
    assert!(a.needs_doorbell_after_write());
    a.write(b"3").unwrap();
    assert!(!a.needs_doorbell_after_write());
    // Data already there: arming says Ready.
    assert_eq!(b.arm_read_wakeup(1).unwrap(), Readiness::Ready);
    b.read(&mut [0; 8]).unwrap();

    // Threshold of 20 bytes: the wake index counts ring bytes (headers
    // too), so the doorbell may come early, never late. 9 bytes are a
    // 24-byte record: below the 8 + 20 the reader asked for; one more
    // record (16 bytes) crosses it.
    assert_eq!(b.arm_read_wakeup(20).unwrap(), Readiness::MaySleep);
    a.write(&[0; 9]).unwrap();
    assert!(!a.needs_doorbell_after_write());
    a.write(&[0; 1]).unwrap();
    assert!(a.needs_doorbell_after_write());
    let _ = b.set_wants_read_wakeup(false).unwrap();
    b.read(&mut [0; 64]).unwrap();
    a.write(b"4").unwrap();
    assert!(!a.needs_doorbell_after_write());
    b.read(&mut [0; 64]).unwrap();

    // Writer side: fill with 100-byte records (112 ring bytes each), arm
    // for space, the reader frees one record.
    while a.write(&[0; 100]).unwrap() == 100 {}
    assert_eq!(a.arm_write_wakeup(100).unwrap(), Readiness::MaySleep);
    b.read(&mut [0; 99]).unwrap();
    assert!(!b.needs_doorbell_after_read());
    b.read(&mut [0; 1]).unwrap();
    assert!(b.needs_doorbell_after_read());
    assert_eq!(a.arm_write_wakeup(100).unwrap(), Readiness::Ready);
    assert_eq!(a.set_wants_write_wakeup(true).unwrap(), Readiness::Ready);
    let _ = a.set_wants_write_wakeup(false).unwrap();
    b.read(&mut [0; 10]).unwrap();
    assert!(!b.needs_doorbell_after_read());
}

#[test]
fn lifecycle_changes_always_ring() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    a.needs_doorbell();
    b.needs_doorbell();
    a.close();
    assert!(a.needs_doorbell());
    assert!(!a.needs_doorbell());
    assert_eq!(
        r.mem()
            .load_u32_relaxed(peer_entry(0) + PEER_STATE)
            .unwrap(),
        PEER_CLOSED
    );
    // b accepting a new incarnation (once its user comes back after the
    // end of file) rings too.
    let mut a2 = Endpoint::attach(r.mem(), 0).unwrap();
    assert!(a2.needs_doorbell());
    assert_eq!(b.read(&mut [0; 1]), Err(ChannelError::PeerGone));
    b.resume();
    b.peer_state().unwrap();
    assert!(b.needs_doorbell());
}

/// Two programs in turn on each side: A1 sends and closes, B1 reads to the
/// end of file and closes, then A2 and B2 talk. A2 may open while B1 is
/// still between its end of file and its close; B1's endpoint must not take
/// A2 for a new peer then (a poller's passive `peer_state` runs in that
/// window), or A2's data would go into a connection nobody reads and be lost
/// when B1 closes. (Before `held`, B1 accepted A2 here: A2's write went
/// through and the bytes vanished with B1's close.)
#[test]
fn a_reader_that_saw_eof_does_not_take_the_next_peer() {
    let r = Region::new(SMALL);
    let (mut a1, mut b1) = pair(r.mem(), &AttachOptions::default());
    a1.write(b"first").unwrap();
    a1.close();
    let mut buf = [0u8; 16];
    assert_eq!(b1.read(&mut buf).unwrap(), 5);
    assert_eq!(b1.read(&mut buf), Err(ChannelError::PeerGone));

    // A2 opens and wants to write; B1's poller looks at the peer entry.
    let mut a2 = Endpoint::attach(r.mem(), 0).unwrap();
    for _ in 0..3 {
        assert_eq!(b1.peer_state().unwrap(), PeerState::Gone);
        assert_eq!(b1.readable_bytes().unwrap(), 0);
        assert_eq!(b1.writable_bytes().unwrap(), 0);
        b1.heartbeat().unwrap();
        assert_eq!(a2.peer_state().unwrap(), PeerState::Waiting);
        assert_eq!(
            a2.write(b"second").unwrap(),
            0,
            "not connected: the write waits"
        );
    }
    b1.close();

    // B2 opens: A2's data reaches it, whole.
    let mut b2 = Endpoint::attach(r.mem(), 1).unwrap();
    connect(&mut a2, &mut b2);
    assert_eq!(a2.write(b"second").unwrap(), 6);
    assert_eq!(b2.read(&mut buf).unwrap(), 6);
    assert_eq!(&buf[..6], b"second");
}

/// The same user coming back after the end of file (it reads, writes or
/// polls again) does get the next peer: the reconnect of ivc-polltest.
#[test]
fn a_user_who_comes_back_after_eof_gets_the_next_peer() {
    let r = Region::new(SMALL);
    let (mut a1, mut b) = pair(r.mem(), &AttachOptions::default());
    a1.close();
    let mut buf = [0u8; 8];
    assert_eq!(b.read(&mut buf), Err(ChannelError::PeerGone));
    let mut a2 = Endpoint::attach(r.mem(), 0).unwrap();
    assert_eq!(b.peer_state().unwrap(), PeerState::Gone, "held");
    // A read (or write, or arm) is the user coming back...
    assert_eq!(b.read(&mut buf).unwrap(), 0);
    assert_eq!(b.peer_state().unwrap(), PeerState::Connecting);
    connect(&mut a2, &mut b);
    // ...and so is `resume` (poll).
    a2.close();
    assert_eq!(b.read(&mut buf), Err(ChannelError::PeerGone));
    let mut a3 = Endpoint::attach(r.mem(), 0).unwrap();
    assert_eq!(b.peer_state().unwrap(), PeerState::Gone, "held");
    b.resume();
    assert_eq!(b.peer_state().unwrap(), PeerState::Connecting);
    assert_eq!(a3.peer_state().unwrap(), PeerState::Connected);
    // A write that reported the end holds too, until the user's next call.
    a3.close();
    assert_eq!(b.write(b"x"), Err(ChannelError::PeerGone));
    let mut a4 = Endpoint::attach(r.mem(), 0).unwrap();
    assert_eq!(b.peer_state().unwrap(), PeerState::Gone, "held after EPIPE");
    assert_eq!(
        b.read(&mut buf),
        Err(ChannelError::PeerGone),
        "the owed end of file"
    );
    assert_eq!(b.write(b"y").unwrap(), 0, "comes back: connecting");
    assert_eq!(a4.peer_state().unwrap(), PeerState::Connected);
}

#[test]
fn heartbeat_and_doorbell_id() {
    let r = Region::new(SMALL);
    let o = AttachOptions {
        doorbell_id: Some(3),
        ..AttachOptions::default()
    };
    let mut a = Endpoint::attach_with(r.mem(), 0, &o).unwrap();
    let mut b = Endpoint::attach(r.mem(), 1).unwrap();
    assert_eq!(b.peer_doorbell_id().unwrap(), Some(3));
    assert_eq!(a.peer_doorbell_id().unwrap(), None);
    assert_eq!(b.peer_heartbeat().unwrap(), 0);
    a.heartbeat().unwrap();
    a.heartbeat().unwrap();
    assert_eq!(b.peer_heartbeat().unwrap(), 2);
    connect(&mut a, &mut b);
    assert_eq!(a.tx_ring_size(), 2048);
    assert_eq!(a.rx_ring_size(), 2048);
    assert_eq!(a.layout().region_size, SMALL);
}

#[test]
fn atomic_mem_bounds_and_partial_words() {
    let r = Region::new(64);
    let m = r.mem();
    assert_eq!(m.len(), 64);
    assert!(!m.is_empty());
    assert_eq!(m.load_u32_relaxed(64), Err(OutOfBounds));
    assert_eq!(m.load_u32_acquire(usize::MAX - 1), Err(OutOfBounds));
    assert_eq!(m.load_u32_relaxed(2), Err(OutOfBounds));
    assert_eq!(m.store_u32_release(61, 1), Err(OutOfBounds));
    assert_eq!(m.compare_exchange_u32(64, 0, 1), Err(OutOfBounds));
    assert_eq!(m.read_bytes(60, &mut [0; 5]), Err(OutOfBounds));
    assert_eq!(m.read_bytes(usize::MAX, &mut [0; 2]), Err(OutOfBounds));
    assert_eq!(m.write_bytes(63, &[0; 2]), Err(OutOfBounds));
    assert_eq!(m.read_bytes(64, &mut []), Ok(()));

    m.write_bytes(0, &[0xee; 64]).unwrap();
    m.write_bytes(5, &[1, 2, 3, 4, 5, 6, 7]).unwrap();
    let mut all = [0u8; 64];
    m.read_bytes(0, &mut all).unwrap();
    assert_eq!(
        &all[..14],
        &[0xee, 0xee, 0xee, 0xee, 0xee, 1, 2, 3, 4, 5, 6, 7, 0xee, 0xee]
    );
    let mut mid = [0u8; 6];
    m.read_bytes(6, &mut mid).unwrap();
    assert_eq!(mid, [2, 3, 4, 5, 6, 7]);
    // u32 fields are little-endian in memory.
    m.store_u32_relaxed(16, 0x0403_0201).unwrap();
    m.read_bytes(16, &mut mid[..4]).unwrap();
    assert_eq!(&mid[..4], &[1, 2, 3, 4]);
    assert_eq!(
        m.compare_exchange_u32(16, 0x0403_0201, 9),
        Ok(Ok(0x0403_0201))
    );
    assert_eq!(m.compare_exchange_u32(16, 0, 1), Ok(Err(9)));

    let mut raw = vec![0u32; 4];
    // SAFETY: `raw` outlives the view and is only accessed through it here.
    let v = unsafe { AtomicMem::new(raw.as_mut_ptr().cast(), 15) }.unwrap();
    assert_eq!(v.len(), 12);
    // SAFETY: null is rejected before any use.
    assert!(unsafe { AtomicMem::new(std::ptr::null_mut(), 4) }.is_none());
    // SAFETY: misalignment is rejected before any use.
    assert!(unsafe { AtomicMem::new(raw.as_mut_ptr().cast::<u8>().wrapping_add(1), 4) }.is_none());
}

#[test]
fn closed_endpoint_refuses() {
    let r = Region::new(SMALL);
    let (mut a, _b) = pair(r.mem(), &AttachOptions::default());
    a.close();
    a.close();
    assert_eq!(a.read(&mut [0; 1]), Err(ChannelError::Closed));
    assert_eq!(a.peer_state(), Err(ChannelError::Closed));
    assert_eq!(a.heartbeat(), Err(ChannelError::Closed));
    assert_eq!(a.arm_write_wakeup(1), Err(ChannelError::Closed));
    assert_eq!(a.set_wants_read_wakeup(false), Err(ChannelError::Closed));
}

#[test]
fn error_display() {
    assert_eq!(ChannelError::PeerGone.to_string(), "peer is gone");
    assert_eq!(ChannelError::from(OutOfBounds), ChannelError::Corrupted);
}

#[test]
fn liveness_gives_up_on_a_peer_whose_heartbeat_stands_still() {
    let r = Region::new(SMALL);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    b.write(b"last words").unwrap();
    let mut live = Liveness::new();
    // The peer beats between our looks: never a verdict, however long.
    for t in 0..100u64 {
        b.heartbeat().unwrap();
        assert!(!live.check(&mut a, t * 1000, 5000));
    }
    // It stops at 99 s (the look at 99 s saw its last beat). Not given up
    // at 104 s (5 s still), given up at 104.001 s.
    assert!(!live.check(&mut a, 104_000, 5000));
    assert_eq!(a.peer_state().unwrap(), PeerState::Connected);
    assert!(live.check(&mut a, 104_001, 5000));
    // What it sent is still read, then end of file.
    let mut buf = [0u8; 16];
    assert_eq!(a.read(&mut buf), Ok(10));
    assert_eq!(&buf[..10], b"last words");
    assert_eq!(a.read(&mut buf), Err(ChannelError::PeerGone));
    // Nothing connected: no more verdicts.
    assert!(!live.check(&mut a, 1_000_000, 5000));
}

#[test]
fn liveness_with_timeout_zero_never_gives_up() {
    let r = Region::new(SMALL);
    let (mut a, _b) = pair(r.mem(), &AttachOptions::default());
    let mut live = Liveness::new();
    for t in [0u64, 1, 1_000_000, u64::MAX] {
        assert!(!live.check(&mut a, t, 0));
    }
    assert_eq!(a.peer_state().unwrap(), PeerState::Connected);
}

/// Version 2's window: a ping-pong of small messages cycles through the
/// first few KiB of a large ring (pads to the ring's end), so the lines it
/// uses stay in both caches; a reader that lags gets the whole ring.
#[test]
fn ping_pong_stays_in_the_window_and_a_lagging_reader_gets_the_whole_ring() {
    // Under Miri (every word copied one by one, interpreted) a 16 KiB ring,
    // the smallest with a window, and as many laps.
    let (region, messages) = if cfg!(miri) {
        (64 << 10, 1_200u32)
    } else {
        (1 << 20, 20_000u32)
    };
    let r = Region::new(region);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    let ring = ivc_abi::Layout::read(&r.mem()).unwrap().rings[0];
    assert_eq!(ring.size as usize, region / 4);
    let mut buf = [0u8; 64];
    for i in 0..messages {
        let msg = [i as u8; 64];
        assert_eq!(a.write(&msg).unwrap(), 64);
        assert_eq!(b.readable_bytes().unwrap(), 64, "message {i}");
        assert_eq!(b.read(&mut buf).unwrap(), 64);
        assert_eq!(buf, msg, "message {i}");
    }
    // That many records of 72 bytes would have walked the ring five times;
    // nothing past the window and a record was ever written.
    let mut tail = vec![0u8; ring.size as usize - 8192];
    r.mem().read_bytes(ring.offset + 8192, &mut tail).unwrap();
    assert!(tail.iter().all(|&b| b == 0), "records beyond the window");
    // The reader stops: the writer fills the whole ring, no pads.
    let mut sent = Vec::new();
    let mut k = 0u8;
    loop {
        k = k.wrapping_add(1);
        let n = a.write(&[k; 64]).unwrap();
        sent.extend_from_slice(&[k; 64][..n]);
        if n < 64 {
            break;
        }
    }
    assert!(
        sent.len() > ring.size as usize * 3 / 4,
        "{} bytes",
        sent.len()
    );
    assert!(b.readable_bytes().unwrap() > 0);
    let mut got = Vec::new();
    let mut big = vec![0u8; 10_000];
    loop {
        let n = b.read(&mut big).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&big[..n]);
    }
    assert_eq!(got, sent);
}

/// The window is for small records: a stream of larger writes whose reader
/// keeps up walks the whole ring instead of going back to its beginning
/// whenever the reader has caught up (which halved the throughput of 64 KiB
/// writes between two VMs: partial writes into a nearly full ring make
/// records of every size).
#[test]
fn larger_records_walk_the_ring_even_when_the_reader_keeps_up() {
    let r = Region::new(1 << 20);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    let ring = ivc_abi::Layout::read(&r.mem()).unwrap().rings[0];
    assert!(ring.size >= 4 * layout::REC_WINDOW);
    let n = layout::REC_WINDOW as usize / 2;
    assert!(n > layout::REC_WINDOW_MAX_RECORD as usize);
    let msg = vec![7u8; n];
    let mut buf = vec![0u8; n];
    for _ in 0..3 {
        assert_eq!(a.write(&msg).unwrap(), n);
        assert_eq!(b.read(&mut buf).unwrap(), n);
    }
    // The third record starts past the window with the reader caught up,
    // where a small one would pad to the ring's end; it follows the second.
    let at = ring.offset + 2 * (n + 8);
    assert!(at - ring.offset >= layout::REC_WINDOW as usize);
    assert_eq!(r.mem().load_u32_relaxed(at).unwrap(), n as u32);
}

/// A grant over several small writes (ivc-vmm's pio `TX_FREE`) holds even
/// when the writer crosses the window with the reader caught up, the moment
/// at which it would otherwise pad to the ring's end and keep only about a
/// window of room.
#[test]
fn a_grant_in_pieces_is_kept_across_the_window() {
    let r = Region::new(1 << 20);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    let mut buf = [0u8; 64];
    // 56 records of 64 bytes: 4032 ring bytes, just below the window.
    for _ in 0..56 {
        assert_eq!(a.write(&[1; 64]).unwrap(), 64);
        assert_eq!(b.read(&mut buf).unwrap(), 64);
    }
    let grant = a.writable_bytes_in_pieces(1).unwrap();
    assert_eq!(grant, ((256 << 10) - 8) / 16);
    // Past the window, the reader caught up: a pad would be due now.
    assert_eq!(a.write(&[2; 64]).unwrap(), 64);
    assert_eq!(b.read(&mut buf).unwrap(), 64);
    let mut left = grant - 64;
    while left > 0 {
        assert_eq!(a.write(&[3]).unwrap(), 1, "{left} of the grant left");
        left -= 1;
    }
    // Without a grant the writer does pad when the reader has caught up.
    let r = Region::new(1 << 20);
    let (mut a, mut b) = pair(r.mem(), &AttachOptions::default());
    for _ in 0..57 {
        assert_eq!(a.write(&[1; 64]).unwrap(), 64);
        assert_eq!(b.read(&mut buf).unwrap(), 64);
    }
    assert_eq!(a.write(&[2; 64]).unwrap(), 64);
    assert!(
        a.writable_bytes().unwrap() < 8 << 10,
        "padded: about a window of room until the reader passes the pad"
    );
    assert_eq!(b.read(&mut buf).unwrap(), 64);
    assert!(a.writable_bytes().unwrap() > 200 << 10);
}
