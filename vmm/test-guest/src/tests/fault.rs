//! `test=fault`: raise a fault on purpose, to check that failures are
//! reported (exception line or panic line) and end the VM with the right
//! status, at CPL0 and at CPL3. Never exits 0.

use super::{bad_param, Context, Test};
use crate::exit::status;
use crate::{cpl3, println};

pub const TEST: Test = Test {
    name: "fault",
    params: "[kind=ud|gp|pf|panic] [cpl=0|3]",
    about: "raise a fault; expect status 102 (exception) or 101 (panic)",
    run,
};

#[derive(Clone, Copy)]
enum Kind {
    InvalidOpcode,
    GeneralProtection,
    PageFault,
    Panic,
}

fn run(ctx: &Context) -> u8 {
    let cmdline = &ctx.cmdline;
    let params = (|| {
        Ok((
            cmdline.choice(
                "kind",
                Kind::InvalidOpcode,
                &[
                    ("ud", Kind::InvalidOpcode),
                    ("gp", Kind::GeneralProtection),
                    ("pf", Kind::PageFault),
                    ("panic", Kind::Panic),
                ],
                "ud, gp, pf or panic",
            )?,
            cmdline.choice("cpl", false, &[("0", false), ("3", true)], "0 or 3")?,
        ))
    })();
    match params {
        Ok((kind, false)) => raise(&kind),
        Ok((kind, true)) => cpl3::run(raise, &kind),
        Err(err) => bad_param(err),
    }
}

fn raise(kind: &Kind) -> ! {
    println!("raising fault at cpl={}", cpl3::current_cpl());
    // The faulting accesses are inline assembly, not Rust pointer reads:
    // the fault is the point, and it must not be undefined behaviour.
    match kind {
        // SAFETY: UD2 raises #UD, which the IDT reports; nothing else happens.
        Kind::InvalidOpcode => unsafe { core::arch::asm!("ud2", options(nostack)) },
        // SAFETY: a load from a non-canonical address raises #GP before any
        // memory is touched.
        Kind::GeneralProtection => unsafe { load(0x8000_0000_0000_0000) },
        // SAFETY: 64 GiB is above the identity map, so the load raises #PF
        // before any memory is touched.
        Kind::PageFault => unsafe { load(0x10_0000_0000) },
        Kind::Panic => panic!("requested by test=fault kind=panic"),
    }
    // Only reached if the CPU did not fault.
    println!("error: no fault happened");
    crate::exit::exit(status::FAILURE)
}

/// Loads 8 bytes from `addr`.
///
/// # Safety
///
/// Only for addresses that fault; see the callers.
unsafe fn load(addr: u64) {
    // SAFETY: the caller passes an address that faults before any access.
    unsafe { core::arch::asm!("mov {0}, [{0}]", inout(reg) addr => _, options(nostack, readonly)) };
}
