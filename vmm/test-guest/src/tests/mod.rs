//! The test programs. Each lives in its own file and is listed in [`ALL`].
//!
//! Adding one: write `tests/NAME.rs` with `pub const TEST: Test`, add the
//! module and the entry in [`ALL`], document it in docs/test-guest.md. A
//! test returns its exit status; one that switches to CPL3 never returns and
//! exits by itself (see [`crate::cpl3`]).

use crate::cmdline::{Cmdline, ParamError};
use crate::exit::status;
use crate::println;
use crate::pvh::StartInfo;

mod cpl3;
mod fault;
mod pci_enum;
mod pio_cost;

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

pub const ALL: &[Test] = &[pci_enum::TEST, cpl3::TEST, pio_cost::TEST, fault::TEST];

pub fn find(name: &str) -> Option<&'static Test> {
    ALL.iter().find(|t| t.name == name)
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
