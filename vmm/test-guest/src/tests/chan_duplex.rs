//! `test=chan-duplex`: an ivc channel over ivc-shm's BAR2, both directions
//! at once, with the `ivc-abi` endpoint the kernel module uses.
//!
//! Setup (device, BARs, MSI-X) at CPL0, then the transfer loop at CPL3
//! (native speed under PVM). `irq=1` is the shm-irq path: the loop rings the
//! peer's doorbell when the endpoint says the peer asked for it, and when it
//! can make no progress it arms its wake-ups and waits for an MSI-X
//! interrupt (counted by `irq`, delivered at CPL3 with IF=1). `irq=0` is
//! shm-poll: it just polls.

use ivc_abi::{AtomicMem, AttachOptions, ChannelError, Endpoint, PeerState, Readiness};

use super::shm_dev::{self, ShmDev, Want};
use super::stream::{self, Fnv};
use super::{bad_param, Context, Test, GUESS_TSC_KHZ};
use crate::cmdline::ParamError;
use crate::exit::{exit, status};
use crate::pci;
use crate::{cpl3, irq, println, tsc};

pub const TEST: Test = Test {
    name: "chan-duplex",
    params: concat!(
        "[dev=1af4:1110] [tx=1m] [rx=1m] [seed=1] [peer_seed=2] [irq=0] [vector=0] [via=mmio|io] ",
        "[slot=any|0|1] [chunk=4096] [expect_gone=0] [timeout_ms=20000] [tsc_khz=auto] ",
        crate::allocator_params!()
    ),
    about: "send and receive byte streams over an ivc channel in ivc-shm BAR2 (CPL3)",
    run,
};

/// How long a CPL3 wait for an interrupt lasts before re-checking anyway.
const IRQ_WAIT_MS: u64 = 20;

struct Params {
    dev: ShmDev,
    tx: u64,
    rx: u64,
    seed: u64,
    peer_seed: u64,
    irq: bool,
    vector: u16,
    slot: Option<u32>,
    chunk: usize,
    expect_gone: bool,
    timeout: u64,
    irq_wait: u64,
}

fn run(ctx: &Context) -> u8 {
    let c = &ctx.cmdline;
    let parsed = (|| -> Result<_, ParamError> {
        let dev = c.pci_id_or("dev", pci::IVSHMEM)?;
        let slot = c.choice(
            "slot",
            None,
            &[("any", None), ("0", Some(0)), ("1", Some(1))],
            "any, 0 or 1",
        )?;
        let vector = super::vector(ctx)?;
        let khz = super::tsc_khz(ctx)?.unwrap_or(GUESS_TSC_KHZ);
        let via_io = c.choice("via", false, &[("mmio", false), ("io", true)], "mmio or io")?;
        let irq = c.bool_or("irq", false)?;
        Ok((
            Want {
                id: dev,
                via_io,
                vector: irq.then_some(vector),
            },
            Params {
                dev: ShmDev::UNOPENED,
                tx: c.u64_or("tx", 1 << 20)?,
                rx: c.u64_or("rx", 1 << 20)?,
                seed: c.u64_or("seed", 1)?,
                peer_seed: c.u64_or("peer_seed", 2)?,
                irq,
                vector,
                slot,
                chunk: c.u64_or("chunk", 4096)?.clamp(1, 4096) as usize,
                expect_gone: c.bool_or("expect_gone", false)?,
                timeout: c.u64_or("timeout_ms", 20_000)?.saturating_mul(khz),
                irq_wait: IRQ_WAIT_MS * khz,
            },
        ))
    })();
    let (want, mut p) = match parsed {
        Ok(v) => v,
        Err(e) => return bad_param(e),
    };
    p.dev = match shm_dev::open(ctx, &want) {
        Ok(d) => d,
        Err(code) => return code,
    };
    println!(
        "chan {} ivposition={} shm=0x{:x} size=0x{:x} tx={} rx={} irq={}",
        p.dev.bdf, p.dev.ivposition, p.dev.shm, p.dev.shm_size, p.tx, p.rx, p.irq as u8
    );
    if p.irq {
        cpl3::run_with_interrupts(user_main, &p)
    } else {
        cpl3::run(user_main, &p)
    }
}

struct Progress {
    txd: u64,
    rxd: u64,
    tx_sum: Fnv,
    rx_sum: Fnv,
    rings: u64,
    /// TSC cycles spent in doorbell writes.
    ring_cycles: u64,
    waits: u64,
}

fn report(p: &Params, s: &Progress, outcome: &str) {
    println!(
        "chan-result outcome={outcome} sent={} received={} tx_fnv=0x{:016x} rx_fnv=0x{:016x} rings={} ring_cycles_avg={} waits={} interrupts={}",
        s.txd,
        s.rxd,
        s.tx_sum.value(),
        s.rx_sum.value(),
        s.rings,
        s.ring_cycles.checked_div(s.rings).unwrap_or(0),
        s.waits,
        if p.irq { irq::count(p.vector as usize) } else { 0 }
    );
}

fn fail(p: &Params, s: &Progress, what: &str, e: Option<ChannelError>) -> ! {
    match e {
        Some(e) => println!("error: {what}: {e}"),
        None => println!("error: {what}"),
    }
    report(p, s, "error");
    exit(status::FAILURE)
}

/// The endpoint over this test's BAR2.
type Ep = Endpoint<AtomicMem<'static>>;

/// The peer left (a read or write said so).
struct PeerGone;

fn user_main(p: &Params) -> ! {
    let mut s = Progress {
        txd: 0,
        rxd: 0,
        tx_sum: Fnv::new(),
        rx_sum: Fnv::new(),
        rings: 0,
        ring_cycles: 0,
        waits: 0,
    };
    let mut ep = attach(p, &s);
    println!(
        "chan-attached slot={} generation={}",
        ep.slot(),
        ep.generation()
    );
    transfer(p, &mut ep, &mut s);
    ep.close();
    ring(p, &mut ep, &mut s);
    report(p, &s, "complete");
    exit(status::SUCCESS)
}

/// Attaches to the channel in BAR2, retrying while its slots are busy (up
/// to `timeout_ms`).
fn attach(p: &Params, s: &Progress) -> Ep {
    // SAFETY: BAR2 is mapped (identity, user-accessible, write-back) for
    // the rest of the VM's life and only accessed atomically from here.
    let Some(mem) = (unsafe { AtomicMem::new(p.dev.shm as *mut u8, p.dev.shm_size as usize) })
    else {
        fail(p, s, "BAR2 is not aligned", None)
    };
    let opts = AttachOptions {
        doorbell_id: u16::try_from(p.dev.ivposition).ok(),
        ..AttachOptions::default()
    };
    let start = tsc::rdtsc();
    loop {
        let r = match p.slot {
            Some(slot) => Endpoint::attach_with(mem, slot, &opts),
            None => Endpoint::attach_any(mem, &opts),
        };
        match r {
            Ok(ep) => return ep,
            Err(ChannelError::Busy) if tsc::rdtsc().wrapping_sub(start) < p.timeout => {}
            Err(e) => fail(p, s, "attach", Some(e)),
        }
    }
}

/// Rings the peer's doorbell (`irq=1`) if the endpoint says it asked.
fn ring(p: &Params, ep: &mut Ep, s: &mut Progress) {
    if p.irq && ep.needs_doorbell() {
        if let Ok(Some(peer)) = ep.peer_doorbell_id() {
            let t0 = tsc::rdtsc();
            p.dev.ring(peer, p.vector);
            s.ring_cycles += tsc::rdtsc().wrapping_sub(t0);
            s.rings += 1;
        }
    }
}

/// Moves both streams until both are done (or, with `expect_gone`, the
/// peer left); a failure or the peer's leaving ends the test here.
fn transfer(p: &Params, ep: &mut Ep, s: &mut Progress) {
    let mut buf = [0u8; 4096];
    let mut last_progress = tsc::rdtsc();
    let mut connected = false;
    loop {
        let state = match ep.peer_state() {
            Ok(st) => st,
            Err(e) => fail(p, s, "peer state", Some(e)),
        };
        if state == PeerState::Connected && !connected {
            connected = true;
            println!("chan-connected");
        }
        let mut progress = false;
        let mut gone = false;
        if s.txd < p.tx {
            match send(p, ep, s, &mut buf) {
                Ok(moved) => progress |= moved,
                Err(PeerGone) => gone = true,
            }
        }
        if s.rxd < p.rx || p.expect_gone {
            match receive(p, ep, s, &mut buf) {
                Ok(moved) => progress |= moved,
                Err(PeerGone) => gone = true,
            }
        }
        ring(p, ep, s);
        if gone {
            println!("chan-peer-gone sent={} received={}", s.txd, s.rxd);
            report(p, s, "peer-gone");
            exit(if p.expect_gone {
                status::SUCCESS
            } else {
                status::FAILURE
            });
        }
        if s.txd >= p.tx && s.rxd >= p.rx && !p.expect_gone {
            return;
        }
        let now = tsc::rdtsc();
        if progress {
            last_progress = now;
            continue;
        }
        if now.wrapping_sub(last_progress) > p.timeout {
            fail(p, s, "no progress within timeout_ms", None);
        }
        if p.irq {
            wait_for_wakeup(p, ep, s);
        }
    }
}

/// Writes the next chunk of the stream (as much as fits); whether bytes
/// moved.
fn send(p: &Params, ep: &mut Ep, s: &mut Progress, buf: &mut [u8; 4096]) -> Result<bool, PeerGone> {
    let n = (p.tx - s.txd).min(p.chunk as u64) as usize;
    stream::fill(p.seed, s.txd, &mut buf[..n]);
    match ep.write(&buf[..n]) {
        Ok(k) => {
            s.tx_sum.update(&buf[..k]);
            s.txd += k as u64;
            Ok(k > 0)
        }
        Err(ChannelError::PeerGone) => Err(PeerGone),
        Err(e) => fail(p, s, "write", Some(e)),
    }
}

/// Reads what is there (at most a chunk) and checks it; whether bytes
/// moved.
fn receive(
    p: &Params,
    ep: &mut Ep,
    s: &mut Progress,
    buf: &mut [u8; 4096],
) -> Result<bool, PeerGone> {
    match ep.read(&mut buf[..p.chunk]) {
        Ok(k) => {
            if let Some(bad) = stream::first_mismatch(p.peer_seed, s.rxd, &buf[..k]) {
                println!(
                    "error: received byte {} is 0x{:02x}, expected 0x{:02x}",
                    s.rxd + bad as u64,
                    buf[bad],
                    stream::byte(p.peer_seed, s.rxd + bad as u64)
                );
                report(p, s, "corrupt");
                exit(status::FAILURE);
            }
            s.rx_sum.update(&buf[..k]);
            s.rxd += k as u64;
            Ok(k > 0)
        }
        Err(ChannelError::PeerGone) => Err(PeerGone),
        Err(e) => fail(p, s, "read", Some(e)),
    }
}

/// `irq=1`, no progress: asks the peer to ring us, then sleeps (spins on
/// the interrupt counter, at most `irq_wait`) unless something already
/// changed.
fn wait_for_wakeup(p: &Params, ep: &mut Ep, s: &mut Progress) {
    let mut sleep = true;
    if s.rxd < p.rx || p.expect_gone {
        sleep &= ep.arm_read_wakeup(1) == Ok(Readiness::MaySleep);
    }
    if s.txd < p.tx {
        sleep &= ep.arm_write_wakeup(1) == Ok(Readiness::MaySleep);
    }
    ring(p, ep, s);
    if sleep {
        s.waits += 1;
        let seen = irq::count(p.vector as usize);
        let _ = irq::spin_until(p.vector as usize, seen + 1, tsc::rdtsc(), p.irq_wait);
    }
}
