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
fn hostile_descriptors(p: &Params, tx_desc: *mut [u8; Desc::SIZE], buf: u64) {
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
        set_desc_addr(p.port, REG_TX_DESC_LO, REG_TX_DESC_HI, at);
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
    set_desc_addr(p.port, REG_TX_DESC_LO, REG_TX_DESC_HI, tx_desc as u64);
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

/// Points a direction's descriptor register pair (`lo`, `hi`) at `at`.
fn set_desc_addr(port: u16, lo: u16, hi: u16, at: u64) {
    outl(port + lo, at as u32);
    outl(port + hi, (at >> 32) as u32);
}

fn user_main(p: &Params) -> ! {
    outl(p.port + REG_CONTROL, CONTROL_CLEAR_ERROR | CONTROL_OPEN);
    let mut small = [0u8; 4096];
    // SAFETY: this test runs on one CPU and nothing else uses DESC_AREA;
    // raw pointers avoid references to the static mut.
    let area = unsafe { &mut *core::ptr::addr_of_mut!(DESC_AREA) };
    let buf: &mut [u8] = if p.desc { &mut area.buf } else { &mut small };
    let (tx_desc, rx_desc) = (
        core::ptr::addr_of_mut!(area.tx),
        core::ptr::addr_of_mut!(area.rx),
    );
    let mut d = Duplex::new(p, buf, tx_desc, rx_desc);
    if p.desc {
        set_desc_addr(p.port, REG_TX_DESC_LO, REG_TX_DESC_HI, tx_desc as u64);
        set_desc_addr(p.port, REG_RX_DESC_LO, REG_RX_DESC_HI, rx_desc as u64);
        hostile_descriptors(p, tx_desc, d.buf_addr);
    }
    d.transfer();
    outl(p.port + REG_CONTROL, CONTROL_CLOSE);
    if p.desc {
        println!(
            "pio-desc-timing gos={} bytes={} cycles={}",
            d.gos, d.go_bytes, d.go_cycles
        );
    }
    d.report("complete");
    exit(status::SUCCESS)
}

/// The transfer at CPL3: both streams' progress and what the result lines
/// report.
struct Duplex<'a> {
    p: &'a Params,
    /// One chunk (in DESC_AREA with descriptors, else on the stack).
    buf: &'a mut [u8],
    /// Identity paging: the buffer's guest physical address.
    buf_addr: u64,
    /// The two descriptors, in DESC_AREA.
    tx_desc: *mut [u8; Desc::SIZE],
    rx_desc: *mut [u8; Desc::SIZE],
    /// Bytes sent and received, and their checksums.
    txd: u64,
    rxd: u64,
    tx_sum: Fnv,
    rx_sum: Fnv,
    /// String operations (or descriptor `GO`s) that moved bytes.
    exits: u64,
    /// GOs that moved bytes: how many, the bytes, and the TSC cycles spent
    /// in their `IN`s (the exit and the VMM's copies), for the benchmarks.
    gos: u64,
    go_bytes: u64,
    go_cycles: u64,
    connected: bool,
    /// TSC at the connection, for `cycles=` (the transfer timed by the
    /// guest); 0 before.
    connected_at: u64,
}

impl<'a> Duplex<'a> {
    fn new(
        p: &'a Params,
        buf: &'a mut [u8],
        tx_desc: *mut [u8; Desc::SIZE],
        rx_desc: *mut [u8; Desc::SIZE],
    ) -> Self {
        let buf_addr = buf.as_ptr() as u64;
        Duplex {
            p,
            buf,
            buf_addr,
            tx_desc,
            rx_desc,
            txd: 0,
            rxd: 0,
            tx_sum: Fnv::new(),
            rx_sum: Fnv::new(),
            exits: 0,
            gos: 0,
            go_bytes: 0,
            go_cycles: 0,
            connected: false,
            connected_at: 0,
        }
    }

    fn reg(&self, r: u16) -> u16 {
        self.p.port + r
    }

    /// Moves both streams until both are done (or, with `expect_gone`, the
    /// peer left); a failure or the peer's leaving ends the test here.
    fn transfer(&mut self) {
        let p = self.p;
        let mut last_progress = tsc::rdtsc();
        // Descriptor mode needs no count registers (a GO moves what it can
        // and says how much) and reads STATUS only until connected and
        // after a round that moved nothing: two exits a round, as in the
        // driver.
        let mut idle = true;
        loop {
            let st = if !p.desc || !self.connected || idle {
                inl(self.reg(REG_STATUS))
            } else {
                STATUS_CONNECTED | STATUS_TX_SPACE | STATUS_RX_READY
            };
            if st & STATUS_ERROR != 0 {
                println!("error: STATUS=0x{st:x} has ERROR");
                self.fail("error");
            }
            if st & STATUS_CONNECTED != 0 && !self.connected {
                self.connected = true;
                self.connected_at = tsc::rdtsc();
                println!("pio-connected");
            }
            let mut progress = false;
            if self.txd < p.tx && st & STATUS_TX_SPACE != 0 {
                progress |= self.send();
            }
            if (self.rxd < p.rx || p.expect_gone) && st & STATUS_RX_READY != 0 {
                progress |= self.receive();
            }
            idle = !progress;
            if st & STATUS_PEER_GONE != 0 && !progress {
                println!("pio-peer-gone sent={} received={}", self.txd, self.rxd);
                self.report("peer-gone");
                exit(if p.expect_gone {
                    status::SUCCESS
                } else {
                    status::FAILURE
                });
            }
            if self.txd >= p.tx && self.rxd >= p.rx && !p.expect_gone {
                return;
            }
            let now = tsc::rdtsc();
            if progress {
                last_progress = now;
            } else if now.wrapping_sub(last_progress) > p.timeout {
                println!("error: no progress within timeout_ms (STATUS=0x{st:x})");
                self.fail("error");
            }
        }
    }

    /// Sends the next chunk of the stream, as much as the device takes
    /// now; whether bytes moved.
    fn send(&mut self) -> bool {
        let p = self.p;
        let free = if p.desc {
            u64::MAX
        } else {
            u64::from(inl(self.reg(REG_TX_FREE)))
        };
        let mut n = free.min(p.tx - self.txd).min(p.chunk as u64) as usize;
        if n == 0 {
            return false;
        }
        if p.check {
            stream::fill(p.seed, self.txd, &mut self.buf[..n]);
        }
        if p.desc {
            match self.desc(REG_TX_GO, n) {
                // What fits now (maybe nothing); the rest next round.
                Ok(moved) => n = moved,
                other => {
                    println!("error: TX descriptor of {n} bytes: {other:?}");
                    self.fail("error");
                }
            }
        } else {
            // Dwords: OUTS costs one exit per element (see port::outsd).
            let data = self.reg(REG_DATA);
            let whole = n & !3;
            if p.cpl0_io {
                cpl0_io::outsd(data, &self.buf[..whole]);
            } else {
                outsd(data, &self.buf[..whole]);
            }
            outsb(data, &self.buf[whole..n]);
        }
        self.exits += u64::from(n > 0);
        if p.check {
            self.tx_sum.update(&self.buf[..n]);
        }
        self.txd += n as u64;
        n > 0
    }

    /// Receives what the device has (at most a chunk) and checks it;
    /// whether bytes moved.
    fn receive(&mut self) -> bool {
        let p = self.p;
        let avail = if p.desc {
            u64::MAX
        } else {
            u64::from(inl(self.reg(REG_RX_AVAIL)))
        };
        let mut n = avail.min(p.chunk as u64) as usize;
        if n == 0 {
            return false;
        }
        if p.desc {
            match self.desc(REG_RX_GO, n) {
                Ok(moved) => n = moved,
                other => {
                    println!("error: RX descriptor of {n} bytes: {other:?}");
                    self.fail("error");
                }
            }
        } else if p.cpl0_io {
            cpl0_io::insb(self.reg(REG_DATA), &mut self.buf[..n]);
        } else {
            insb(self.reg(REG_DATA), &mut self.buf[..n]);
        }
        self.exits += u64::from(n > 0);
        let bad = if p.check {
            stream::first_mismatch(p.peer_seed, self.rxd, &self.buf[..n])
        } else {
            None
        };
        if let Some(bad) = bad {
            println!(
                "error: received byte {} is 0x{:02x}, expected 0x{:02x}",
                self.rxd + bad as u64,
                self.buf[bad],
                stream::byte(p.peer_seed, self.rxd + bad as u64)
            );
            self.fail("corrupt");
        }
        if p.check {
            self.rx_sum.update(&self.buf[..n]);
        }
        self.rxd += n as u64;
        n > 0
    }

    /// One descriptor over `buf[..n]`, one `IN` of `go`; bytes moved.
    fn desc(&mut self, go: u16, n: usize) -> Result<usize, u32> {
        let d = if go == REG_TX_GO {
            self.tx_desc
        } else {
            self.rx_desc
        };
        // SAFETY: `d` points into DESC_AREA (see `user_main`); volatile,
        // because only the device reads it.
        unsafe { d.write_volatile(Desc::encode(self.buf_addr, n as u32)) };
        let t0 = tsc::rdtsc();
        let r = inl_dma(self.reg(go));
        let t1 = tsc::rdtsc();
        if r == DESC_ERROR | DESC_ERR_PEER_GONE {
            // The end of the connection: STATUS says so in the next round.
            Ok(0)
        } else if r & DESC_ERROR != 0 {
            Err(r)
        } else {
            let moved = (r as usize).min(n);
            if moved > 0 {
                self.gos += 1;
                self.go_bytes += moved as u64;
                self.go_cycles += t1.wrapping_sub(t0);
            }
            Ok(moved)
        }
    }

    /// The `pio-result` line.
    fn report(&self, outcome: &str) {
        let cycles = match self.connected_at {
            0 => 0,
            t => tsc::rdtsc().wrapping_sub(t),
        };
        println!(
            "pio-result outcome={outcome} sent={} received={} tx_fnv=0x{:016x} rx_fnv=0x{:016x} string_ops={} checked={} cycles={cycles}",
            self.txd, self.rxd, self.tx_sum.value(), self.rx_sum.value(), self.exits, self.p.check as u8
        );
    }

    /// Reports `outcome` and ends the test as failed.
    fn fail(&self, outcome: &str) -> ! {
        self.report(outcome);
        exit(status::FAILURE)
    }
}
