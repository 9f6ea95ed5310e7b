//! `test=pio-duplex`: byte streams both ways through ivc-pio's register
//! map (`ivc_abi::pio`) at CPL3, the way the driver's pio transport
//! does it: read `TX_FREE`/`RX_AVAIL`, then move up to a page with one
//! `rep outsb`/`rep insb` on `DATA`; or, with `desc=1`, with one descriptor
//! per chunk (the buffer's address and length in this direction's
//! descriptor in guest RAM, one `IN` from `TX_GO`/`RX_GO`; paging is
//! identity, so an address is its guest physical address).

use ivc_abi::pio::{
    Desc, CAP_DESC, CONTROL_CLEAR_ERROR, CONTROL_CLOSE, CONTROL_OPEN, DESC_ERROR,
    DESC_ERR_PEER_GONE, DESC_ERR_RANGE, DESC_ERR_TOO_LONG, DESC_MAX_LEN, MAGIC, REG_CAPS,
    REG_CONTROL, REG_DATA, REG_ID, REG_RX_AVAIL, REG_RX_DESC_HI, REG_RX_DESC_LO, REG_RX_GO,
    REG_STATUS, REG_TX_DESC_HI, REG_TX_DESC_LO, REG_TX_FREE, REG_TX_GO, REG_VERSION,
    STATUS_CONNECTED, STATUS_ERROR, STATUS_PEER_GONE, STATUS_RX_READY, STATUS_TX_SPACE, VERSION,
};

use core::cell::Cell;

use super::stream::{self, Fnv};
use super::{allocator, bad_param, Context, Test, GUESS_TSC_KHZ};
use crate::cmdline::ParamError;
use crate::exit::{exit, status};
use crate::pci::{self, bar};
use crate::port::{inl, inl_dma, insb, outl, outsb, outsd};
use crate::{cpl0_io, cpl3, println, tsc};

pub const TEST: Test = Test {
    name: "pio-duplex",
    params: concat!(
        "[dev=1234:1c1c] [tx=1m] [rx=1m] [seed=1] [peer_seed=2] [chunk=4096] ",
        "[expect_gone=0] [cpl0_io=1] [desc=0] [check=1] [timeout_ms=60000] [tsc_khz=auto] ",
        "(chunk: at most 4096, or 1m with desc=1) ",
        crate::allocator_params!()
    ),
    about: "send and receive byte streams through ivc-pio with string I/O or descriptors (CPL3)",
    run,
};

struct Params {
    port: u16,
    tx: u64,
    rx: u64,
    seed: u64,
    peer_seed: u64,
    chunk: usize,
    expect_gone: bool,
    /// Do the string I/O at CPL0 through `cpl0_io` (5x cheaper exits). The
    /// descriptor `GO`s stay at CPL3: there one `GO` cost 2.0x a plain CPL3
    /// exit, through the service call (#UD, CPL0 `IN`, IRETQ) 2.3x.
    cpl0_io: bool,
    /// Move each chunk with one descriptor command instead of string I/O.
    desc: bool,
    /// Generate and check every byte (else send the buffer as it is and
    /// only count: the channel's own speed).
    check: bool,
    timeout: u64,
}

fn run(ctx: &Context) -> u8 {
    let c = &ctx.cmdline;
    let parsed = (|| -> Result<_, ParamError> {
        let khz = super::tsc_khz(ctx)?.unwrap_or(GUESS_TSC_KHZ);
        Ok((
            c.pci_id_or("dev", pci::IVC_PIO)?,
            Params {
                port: 0,
                tx: c.u64_or("tx", 1 << 20)?,
                rx: c.u64_or("rx", 1 << 20)?,
                seed: c.u64_or("seed", 1)?,
                peer_seed: c.u64_or("peer_seed", 2)?,
                chunk: c.u64_or("chunk", 4096)? as usize,
                expect_gone: c.bool_or("expect_gone", false)?,
                cpl0_io: c.bool_or("cpl0_io", true)?,
                desc: c.bool_or("desc", false)?,
                check: c.bool_or("check", true)?,
                timeout: c.u64_or("timeout_ms", 60_000)?.saturating_mul(khz),
            },
            allocator(ctx)?,
        ))
    })();
    let ((vendor, device), mut p, mut allocator) = match parsed {
        Ok(v) => v,
        Err(e) => return bad_param(e),
    };
    let (function, bars) = match super::find_and_assign((vendor, device), &mut allocator) {
        Ok(found) => found,
        Err(status) => return status,
    };
    let Some(b) = bars[0].filter(|b| b.kind == bar::BarKind::Io && b.addr != 0) else {
        println!("error: {} has no assigned I/O BAR0", function.bdf);
        return status::FAILURE;
    };
    p.port = b.addr as u16;
    p.chunk = p.chunk.clamp(1, if p.desc { DESC_BUF } else { 4096 });
    let (id, version) = (inl(p.port + REG_ID), inl(p.port + REG_VERSION));
    if id != MAGIC || version != VERSION {
        println!("error: identity 0x{id:08x} version {version}");
        return status::FAILURE;
    }
    if p.desc && inl(p.port + REG_CAPS) & CAP_DESC == 0 {
        println!("error: desc=1 but the device offers no descriptor mode");
        return status::FAILURE;
    }
    println!(
        "pio {} port=0x{:x} tx={} rx={} cpl0_io={} desc={}",
        function.bdf, p.port, p.tx, p.rx, p.cpl0_io as u8, p.desc as u8
    );
    if p.cpl0_io {
        cpl0_io::install();
    }
    cpl3::run(user_main, &p)
}

/// Before the transfer: descriptors a buggy or hostile guest could hand the
/// device (a descriptor or buffer outside RAM, over MMIO, wrapping, too
/// long) each come back with their error code, move nothing and leave the
/// device working (`STATUS` without `ERROR`); exits with a failure if not.
fn hostile_descriptors(
    p: &Params,
    tx_desc: *mut [u8; Desc::SIZE],
    buf: u64,
    set_desc_addr: &dyn Fn(u16, u16, u64),
) {
    let reg = |r: u16| p.port + r;
    // The local APIC's page: MMIO, never RAM; 64 TiB: past any test VM's RAM.
    const MMIO: u64 = 0xfee0_0000;
    const FAR: u64 = 1 << 46;
    let cases: [(&str, u64, u64, u32, u32); 6] = [
        ("descriptor over MMIO", MMIO, buf, 16, DESC_ERR_RANGE),
        ("descriptor past RAM", FAR, buf, 16, DESC_ERR_RANGE),
        ("buffer over MMIO", tx_desc as u64, MMIO, 64, DESC_ERR_RANGE),
        (
            "buffer wrapping",
            tx_desc as u64,
            u64::MAX - 8,
            64,
            DESC_ERR_RANGE,
        ),
        (
            "buffer past RAM",
            tx_desc as u64,
            FAR - 4096,
            8192,
            DESC_ERR_RANGE,
        ),
        (
            "buffer too long",
            tx_desc as u64,
            buf,
            DESC_MAX_LEN + 1,
            DESC_ERR_TOO_LONG,
        ),
    ];
    for (what, at, addr, len, code) in cases {
        set_desc_addr(REG_TX_DESC_LO, REG_TX_DESC_HI, at);
        // SAFETY: `tx_desc` points into DESC_AREA (see `user_main`).
        unsafe { tx_desc.write_volatile(Desc::encode(addr, len)) };
        let r = inl_dma(reg(REG_TX_GO));
        let st = inl(reg(REG_STATUS));
        if r != DESC_ERROR | code || st & STATUS_ERROR != 0 {
            println!(
                "error: {what}: GO gave 0x{r:08x} (want 0x{:08x}), STATUS=0x{st:x}",
                DESC_ERROR | code
            );
            exit(status::FAILURE);
        }
    }
    set_desc_addr(REG_TX_DESC_LO, REG_TX_DESC_HI, tx_desc as u64);
    println!("pio-desc-hostile ok cases={}", cases.len());
}

/// Largest chunk in descriptor mode (the buffer is static, not on the
/// 64 KiB CPL3 stack).
const DESC_BUF: usize = ivc_abi::pio::DESC_MAX_LEN as usize;

/// Descriptor mode's memory: one descriptor per direction and the buffer.
#[repr(C, align(4096))]
struct DescArea {
    tx: [u8; Desc::SIZE],
    rx: [u8; Desc::SIZE],
    buf: [u8; DESC_BUF],
}

static mut DESC_AREA: DescArea = DescArea {
    tx: [0; Desc::SIZE],
    rx: [0; Desc::SIZE],
    buf: [0; DESC_BUF],
};

fn user_main(p: &Params) -> ! {
    let reg = |r: u16| p.port + r;
    outl(reg(REG_CONTROL), CONTROL_CLEAR_ERROR | CONTROL_OPEN);
    let (mut txd, mut rxd) = (0u64, 0u64);
    let (mut tx_sum, mut rx_sum) = (Fnv::new(), Fnv::new());
    let mut exits = 0u64;
    let mut small = [0u8; 4096];
    // SAFETY: this test runs on one CPU and nothing else uses DESC_AREA;
    // raw pointers avoid references to the static mut.
    let area = unsafe { &mut *core::ptr::addr_of_mut!(DESC_AREA) };
    let buf: &mut [u8] = if p.desc { &mut area.buf } else { &mut small };
    // Identity paging: an address is its guest physical one.
    let buf_addr = buf.as_ptr() as u64;
    let (tx_desc, rx_desc) = (
        core::ptr::addr_of_mut!(area.tx),
        core::ptr::addr_of_mut!(area.rx),
    );
    let set_desc_addr = |lo: u16, hi: u16, at: u64| {
        outl(reg(lo), at as u32);
        outl(reg(hi), (at >> 32) as u32);
    };
    if p.desc {
        set_desc_addr(REG_TX_DESC_LO, REG_TX_DESC_HI, tx_desc as u64);
        set_desc_addr(REG_RX_DESC_LO, REG_RX_DESC_HI, rx_desc as u64);
    }
    // GOs that moved bytes: how many, the bytes, and the TSC cycles spent
    // in their `IN`s (the exit and the VMM's copies), for the benchmarks.
    let (gos, go_bytes, go_cycles) = (Cell::new(0u64), Cell::new(0u64), Cell::new(0u64));
    // One descriptor over `buf[..n]`, one `IN`; bytes moved.
    let desc = |go: u16, n: usize| -> Result<usize, u32> {
        let d = if go == REG_TX_GO { tx_desc } else { rx_desc };
        // SAFETY: `d` points into DESC_AREA (see above); volatile, because
        // only the device reads it.
        unsafe { d.write_volatile(Desc::encode(buf_addr, n as u32)) };
        let t0 = tsc::rdtsc();
        let r = inl_dma(reg(go));
        let t1 = tsc::rdtsc();
        if r == DESC_ERROR | DESC_ERR_PEER_GONE {
            // The end of the connection: STATUS says so in the next round.
            Ok(0)
        } else if r & DESC_ERROR != 0 {
            Err(r)
        } else {
            let moved = (r as usize).min(n);
            if moved > 0 {
                gos.set(gos.get() + 1);
                go_bytes.set(go_bytes.get() + moved as u64);
                go_cycles.set(go_cycles.get() + t1.wrapping_sub(t0));
            }
            Ok(moved)
        }
    };
    if p.desc {
        hostile_descriptors(p, tx_desc, buf_addr, &set_desc_addr);
    }
    let mut last_progress = tsc::rdtsc();
    let mut connected = false;
    // TSC at the connection, for `cycles=` (the transfer timed by the guest).
    let connected_at = Cell::new(0u64);
    let report = |outcome: &str, txd: u64, rxd: u64, tx: Fnv, rx: Fnv, exits: u64| {
        let cycles = match connected_at.get() {
            0 => 0,
            t => tsc::rdtsc().wrapping_sub(t),
        };
        println!(
            "pio-result outcome={outcome} sent={txd} received={rxd} tx_fnv=0x{:016x} rx_fnv=0x{:016x} string_ops={exits} checked={} cycles={cycles}",
            tx.0, rx.0, p.check as u8
        );
    };
    // Descriptor mode needs no count registers (a GO moves what it can and
    // says how much) and reads STATUS only until connected and after a
    // round that moved nothing: two exits a round, as in the driver.
    let mut idle = true;
    loop {
        let st = if !p.desc || !connected || idle {
            inl(reg(REG_STATUS))
        } else {
            STATUS_CONNECTED | STATUS_TX_SPACE | STATUS_RX_READY
        };
        if st & STATUS_ERROR != 0 {
            println!("error: STATUS=0x{st:x} has ERROR");
            report("error", txd, rxd, tx_sum, rx_sum, exits);
            exit(status::FAILURE);
        }
        if st & STATUS_CONNECTED != 0 && !connected {
            connected = true;
            connected_at.set(tsc::rdtsc());
            println!("pio-connected");
        }
        let mut progress = false;
        if txd < p.tx && st & STATUS_TX_SPACE != 0 {
            let free = if p.desc {
                u64::MAX
            } else {
                u64::from(inl(reg(REG_TX_FREE)))
            };
            let mut n = free.min(p.tx - txd).min(p.chunk as u64) as usize;
            if n > 0 {
                if p.check {
                    stream::fill(p.seed, txd, &mut buf[..n]);
                }
                if p.desc {
                    match desc(REG_TX_GO, n) {
                        // What fits now (maybe nothing); the rest next round.
                        Ok(moved) => n = moved,
                        other => {
                            println!("error: TX descriptor of {n} bytes: {other:?}");
                            report("error", txd, rxd, tx_sum, rx_sum, exits);
                            exit(status::FAILURE);
                        }
                    }
                } else {
                    // Dwords: OUTS costs one exit per element (see port::outsd).
                    let whole = n & !3;
                    if p.cpl0_io {
                        cpl0_io::outsd(reg(REG_DATA), &buf[..whole]);
                    } else {
                        outsd(reg(REG_DATA), &buf[..whole]);
                    }
                    outsb(reg(REG_DATA), &buf[whole..n]);
                }
                exits += u64::from(n > 0);
                if p.check {
                    tx_sum.update(&buf[..n]);
                }
                txd += n as u64;
                progress |= n > 0;
            }
        }
        if (rxd < p.rx || p.expect_gone) && st & STATUS_RX_READY != 0 {
            let avail = if p.desc {
                u64::MAX
            } else {
                u64::from(inl(reg(REG_RX_AVAIL)))
            };
            let mut n = avail.min(p.chunk as u64) as usize;
            if n > 0 {
                if p.desc {
                    match desc(REG_RX_GO, n) {
                        Ok(moved) => n = moved,
                        other => {
                            println!("error: RX descriptor of {n} bytes: {other:?}");
                            report("error", txd, rxd, tx_sum, rx_sum, exits);
                            exit(status::FAILURE);
                        }
                    }
                } else if p.cpl0_io {
                    cpl0_io::insb(reg(REG_DATA), &mut buf[..n]);
                } else {
                    insb(reg(REG_DATA), &mut buf[..n]);
                }
                exits += u64::from(n > 0);
                let bad = if p.check {
                    stream::first_mismatch(p.peer_seed, rxd, &buf[..n])
                } else {
                    None
                };
                if let Some(bad) = bad {
                    println!(
                        "error: received byte {} is 0x{:02x}, expected 0x{:02x}",
                        rxd + bad as u64,
                        buf[bad],
                        stream::byte(p.peer_seed, rxd + bad as u64)
                    );
                    report("corrupt", txd, rxd, tx_sum, rx_sum, exits);
                    exit(status::FAILURE);
                }
                if p.check {
                    rx_sum.update(&buf[..n]);
                }
                rxd += n as u64;
                progress |= n > 0;
            }
        }
        idle = !progress;
        if st & STATUS_PEER_GONE != 0 && !progress {
            println!("pio-peer-gone sent={txd} received={rxd}");
            report("peer-gone", txd, rxd, tx_sum, rx_sum, exits);
            exit(if p.expect_gone {
                status::SUCCESS
            } else {
                status::FAILURE
            });
        }
        if txd >= p.tx && rxd >= p.rx && !p.expect_gone {
            break;
        }
        let now = tsc::rdtsc();
        if progress {
            last_progress = now;
        } else if now.wrapping_sub(last_progress) > p.timeout {
            println!("error: no progress within timeout_ms (STATUS=0x{st:x})");
            report("error", txd, rxd, tx_sum, rx_sum, exits);
            exit(status::FAILURE);
        }
    }
    outl(reg(REG_CONTROL), CONTROL_CLOSE);
    if p.desc {
        println!(
            "pio-desc-timing gos={} bytes={} cycles={}",
            gos.get(),
            go_bytes.get(),
            go_cycles.get()
        );
    }
    report("complete", txd, rxd, tx_sum, rx_sum, exits);
    exit(status::SUCCESS)
}
