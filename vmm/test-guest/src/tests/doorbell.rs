//! `test=doorbell`: an ivshmem doorbell write arriving as an MSI-X interrupt.
//!
//! The guest half of the `shm-irq` path: doorbell register write -> VMM
//! (ioeventfd) -> peer's irqfd -> MSI-X -> local APIC -> IDT. `mode=self`
//! rings this VM's own doorbell (one VM is enough: the server hands every
//! peer its own eventfds too); `mode=wait` and `mode=ring peer=N` split the
//! two halves across two VMs.

use core::ptr::{read_volatile, write_volatile};

use ivc_abi::ivshmem::{Doorbell, BAR_IO_DOORBELL, BAR_REGISTERS, REG_DOORBELL, REG_IV_POSITION};

use super::{allocator, bad_param, Context, Test, GUESS_TSC_KHZ};
use crate::cmdline::ParamError;
use crate::exit::exit;
use crate::exit::status;
use crate::pci::{self, bar, msix};
use crate::{apic, cpl3, irq, println, tsc};

pub const TEST: Test = Test {
    name: "doorbell",
    params: concat!(
        "[dev=1af4:1110] [mode=self|wait|ring] [via=mmio|io] [peer=N] [vector=0] [count=10] ",
        "[timeout_ms=5000] [gap_us=1000] [tsc_khz=auto] ",
        crate::allocator_params!()
    ),
    about: "ring an ivshmem doorbell, receive it as an MSI-X interrupt",
    run,
};

/// Which Doorbell register: ivshmem's (BAR0, MMIO) or ivc-shm's I/O-port
/// extension (BAR4).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Mmio,
    Io,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    SelfRing,
    Wait,
    Ring,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::SelfRing => "self",
            Mode::Wait => "wait",
            Mode::Ring => "ring",
        }
    }
}

/// The test's parameters.
struct Params {
    id: (u16, u16),
    via: Via,
    mode: Mode,
    vector: u16,
    /// The peer to ring; `None`: our own IVPosition.
    peer: Option<u64>,
    count: u64,
    /// Wait for the interrupts (`self`, `wait`), TSC cycles.
    timeout: u64,
    /// Between two doorbells (`ring`), TSC cycles.
    gap: u64,
}

/// The opened device: its registers and doorbell.
struct Device {
    function: pci::Function,
    bars: bar::Bars,
    registers: u64,
    /// The I/O doorbell port (`via=io`); `None`: the MMIO Doorbell.
    io_port: Option<u16>,
    ivposition: u32,
}

fn run(ctx: &Context) -> u8 {
    let (p, mut allocator) = match parse(ctx).and_then(|p| Ok((p, allocator(ctx)?))) {
        Ok(p) => p,
        Err(err) => return bad_param(err),
    };
    let dev = match open(&p, &mut allocator) {
        Ok(dev) => dev,
        Err(status) => return status,
    };
    let target = p.peer.unwrap_or(dev.ivposition as u64);
    if p.mode != Mode::Ring {
        if let Err(code) = route_interrupt(&dev.function, &dev.bars, p.vector) {
            return code;
        }
    }
    // Tier-2 harnesses start the ringing VM once the waiting one printed this.
    println!(
        "doorbell {} ivposition={} mode={} vector={} count={} via={}",
        dev.function.bdf,
        dev.ivposition,
        p.mode.name(),
        p.vector,
        p.count,
        if dev.io_port.is_some() { "io" } else { "mmio" }
    );
    let value = Doorbell {
        // A peer id is 16 bits: the register's upper half.
        peer: target as u16,
        vector: p.vector,
    }
    .value();
    match p.mode {
        Mode::SelfRing => cpl3::run_with_interrupts(
            self_ring_main,
            &SelfRing {
                registers: dev.registers,
                io_port: dev.io_port,
                value,
                n: p.vector as usize,
                count: p.count,
                timeout: p.timeout,
            },
        ),
        Mode::Wait => wait(&p),
        Mode::Ring => ring(&p, &dev, value),
    }
}

/// Parses the command line (everything but the BAR allocator).
fn parse(ctx: &Context) -> Result<Params, ParamError<'static>> {
    let cmdline = &ctx.cmdline;
    let id = cmdline.pci_id_or("dev", pci::IVSHMEM)?;
    let mode = cmdline.choice(
        "mode",
        Mode::SelfRing,
        &[
            ("self", Mode::SelfRing),
            ("wait", Mode::Wait),
            ("ring", Mode::Ring),
        ],
        "self, wait or ring",
    )?;
    let via = cmdline.choice(
        "via",
        Via::Mmio,
        &[("mmio", Via::Mmio), ("io", Via::Io)],
        "mmio or io",
    )?;
    let vector = super::vector(ctx)?;
    let peer = cmdline
        .get("peer")
        .map(|_| cmdline.u64_or("peer", 0))
        .transpose()?;
    let default_count = if mode == Mode::SelfRing { 10 } else { 1 };
    let khz = super::tsc_khz(ctx)?.unwrap_or(GUESS_TSC_KHZ);
    Ok(Params {
        id,
        via,
        mode,
        vector,
        peer,
        count: cmdline.u64_or("count", default_count)?.max(1),
        timeout: cmdline.u64_or("timeout_ms", 5000)?.saturating_mul(khz),
        gap: cmdline.u64_or("gap_us", 1000)?.saturating_mul(khz) / 1000,
    })
}

/// Finds the device, maps its registers, picks the doorbell and reads
/// IVPosition; on failure prints why and returns the status.
fn open(p: &Params, allocator: &mut bar::Allocator) -> Result<Device, u8> {
    let (function, bars) = super::find_and_assign(p.id, allocator)?;
    let Some(registers) = bars[BAR_REGISTERS].and_then(|b| b.map().ok()) else {
        println!(
            "error: {} BAR0 (registers) is not an assigned memory BAR",
            function.bdf
        );
        return Err(status::FAILURE);
    };
    let io_port = match p.via {
        Via::Mmio => None,
        Via::Io => {
            match bars[BAR_IO_DOORBELL].filter(|b| b.kind == bar::BarKind::Io && b.addr != 0) {
                Some(b) => Some(b.addr as u16),
                None => {
                    println!(
                        "error: {} has no I/O doorbell BAR4 (an ivc-shm extension)",
                        function.bdf
                    );
                    return Err(status::FAILURE);
                }
            }
        }
    };
    // SAFETY: BAR0 is ivshmem's register block, assigned, decoding and
    // mapped; IVPosition is a read-only 32-bit register.
    let ivposition =
        unsafe { read_volatile((registers + u64::from(REG_IV_POSITION)) as *const u32) };
    Ok(Device {
        function,
        bars,
        registers,
        io_port,
        ivposition,
    })
}

/// `mode=wait`: the interrupts of another VM's doorbells.
fn wait(p: &Params) -> u8 {
    let n = p.vector as usize;
    // Several doorbells can merge into one interrupt (eventfd semantics):
    // wait for at least `count`.
    let reached = irq::wait_for(n, p.count, p.timeout);
    report(0, p.count, irq::count(n), None);
    if !reached {
        println!(
            "error: fewer than {} interrupts within the timeout",
            p.count
        );
        return status::FAILURE;
    }
    status::SUCCESS
}

/// `mode=ring`: `count` doorbells to another VM, `gap` apart.
fn ring(p: &Params, dev: &Device, value: u32) -> u8 {
    for _ in 0..p.count {
        ring_doorbell(dev.registers, dev.io_port, value);
        let start = tsc::rdtsc();
        while tsc::rdtsc().wrapping_sub(start) < p.gap {
            core::hint::spin_loop();
        }
    }
    report(p.count, 0, 0, None);
    status::SUCCESS
}

/// Writes `value` (a [`Doorbell`] value) to the Doorbell register: in BAR0
/// at `registers`, or the I/O port of BAR4.
fn ring_doorbell(registers: u64, io_port: Option<u16>, value: u32) {
    match io_port {
        Some(port) => crate::port::outl(port, value),
        // SAFETY: Doorbell is a write-only 32-bit register in the mapped
        // BAR0 (identity-mapped, user-accessible); writing it is the point
        // of the test.
        None => unsafe { write_volatile((registers + u64::from(REG_DOORBELL)) as *mut u32, value) },
    }
}

/// What `mode=self` needs at CPL3.
struct SelfRing {
    registers: u64,
    io_port: Option<u16>,
    value: u32,
    n: usize,
    count: u64,
    timeout: u64,
}

/// `mode=self`, timed at CPL3 with interrupts on. Under PVM ring-0 code is
/// emulated one instruction at a time and a pending interrupt waits for the
/// emulation to end, so a CPL0 wait measured PVM's emulator (about 330 us
/// here), not the doorbell path; the waits of the other modes are not timed.
fn self_ring_main(p: &SelfRing) -> ! {
    let mut total_latency: u64 = 0;
    let mut total_write: u64 = 0;
    for i in 0..p.count {
        let start = tsc::rdtsc();
        ring_doorbell(p.registers, p.io_port, p.value);
        total_write += tsc::rdtsc().wrapping_sub(start);
        if !irq::spin_until(p.n, i + 1, start, p.timeout) {
            println!("error: interrupt {} of {} did not arrive", i + 1, p.count);
            report(i + 1, p.count, irq::count(p.n), None);
            exit(status::FAILURE)
        }
        total_latency += irq::last_tsc(p.n).wrapping_sub(start);
    }
    report(
        p.count,
        p.count,
        irq::count(p.n),
        Some((total_latency / p.count, total_write / p.count)),
    );
    exit(status::SUCCESS)
}

/// Enables the APIC, installs the handlers and points MSI-X entry `vector`
/// at `irq::FIRST_VECTOR + vector` on this CPU.
pub(super) fn route_interrupt(
    function: &pci::Function,
    bars: &bar::Bars,
    vector: u16,
) -> Result<(), u8> {
    let Some(msix) = msix::read(function) else {
        println!("error: {} has no MSI-X capability", function.bdf);
        return Err(status::FAILURE);
    };
    let Some(table) = bars[msix.table_bar as usize].and_then(|b| b.map().ok()) else {
        println!(
            "error: MSI-X table BAR {} is not an assigned memory BAR",
            msix.table_bar
        );
        return Err(status::FAILURE);
    };
    let apic_id = match apic::init() {
        Ok(id) => id,
        Err(err) => {
            println!("error: local APIC unusable: {err}");
            return Err(status::FAILURE);
        }
    };
    irq::init();
    if !msix.route(table, vector, apic_id, irq::FIRST_VECTOR + vector as u8) {
        println!(
            "error: vector={vector} but the MSI-X table has {} entries",
            msix.table_size
        );
        return Err(status::USAGE);
    }
    msix.enable(function);
    // Without bus mastering a device may not send MSIs (QEMU drops them).
    function.enable_bus_master();
    Ok(())
}

/// `latency`: (doorbell write to handler entry, the write instruction
/// alone), TSC cycles on average.
fn report(sent: u64, expected: u64, received: u64, latency: Option<(u64, u64)>) {
    match latency {
        Some((cycles, write)) => println!(
            "doorbell-result sent={sent} expected={expected} received={received} latency_cycles_avg={cycles} write_cycles_avg={write}"
        ),
        None => println!("doorbell-result sent={sent} expected={expected} received={received}"),
    }
}
