//! `test=chan-duplex`: an ivc channel over ivc-shm's BAR2, both directions
//! at once, with the `ivc-channel` endpoint the kernel module uses.
//!
//! Setup (device, BARs, MSI-X) at CPL0, then the transfer loop at CPL3
//! (native speed under PVM). `irq=1` is the shm-irq path: the loop rings the
//! peer's doorbell when the endpoint says the peer asked for it, and when it
//! can make no progress it arms its wake-ups and waits for an MSI-X
//! interrupt (counted by `irq`, delivered at CPL3 with IF=1). `irq=0` is
//! shm-poll: it just polls.

use core::ptr::{read_volatile, write_volatile};

use ivc_channel::{AtomicMem, AttachOptions, ChannelError, Endpoint, PeerState, Readiness};

use super::stream::{self, Fnv};
use super::{allocator, bad_param, Context, Test};
use crate::cmdline::ParamError;
use crate::exit::{exit, status};
use crate::pci::{self, bar};
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

const IVPOSITION: u64 = 8;
const DOORBELL: u64 = 12;
const GUESS_TSC_KHZ: u64 = 4_000_000;
/// How long a CPL3 wait for an interrupt lasts before re-checking anyway.
const IRQ_WAIT_MS: u64 = 20;

struct Params {
    regs: u64,
    /// I/O doorbell port (BAR4, `via=io`), else the MMIO Doorbell.
    io_doorbell: Option<u16>,
    shm: u64,
    shm_size: u64,
    ivposition: u32,
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
        let vector = c.u64_or("vector", 0)?;
        if vector >= irq::VECTORS as u64 {
            return Err(ParamError {
                key: "vector",
                value: c.get("vector").unwrap_or(""),
                expected: "a vector below 32",
            });
        }
        let khz = match c.get("tsc_khz") {
            Some(_) => c.u64_or("tsc_khz", GUESS_TSC_KHZ)?,
            None => tsc::khz().unwrap_or(GUESS_TSC_KHZ),
        };
        let via_io = c.choice("via", false, &[("mmio", false), ("io", true)], "mmio or io")?;
        Ok((
            (dev, via_io),
            Params {
                regs: 0,
                io_doorbell: None,
                shm: 0,
                shm_size: 0,
                ivposition: 0,
                tx: c.u64_or("tx", 1 << 20)?,
                rx: c.u64_or("rx", 1 << 20)?,
                seed: c.u64_or("seed", 1)?,
                peer_seed: c.u64_or("peer_seed", 2)?,
                irq: c.bool_or("irq", false)?,
                vector: vector as u16,
                slot,
                chunk: c.u64_or("chunk", 4096)?.clamp(1, 4096) as usize,
                expect_gone: c.bool_or("expect_gone", false)?,
                timeout: c.u64_or("timeout_ms", 20_000)?.saturating_mul(khz),
                irq_wait: IRQ_WAIT_MS * khz,
            },
            allocator(ctx)?,
        ))
    })();
    let (((vendor, device), via_io), mut p, mut allocator) = match parsed {
        Ok(v) => v,
        Err(e) => return bad_param(e),
    };
    let Some(function) = pci::find(vendor, device) else {
        println!("error: no device {vendor:04x}:{device:04x} on bus 0");
        return status::FAILURE;
    };
    if !allocator.reserve_preassigned() {
        println!("warning: too many preassigned BARs; assignments may overlap");
    }
    let bars = bar::setup(&function, &mut allocator, bar::Assign::Unset);
    let (Some(regs), Some((shm, size))) = (
        bars[0].and_then(|b| b.map().ok()),
        bars[2].and_then(|b| b.map().ok().map(|a| (a, b.size))),
    ) else {
        println!("error: {} needs memory BAR0 and BAR2", function.bdf);
        return status::FAILURE;
    };
    p.regs = regs;
    if via_io {
        match bars[4].filter(|b| b.kind == bar::BarKind::Io && b.addr != 0) {
            Some(b) => p.io_doorbell = Some(b.addr as u16),
            None => {
                println!("error: {} has no I/O doorbell BAR4", function.bdf);
                return status::FAILURE;
            }
        }
    }
    p.shm = shm;
    p.shm_size = size;
    // SAFETY: IVPosition, a read-only 32-bit register of the mapped BAR0.
    p.ivposition = unsafe { read_volatile((regs + IVPOSITION) as *const u32) };
    if p.irq {
        if let Err(code) = super::doorbell::route_interrupt(&function, &bars, p.vector) {
            return code;
        }
    }
    println!(
        "chan {} ivposition={} shm=0x{shm:x} size=0x{size:x} tx={} rx={} irq={}",
        function.bdf, p.ivposition, p.tx, p.rx, p.irq as u8
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
        s.tx_sum.0,
        s.rx_sum.0,
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
    // SAFETY: BAR2 is mapped (identity, user-accessible, write-back) for
    // the rest of the VM's life and only accessed atomically from here.
    let Some(mem) = (unsafe { AtomicMem::new(p.shm as *mut u8, p.shm_size as usize) }) else {
        fail(p, &s, "BAR2 is not aligned", None)
    };
    let opts = AttachOptions {
        doorbell_id: u16::try_from(p.ivposition).ok(),
        ..AttachOptions::default()
    };
    let start = tsc::rdtsc();
    let mut ep = loop {
        let r = match p.slot {
            Some(slot) => Endpoint::attach_with(mem, slot, &opts),
            None => Endpoint::attach_any(mem, &opts),
        };
        match r {
            Ok(ep) => break ep,
            Err(ChannelError::Busy) if tsc::rdtsc().wrapping_sub(start) < p.timeout => {}
            Err(e) => fail(p, &s, "attach", Some(e)),
        }
    };
    println!(
        "chan-attached slot={} generation={}",
        ep.slot(),
        ep.generation()
    );
    let ring = |ep: &mut Endpoint<AtomicMem>, s: &mut Progress| {
        if p.irq && ep.needs_doorbell() {
            if let Ok(Some(peer)) = ep.peer_doorbell_id() {
                let value = (u32::from(peer) << 16) | u32::from(p.vector);
                let t0 = tsc::rdtsc();
                match p.io_doorbell {
                    Some(port) => crate::port::outl(port, value),
                    // SAFETY: Doorbell, a write-only 32-bit register in BAR0.
                    None => unsafe { write_volatile((p.regs + DOORBELL) as *mut u32, value) },
                }
                s.ring_cycles += tsc::rdtsc().wrapping_sub(t0);
                s.rings += 1;
            }
        }
    };
    let mut buf = [0u8; 4096];
    let mut last_progress = tsc::rdtsc();
    let mut connected = false;
    loop {
        let state = match ep.peer_state() {
            Ok(st) => st,
            Err(e) => fail(p, &s, "peer state", Some(e)),
        };
        if state == PeerState::Connected && !connected {
            connected = true;
            println!("chan-connected");
        }
        let mut progress = false;
        let mut gone = false;
        if s.txd < p.tx {
            let n = (p.tx - s.txd).min(p.chunk as u64) as usize;
            stream::fill(p.seed, s.txd, &mut buf[..n]);
            match ep.write(&buf[..n]) {
                Ok(k) => {
                    s.tx_sum.update(&buf[..k]);
                    s.txd += k as u64;
                    progress |= k > 0;
                }
                Err(ChannelError::PeerGone) => gone = true,
                Err(e) => fail(p, &s, "write", Some(e)),
            }
        }
        if s.rxd < p.rx || p.expect_gone {
            match ep.read(&mut buf[..p.chunk]) {
                Ok(k) => {
                    if let Some(bad) = stream::first_mismatch(p.peer_seed, s.rxd, &buf[..k]) {
                        println!(
                            "error: received byte {} is 0x{:02x}, expected 0x{:02x}",
                            s.rxd + bad as u64,
                            buf[bad],
                            stream::byte(p.peer_seed, s.rxd + bad as u64)
                        );
                        report(p, &s, "corrupt");
                        exit(status::FAILURE);
                    }
                    s.rx_sum.update(&buf[..k]);
                    s.rxd += k as u64;
                    progress |= k > 0;
                }
                Err(ChannelError::PeerGone) => gone = true,
                Err(e) => fail(p, &s, "read", Some(e)),
            }
        }
        ring(&mut ep, &mut s);
        if gone {
            println!("chan-peer-gone sent={} received={}", s.txd, s.rxd);
            report(p, &s, "peer-gone");
            exit(if p.expect_gone {
                status::SUCCESS
            } else {
                status::FAILURE
            });
        }
        if s.txd >= p.tx && s.rxd >= p.rx && !p.expect_gone {
            break;
        }
        let now = tsc::rdtsc();
        if progress {
            last_progress = now;
            continue;
        }
        if now.wrapping_sub(last_progress) > p.timeout {
            fail(p, &s, "no progress within timeout_ms", None);
        }
        if p.irq {
            // Ask the peer to ring us, then sleep (spin on the interrupt
            // counter) unless something already changed.
            let mut sleep = true;
            if s.rxd < p.rx || p.expect_gone {
                sleep &= ep.arm_read_wakeup(1) == Ok(Readiness::MaySleep);
            }
            if s.txd < p.tx {
                sleep &= ep.arm_write_wakeup(1) == Ok(Readiness::MaySleep);
            }
            ring(&mut ep, &mut s);
            if sleep {
                s.waits += 1;
                let seen = irq::count(p.vector as usize);
                let t0 = tsc::rdtsc();
                while irq::count(p.vector as usize) == seen
                    && tsc::rdtsc().wrapping_sub(t0) < p.irq_wait
                {
                    core::hint::spin_loop();
                }
            }
        }
    }
    ep.close();
    ring(&mut ep, &mut s);
    report(p, &s, "complete");
    exit(status::SUCCESS)
}
