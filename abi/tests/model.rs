//! Property tests: random operation sequences on a connected pair checked
//! against a `VecDeque` model of the records in flight (layout version 2:
//! each write is one record of a header, the payload and padding to 8
//! bytes, and needs room for the next record's header too), including u32
//! index wrap-around (index base near `u32::MAX`) and exact doorbell
//! decisions (computed in the model with 64-bit absolute ring positions,
//! independently of the ring's u32 arithmetic).
// Tests: a failed unwrap is a test failure with a backtrace, which is
// what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::VecDeque;

use common::{opts, pair, Region};
use ivc_abi::{Endpoint, Readiness, SharedMemory};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Write `len` bytes (0 or 1 = direction).
    Write(u8, usize),
    Read(u8, usize),
    ArmRead(u8, u32),
    ArmWrite(u8, u32),
    Disarm(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, 0usize..300).prop_map(|(d, n)| Op::Write(d, n)),
        4 => (0u8..2, 0usize..300).prop_map(|(d, n)| Op::Read(d, n)),
        1 => (0u8..2, 0u32..300).prop_map(|(d, n)| Op::ArmRead(d, n)),
        1 => (0u8..2, 0u32..300).prop_map(|(d, n)| Op::ArmWrite(d, n)),
        1 => (0u8..2).prop_map(Op::Disarm),
    ]
}

/// One direction of the model: payload bytes and records in flight and
/// wake-up requests, in absolute (never wrapping) ring positions.
#[derive(Default)]
struct Dir {
    fifo: VecDeque<u8>,
    /// Payload lengths of the records not read whole.
    records: VecDeque<u32>,
    /// Payload bytes of the front record already read.
    head_off: u32,
    /// Ring position after the last record written.
    prod: u64,
    /// Ring position of the front record (the consumer index).
    cons: u64,
    /// Reader armed: wake when prod > this.
    data_wake: Option<u64>,
    /// Writer armed: wake when cons > this (may be "negative": i64).
    space_wake: Option<i64>,
    next: u8,
}

/// Ring bytes of a record with `n` payload bytes.
fn record_bytes(n: u32) -> u64 {
    u64::from((8 + n + 7) & !7)
}

/// Largest payload of one record given `free` ring bytes.
fn max_payload(free: u64) -> u64 {
    free.saturating_sub(16)
}

fn base_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        (0u32..2000).prop_map(|k| (u32::MAX - k) & !7),
        any::<u32>().prop_map(|b| b & !7),
    ]
}

proptest! {
    // PROPTEST_CASES overrides the default count for longer runs.
    #![proptest_config(ProptestConfig { cases: common::cases(200), .. ProptestConfig::default() })]

    #[test]
    fn matches_vecdeque_model(
        ring_pow in 6u32..10,
        base in base_strategy(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let size = 1u32 << ring_pow;
        let r = Region::new(8192);
        let (a, b) = pair(r.mem(), &opts(Some(size), base));
        let mut eps = [a, b];
        for e in eps.iter_mut() {
            // Lifecycle kicks from attach/handshake.
            e.needs_doorbell();
        }
        let mut dirs = [Dir::default(), Dir::default()];
        let size64 = u64::from(size);
        for op in ops {
            match op {
                Op::Write(d, len) => {
                    let d = d as usize;
                    let m = &mut dirs[d];
                    let data: Vec<u8> = (0..len).map(|_| { m.next = m.next.wrapping_add(1); m.next }).collect();
                    let n = eps[d].write(&data).unwrap();
                    let free = size64 - (m.prod - m.cons);
                    let expect = (len as u64).min(max_payload(size64)).min(max_payload(free));
                    prop_assert_eq!(n as u64, expect);
                    // Undo the counter for bytes not taken.
                    m.next = m.next.wrapping_sub((len - n) as u8);
                    m.fifo.extend(&data[..n]);
                    let from = m.prod;
                    if n > 0 {
                        m.records.push_back(n as u32);
                        m.prod += record_bytes(n as u32);
                    }
                    let expect = m.data_wake.is_some_and(|w| from <= w && w < m.prod);
                    prop_assert_eq!(eps[d].needs_doorbell_after_write(), expect);
                    let free = size64 - (m.prod - m.cons);
                    prop_assert_eq!(eps[d].writable_bytes().unwrap() as u64, max_payload(free));
                }
                Op::Read(d, len) => {
                    let d = d as usize;
                    let m = &mut dirs[d];
                    let mut buf = vec![0u8; len];
                    let reader = &mut eps[1 - d];
                    prop_assert_eq!(reader.readable_bytes().unwrap(), m.fifo.len());
                    let n = reader.read(&mut buf).unwrap();
                    prop_assert_eq!(n, len.min(m.fifo.len()));
                    let want: Vec<u8> = m.fifo.drain(..n).collect();
                    prop_assert_eq!(&buf[..n], &want[..]);
                    let from = m.cons as i64;
                    let mut left = n as u32;
                    while left > 0 {
                        let front = m.records[0];
                        let step = left.min(front - m.head_off);
                        m.head_off += step;
                        left -= step;
                        if m.head_off == front {
                            m.records.pop_front();
                            m.cons += record_bytes(front);
                            m.head_off = 0;
                        }
                    }
                    let expect = m.space_wake.is_some_and(|w| from <= w && w < m.cons as i64);
                    prop_assert_eq!(reader.needs_doorbell_after_read(), expect);
                }
                Op::ArmRead(d, min) => {
                    let d = d as usize;
                    let m = &mut dirs[d];
                    let min = u64::from(min).clamp(1, max_payload(size64));
                    let res = eps[1 - d].arm_read_wakeup(min as u32).unwrap();
                    let need = u64::from(m.head_off) + 8 + min;
                    m.data_wake = Some(m.cons + need - 1);
                    let ready = m.prod - m.cons >= need;
                    prop_assert_eq!(res == Readiness::Ready, ready);
                }
                Op::ArmWrite(d, min) => {
                    let d = d as usize;
                    let m = &mut dirs[d];
                    let min = u64::from(min).clamp(1, max_payload(size64));
                    let res = eps[d].arm_write_wakeup(min as u32).unwrap();
                    let need = min + 16;
                    m.space_wake = Some(m.prod as i64 - size64 as i64 + need as i64 - 1);
                    let ready = size64 - (m.prod - m.cons) >= need;
                    prop_assert_eq!(res == Readiness::Ready, ready);
                }
                Op::Disarm(d) => {
                    let d = d as usize;
                    let _ = eps[1 - d].set_wants_read_wakeup(false).unwrap();
                    let _ = eps[d].set_wants_write_wakeup(false).unwrap();
                    dirs[d].data_wake = None;
                    dirs[d].space_wake = None;
                }
            }
        }
        for e in eps.iter_mut() {
            prop_assert!(e.broken().is_none());
        }
    }

    /// Whatever an adversary writes into the control area and the header,
    /// every call returns data or an error, never panics, and an endpoint
    /// that reported `Corrupted` keeps reporting it.
    #[test]
    fn garbage_control_words_never_panic(
        writes in proptest::collection::vec((0usize..0x200, any::<u32>()), 1..40),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let r = Region::new(8192);
        let (a, b) = pair(r.mem(), &opts(Some(64), 0));
        let mut eps = [a, b];
        let mem = r.mem();
        let mut writes = writes.into_iter();
        for (i, op) in ops.into_iter().enumerate() {
            if i % 2 == 0 {
                if let Some((off, v)) = writes.next() {
                    mem.store_u32_relaxed(off & !3, v).unwrap();
                }
            }
            let mut buf = [0u8; 300];
            let was_broken = [eps[0].broken(), eps[1].broken()];
            let res = match op {
                Op::Write(d, n) => eps[d as usize].write(&buf[..n]).map(|_| ()),
                Op::Read(d, n) => eps[d as usize].read(&mut buf[..n]).map(|_| ()),
                Op::ArmRead(d, m) => eps[d as usize].arm_read_wakeup(m).map(|_| ()),
                Op::ArmWrite(d, m) => eps[d as usize].arm_write_wakeup(m).map(|_| ()),
                Op::Disarm(d) => eps[d as usize].peer_state().map(|_| ()),
            };
            let _ = eps[0].needs_doorbell();
            let _ = eps[1].needs_doorbell();
            for (k, wb) in was_broken.iter().enumerate() {
                if let Some(e) = wb {
                    prop_assert_eq!(eps[k].broken(), Some(*e));
                }
            }
            if let Op::Write(d, _) | Op::Read(d, _) = op {
                if let Some(e) = was_broken[d as usize] {
                    prop_assert_eq!(res, Err(e));
                }
            }
        }
    }
}

/// Deterministic wrap-around check across the u32 boundary with a full
/// ring at the moment of wrapping (a 64-byte ring holds one record of 48
/// bytes: its header and the next record's header take the rest).
#[test]
fn wrap_with_full_ring() {
    let r = Region::new(8192);
    let (mut a, mut b): (Endpoint<_>, Endpoint<_>) =
        pair(r.mem(), &opts(Some(64), (u32::MAX - 63) & !7));
    let mut out = Vec::new();
    let mut next = 0u8;
    for _ in 0..20 {
        let chunk: Vec<u8> = (0..48)
            .map(|_| {
                next = next.wrapping_add(1);
                next
            })
            .collect();
        assert_eq!(a.write(&chunk).unwrap(), 48);
        assert_eq!(a.write(&chunk).unwrap(), 0);
        let mut buf = [0u8; 48];
        assert_eq!(b.read(&mut buf).unwrap(), 48);
        out.extend_from_slice(&buf);
    }
    let expect: Vec<u8> = (1..=960u32).map(|i| i as u8).collect();
    assert_eq!(out, expect);
    let _ = r.mem().len();
}
