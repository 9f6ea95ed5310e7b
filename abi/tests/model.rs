//! Property tests: random operation sequences on a connected pair checked
//! against a `VecDeque` model, including u32 index wrap-around (index base
//! near `u32::MAX`) and exact doorbell decisions (computed in the model with
//! 64-bit absolute positions, independently of the ring's u32 arithmetic).
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

/// One direction of the model: bytes in flight and wake-up requests, in
/// absolute (never wrapping) positions.
#[derive(Default)]
struct Dir {
    fifo: VecDeque<u8>,
    written: u64,
    read: u64,
    /// Reader armed: wake when written > this.
    data_wake: Option<u64>,
    /// Writer armed: wake when read > this (may be "negative": i64).
    space_wake: Option<i64>,
    next: u8,
}

fn base_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        (0u32..2000).prop_map(|k| u32::MAX - k),
        any::<u32>(),
    ]
}

proptest! {
    // PROPTEST_CASES overrides the default count for longer runs.
    #![proptest_config(ProptestConfig { cases: common::cases(200), .. ProptestConfig::default() })]

    #[test]
    fn matches_vecdeque_model(
        ring_pow in 2u32..9,
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
        for op in ops {
            match op {
                Op::Write(d, len) => {
                    let d = d as usize;
                    let m = &mut dirs[d];
                    let data: Vec<u8> = (0..len).map(|_| { m.next = m.next.wrapping_add(1); m.next }).collect();
                    let n = eps[d].write(&data).unwrap();
                    let free = size as usize - m.fifo.len();
                    prop_assert_eq!(n, len.min(free));
                    // Undo the counter for bytes not taken.
                    m.next = m.next.wrapping_sub((len - n) as u8);
                    m.fifo.extend(&data[..n]);
                    let from = m.written;
                    m.written += n as u64;
                    let expect = m.data_wake.is_some_and(|w| from <= w && w < m.written);
                    prop_assert_eq!(eps[d].needs_doorbell_after_write(), expect);
                    prop_assert_eq!(eps[d].writable_bytes().unwrap(), size as usize - m.fifo.len());
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
                    let from = m.read as i64;
                    m.read += n as u64;
                    let expect = m.space_wake.is_some_and(|w| from <= w && w < m.read as i64);
                    prop_assert_eq!(reader.needs_doorbell_after_read(), expect);
                }
                Op::ArmRead(d, min) => {
                    let d = d as usize;
                    let m = &mut dirs[d];
                    let min = min.clamp(1, size);
                    let res = eps[1 - d].arm_read_wakeup(min).unwrap();
                    m.data_wake = Some(m.read + u64::from(min) - 1);
                    let ready = m.fifo.len() >= min as usize;
                    prop_assert_eq!(res == Readiness::Ready, ready);
                }
                Op::ArmWrite(d, min) => {
                    let d = d as usize;
                    let m = &mut dirs[d];
                    let min = min.clamp(1, size);
                    let res = eps[d].arm_write_wakeup(min).unwrap();
                    m.space_wake = Some(m.written as i64 - i64::from(size) + i64::from(min) - 1);
                    let ready = size as usize - m.fifo.len() >= min as usize;
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
/// ring at the moment of wrapping.
#[test]
fn wrap_with_full_ring() {
    let r = Region::new(8192);
    let (mut a, mut b): (Endpoint<_>, Endpoint<_>) = pair(r.mem(), &opts(Some(16), u32::MAX - 7));
    let mut out = Vec::new();
    let mut next = 0u8;
    for _ in 0..20 {
        let chunk: Vec<u8> = (0..16)
            .map(|_| {
                next = next.wrapping_add(1);
                next
            })
            .collect();
        assert_eq!(a.write(&chunk).unwrap(), 16);
        assert_eq!(a.write(&chunk).unwrap(), 0);
        let mut buf = [0u8; 16];
        assert_eq!(b.read(&mut buf).unwrap(), 16);
        out.extend_from_slice(&buf);
    }
    let expect: Vec<u8> = (1..=320u32).map(|i| i as u8).collect();
    assert_eq!(out, expect);
    let _ = r.mem().len();
}
