//! Property test of the connection lifecycle: random interleavings of data
//! transfer with clean closes, crashes (no close), VMM "mark absent",
//! re-attaches and reconnects. A protocol-following run must never see
//! `Corrupted` or `Reset`, data must arrive in order within a connection,
//! and once both sides are up and keep reading, they always reconnect.

// Tests: a failed unwrap is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use common::{opts, Region};
use ivc_abi::{AtomicMem, AttachOptions, ChannelError, Endpoint, PeerState};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write(usize, usize),
    Read(usize, usize),
    Poll(usize),
    Close(usize),
    Crash(usize),
    VmmKill(usize),
    Reattach(usize),
    Reconnect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..2, 1usize..100).prop_map(|(d, n)| Op::Write(d, n)),
        6 => (0usize..2, 1usize..100).prop_map(|(d, n)| Op::Read(d, n)),
        3 => (0usize..2).prop_map(Op::Poll),
        1 => (0usize..2).prop_map(Op::Close),
        1 => (0usize..2).prop_map(Op::Crash),
        1 => (0usize..2).prop_map(Op::VmmKill),
        2 => (0usize..2).prop_map(Op::Reattach),
        1 => (0usize..2).prop_map(Op::Reconnect),
    ]
}

type Ep<'a> = Endpoint<AtomicMem<'a>>;

/// Sender side stamps bytes with a running counter; the receiver checks
/// that within one connection the counter advances by exactly one.
struct Side<'a> {
    ep: Option<Ep<'a>>,
    next_out: u8,
    last_in: Option<u8>,
}

fn ok<T>(r: Result<T, ChannelError>) -> Result<Option<T>, TestCaseError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ChannelError::PeerGone) | Err(ChannelError::Closed) => Ok(None),
        Err(e) => Err(TestCaseError::fail(format!("unexpected {e:?}"))),
    }
}

/// Both sides attached with `o`, nothing sent or received yet.
fn attach_both<'a>(mem: AtomicMem<'a>, o: &AttachOptions) -> Vec<Side<'a>> {
    (0..2u32)
        .map(|s| Side {
            ep: Some(Endpoint::attach_with(mem, s, o).unwrap()),
            next_out: 0,
            last_in: None,
        })
        .collect()
}

/// `Op::Write`: the side sends the next `n` bytes of its counter.
fn write_step(s: &mut Side<'_>, n: usize) -> Result<(), TestCaseError> {
    if let Some(ep) = s.ep.as_mut() {
        let data: Vec<u8> = (0..n).map(|i| s.next_out.wrapping_add(i as u8)).collect();
        if let Some(k) = ok(ep.write(&data))? {
            s.next_out = s.next_out.wrapping_add(k as u8);
        }
    }
    Ok(())
}

/// `Op::Read`: the side reads up to `n` bytes and checks that within one
/// connection the counter advances by exactly one.
fn read_step(s: &mut Side<'_>, n: usize) -> Result<(), TestCaseError> {
    if let Some(ep) = s.ep.as_mut() {
        let mut buf = vec![0u8; n];
        match ok(ep.read(&mut buf))? {
            Some(k) => {
                for &b in &buf[..k] {
                    if let Some(l) = s.last_in {
                        prop_assert_eq!(b, l.wrapping_add(1), "out of order");
                    }
                    s.last_in = Some(b);
                }
            }
            // End of file: the next connection may start
            // anywhere in the sender's counter.
            None => s.last_in = None,
        }
    }
    Ok(())
}

/// Applies one random operation.
fn apply<'a>(
    sides: &mut [Side<'a>],
    op: Op,
    mem: AtomicMem<'a>,
    o: &AttachOptions,
) -> Result<(), TestCaseError> {
    match op {
        Op::Write(d, n) => write_step(&mut sides[d], n)?,
        Op::Read(d, n) => read_step(&mut sides[d], n)?,
        Op::Poll(d) => {
            if let Some(ep) = sides[d].ep.as_mut() {
                ok(ep.peer_state())?;
                let _ = ep.needs_doorbell();
            }
        }
        Op::Close(d) => {
            if let Some(mut ep) = sides[d].ep.take() {
                ep.close();
            }
        }
        Op::Crash(d) => {
            if let Some(ep) = sides[d].ep.take() {
                std::mem::forget(ep);
            }
        }
        Op::VmmKill(d) => {
            if let Some(ep) = sides[d].ep.take() {
                std::mem::forget(ep);
                ivc_abi::mark_absent(&mem, d as u32).unwrap();
            }
        }
        Op::Reattach(d) => {
            if sides[d].ep.is_none() {
                sides[d].ep = Some(Endpoint::attach_with(mem, d as u32, o).unwrap());
                // A new incarnation starts a new stream: the peer
                // checks ordering from its first byte.
                sides[1 - d].last_in = None;
                sides[d].last_in = None;
            }
        }
        Op::Reconnect(d) => {
            if let Some(ep) = sides[d].ep.as_mut() {
                ok(ep.reconnect())?;
                sides[d].last_in = None;
                sides[1 - d].last_in = None;
            }
        }
    }
    Ok(())
}

/// Liveness: brings both sides up and keeps reading; `true` once both see
/// `Connected` within a few rounds.
fn reconnected<'a>(
    sides: &mut [Side<'a>],
    mem: AtomicMem<'a>,
    o: &AttachOptions,
) -> Result<bool, TestCaseError> {
    for (d, s) in sides.iter_mut().enumerate() {
        if s.ep.is_none() {
            s.ep = Some(Endpoint::attach_with(mem, d as u32, o).unwrap());
        }
    }
    for _ in 0..8 {
        for s in sides.iter_mut() {
            let ep = s.ep.as_mut().unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..4 {
                match ok(ep.read(&mut buf))? {
                    Some(0) | None => break,
                    Some(_) => {}
                }
            }
            ok(ep.peer_state())?;
        }
        let st: Vec<_> = sides
            .iter_mut()
            .map(|s| s.ep.as_mut().unwrap().peer_state().unwrap())
            .collect();
        if st.iter().all(|s| *s == PeerState::Connected) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Data flows on the fresh connection: side 0 sends a marker that side 1
/// receives intact.
fn marker_arrives(sides: &mut [Side<'_>]) -> Result<(), TestCaseError> {
    let (s0, s1) = sides.split_at_mut(1);
    let a = s0[0].ep.as_mut().unwrap();
    let b = s1[0].ep.as_mut().unwrap();
    // Drain anything in flight from before, then send a marker.
    let mut buf = [0u8; 64];
    while b.read(&mut buf).unwrap() > 0 {}
    prop_assert_eq!(a.write(b"ok").unwrap(), 2);
    prop_assert_eq!(b.read(&mut buf).unwrap(), 2);
    prop_assert_eq!(&buf[..2], b"ok");
    Ok(())
}

proptest! {
    // PROPTEST_CASES overrides the default count for longer runs.
    #![proptest_config(ProptestConfig { cases: common::cases(300), .. ProptestConfig::default() })]

    #[test]
    fn lifecycle_never_corrupts_and_always_reconnects(
        base in prop_oneof![Just(0u32), Just(u32::MAX - 55)],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let r = Region::new(8192);
        let mem = r.mem();
        let o = opts(Some(64), base);
        let mut sides = attach_both(mem, &o);
        for op in ops {
            apply(&mut sides, op, mem, &o)?;
        }
        prop_assert!(reconnected(&mut sides, mem, &o)?, "sides did not reconnect");
        marker_arrives(&mut sides)?;
    }
}
