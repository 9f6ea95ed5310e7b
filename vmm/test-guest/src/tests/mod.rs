//! The test programs. Each lives in its own file and is listed in [`ALL`].
//!
//! Adding one: write `tests/NAME.rs` with `pub const TEST: Test`, add the
//! module and the entry in [`ALL`], document it in docs/test-guest.md. A
//! test returns its exit status; one that switches to CPL3 never returns and
//! exits by itself (see [`crate::cpl3`]).

use crate::cmdline::{Cmdline, ParamError};
use crate::exit::status;
use crate::pci::bar;
use crate::println;
use crate::pvh::StartInfo;

mod chan_duplex;
mod cpl3;
mod doorbell;
mod fault;
mod garbage;
mod pci_enum;
mod pio_cost;
mod pio_duplex;
mod samples;
mod sb_litmus;
mod shm_dev;
mod shm_pingpong;
mod shm_rw;
mod shm_stream;
mod stream;
mod timer_window;

/// What a test gets to work with.
pub struct Context<'a> {
    pub cmdline: Cmdline<'static>,
    pub start_info: &'a StartInfo,
}

pub struct Test {
    /// The `test=` value.
    pub name: &'static str,
    /// Parameter summary for the usage message.
    pub params: &'static str,
    pub about: &'static str,
    /// Runs the test; returns the exit status.
    pub run: fn(&Context) -> u8,
}

pub const ALL: &[Test] = &[
    pci_enum::TEST,
    cpl3::TEST,
    pio_cost::TEST,
    shm_rw::TEST,
    doorbell::TEST,
    chan_duplex::TEST,
    pio_duplex::TEST,
    shm_pingpong::TEST,
    shm_stream::TEST,
    garbage::TEST,
    fault::TEST,
    sb_litmus::TEST,
    timer_window::TEST,
];

pub fn find(name: &str) -> Option<&'static Test> {
    ALL.iter().find(|t| t.name == name)
}

/// Parameter summary of [`allocator`], for `Test::params`.
#[macro_export]
macro_rules! allocator_params {
    () => {
        "[pci_io=0xc000] [pci_mem32=0xe0000000] [pci_mem64=0xf0000000]"
    };
}

/// A BAR allocator with the windows from `pci_io=`, `pci_mem32=`,
/// `pci_mem64=` (defaults in [`bar`]), avoiding the loader's memory map.
pub fn allocator(ctx: &Context) -> Result<bar::Allocator, ParamError<'static>> {
    let cmdline = &ctx.cmdline;
    Ok(bar::Allocator::new(
        cmdline.u64_or("pci_io", bar::DEFAULT_IO_BASE)?,
        cmdline.u64_or("pci_mem32", bar::DEFAULT_MEM32_BASE)?,
        cmdline.u64_or("pci_mem64", bar::DEFAULT_MEM64_BASE)?,
        ctx.start_info.memmap,
    ))
}

/// Finds `vendor:device` on bus 0 and assigns its unassigned BARs the way
/// firmware would; on failure prints why and returns the status to exit
/// with.
pub fn find_and_assign(
    (vendor, device): (u16, u16),
    allocator: &mut bar::Allocator,
) -> Result<(crate::pci::Function, bar::Bars), u8> {
    let Some(function) = crate::pci::find(vendor, device) else {
        println!("error: no device {vendor:04x}:{device:04x} on bus 0");
        return Err(status::FAILURE);
    };
    if !allocator.reserve_preassigned() {
        println!("warning: too many preassigned BARs; assignments may overlap");
    }
    let bars = bar::setup(&function, allocator, bar::Assign::Unset);
    Ok((function, bars))
}

/// TSC rate assumed for timeouts when neither `tsc_khz=` nor CPUID says:
/// guessing high errs towards longer timeouts, not spurious ones.
pub const GUESS_TSC_KHZ: u64 = 4_000_000;

/// The TSC rate: `tsc_khz=` if given, else CPUID, else `None`.
pub fn tsc_khz(ctx: &Context) -> Result<Option<u64>, ParamError<'static>> {
    match ctx.cmdline.get("tsc_khz") {
        Some(_) => Ok(Some(ctx.cmdline.u64_or("tsc_khz", GUESS_TSC_KHZ)?)),
        None => Ok(crate::tsc::khz()),
    }
}

/// `vector=`: an interrupt vector the guest counts (default 0).
pub fn vector(ctx: &Context) -> Result<u16, ParamError<'static>> {
    let last = crate::irq::VECTORS as u64 - 1;
    let v = ctx
        .cmdline
        .u64_in("vector", 0, 0..=last, "a vector below 32")?;
    Ok(v as u16)
}

/// Reports a malformed parameter; returns the usage status for the test to
/// pass on.
pub fn bad_param(err: ParamError) -> u8 {
    println!("{err}");
    status::USAGE
}

/// `numerator / denominator` printed with two decimals, in integer
/// arithmetic (no floating point in this guest).
pub struct Ratio(pub u128, pub u128);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Ratio(numerator, denominator) = *self;
        if denominator == 0 {
            return f.write_str("nan");
        }
        let hundredths = (numerator * 100 + denominator / 2) / denominator;
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}
