//! `test=pio-duplex`: byte streams both ways through ivc-pio's register
//! map (`ivc_channel::pio`) at CPL3, the way the driver's pio transport
//! does it: read `TX_FREE`/`RX_AVAIL`, then move up to a page with one
//! `rep outsb`/`rep insb` on `DATA`; or, with `desc=1`, with one descriptor
//! command per chunk (the buffer's address and length in the `DESC_*`
//! registers, one `OUT` to `DESC_CMD`; paging is identity, so the buffer's
//! address is its guest physical address).

use ivc_channel::pio::{
    CAP_DESC, CONTROL_CLEAR_ERROR, CONTROL_CLOSE, CONTROL_OPEN, DESC_CMD_RX, DESC_CMD_TX,
    DESC_ERROR, DEVICE_ID, MAGIC, REG_CAPS, REG_CONTROL, REG_DATA, REG_DESC_ADDR_HI,
    REG_DESC_ADDR_LO, REG_DESC_CMD, REG_DESC_LEN, REG_DESC_RESULT, REG_ID, REG_RX_AVAIL,
    REG_STATUS, REG_TX_FREE, REG_VERSION, STATUS_CONNECTED, STATUS_ERROR, STATUS_PEER_GONE,
    STATUS_RX_READY, STATUS_TX_SPACE, VENDOR_ID, VERSION,
};

use super::stream::{self, Fnv};
use super::{allocator, bad_param, Context, Test, GUESS_TSC_KHZ};
use crate::cmdline::ParamError;
use crate::exit::{exit, status};
use crate::pci::bar;
use crate::port::{inl, insb, outl, outsb, outsd};
use crate::{cpl0_io, cpl3, println, tsc};

pub const TEST: Test = Test {
    name: "pio-duplex",
    params: concat!(
        "[dev=1234:1c1c] [tx=1m] [rx=1m] [seed=1] [peer_seed=2] [chunk=4096] ",
        "[expect_gone=0] [cpl0_io=1] [desc=0] [timeout_ms=60000] [tsc_khz=auto] ",
        crate::allocator_params!()
    ),
    about: "send and receive byte streams through ivc-pio with string I/O (CPL3)",
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
    /// Do the string I/O at CPL0 through `cpl0_io` (5x cheaper exits).
    cpl0_io: bool,
    /// Move each chunk with one descriptor command instead of string I/O.
    desc: bool,
    timeout: u64,
}

fn run(ctx: &Context) -> u8 {
    let c = &ctx.cmdline;
    let parsed = (|| -> Result<_, ParamError> {
        let khz = super::tsc_khz(ctx)?.unwrap_or(GUESS_TSC_KHZ);
        Ok((
            c.pci_id_or("dev", (VENDOR_ID, DEVICE_ID))?,
            Params {
                port: 0,
                tx: c.u64_or("tx", 1 << 20)?,
                rx: c.u64_or("rx", 1 << 20)?,
                seed: c.u64_or("seed", 1)?,
                peer_seed: c.u64_or("peer_seed", 2)?,
                chunk: c.u64_or("chunk", 4096)?.clamp(1, 4096) as usize,
                expect_gone: c.bool_or("expect_gone", false)?,
                cpl0_io: c.bool_or("cpl0_io", true)?,
                desc: c.bool_or("desc", false)?,
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

fn user_main(p: &Params) -> ! {
    let reg = |r: u16| p.port + r;
    outl(reg(REG_CONTROL), CONTROL_CLEAR_ERROR | CONTROL_OPEN);
    let (mut txd, mut rxd) = (0u64, 0u64);
    let (mut tx_sum, mut rx_sum) = (Fnv::new(), Fnv::new());
    let mut exits = 0u64;
    let mut buf = [0u8; 4096];
    if p.desc {
        // Identity paging: the buffer's address is its guest physical one.
        let addr = buf.as_ptr() as u64;
        outl(reg(REG_DESC_ADDR_LO), addr as u32);
        outl(reg(REG_DESC_ADDR_HI), (addr >> 32) as u32);
    }
    // One descriptor command over `buf[..n]`; bytes moved.
    let desc = |cmd: u32, n: usize| -> Result<usize, u32> {
        outl(reg(REG_DESC_LEN), n as u32);
        outl(reg(REG_DESC_CMD), cmd);
        let r = inl(reg(REG_DESC_RESULT));
        if r & DESC_ERROR != 0 {
            Err(r)
        } else {
            Ok((r as usize).min(n))
        }
    };
    let mut last_progress = tsc::rdtsc();
    let mut connected = false;
    let report = |outcome: &str, txd: u64, rxd: u64, tx: Fnv, rx: Fnv, exits: u64| {
        println!(
            "pio-result outcome={outcome} sent={txd} received={rxd} tx_fnv=0x{:016x} rx_fnv=0x{:016x} string_ops={exits}",
            tx.0, rx.0
        );
    };
    loop {
        let st = inl(reg(REG_STATUS));
        if st & STATUS_ERROR != 0 {
            println!("error: STATUS=0x{st:x} has ERROR");
            report("error", txd, rxd, tx_sum, rx_sum, exits);
            exit(status::FAILURE);
        }
        if st & STATUS_CONNECTED != 0 && !connected {
            connected = true;
            println!("pio-connected");
        }
        let mut progress = false;
        if txd < p.tx && st & STATUS_TX_SPACE != 0 {
            let free = u64::from(inl(reg(REG_TX_FREE)));
            let n = free.min(p.tx - txd).min(p.chunk as u64) as usize;
            if n > 0 {
                stream::fill(p.seed, txd, &mut buf[..n]);
                if p.desc {
                    match desc(DESC_CMD_TX, n) {
                        // TX_FREE promised room for all of it.
                        Ok(moved) if moved == n => {}
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
                exits += 1;
                tx_sum.update(&buf[..n]);
                txd += n as u64;
                progress = true;
            }
        }
        if (rxd < p.rx || p.expect_gone) && st & STATUS_RX_READY != 0 {
            let avail = u64::from(inl(reg(REG_RX_AVAIL)));
            let mut n = avail.min(p.chunk as u64) as usize;
            if n > 0 {
                if p.desc {
                    match desc(DESC_CMD_RX, n) {
                        Ok(moved) if moved > 0 => n = moved,
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
                exits += 1;
                if let Some(bad) = stream::first_mismatch(p.peer_seed, rxd, &buf[..n]) {
                    println!(
                        "error: received byte {} is 0x{:02x}, expected 0x{:02x}",
                        rxd + bad as u64,
                        buf[bad],
                        stream::byte(p.peer_seed, rxd + bad as u64)
                    );
                    report("corrupt", txd, rxd, tx_sum, rx_sum, exits);
                    exit(status::FAILURE);
                }
                rx_sum.update(&buf[..n]);
                rxd += n as u64;
                progress = true;
            }
        }
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
    report("complete", txd, rxd, tx_sum, rx_sum, exits);
    exit(status::SUCCESS)
}
