//! `test=sb-litmus`: the store-buffering litmus test between this guest and
//! a host process, over an ivshmem device's shared memory (BAR2). It checks
//! the emulator, not ivc: a guest `mfence` must order the guest's store
//! before its following load as seen from another CPU, which is what the
//! channel's wake-up protocol relies on (store the request, full fence,
//! re-check the index; docs/protocol.md).
//!
//! Round `k` (1, 2, ...): wait until the host writes `k` to `GO`, store `k`
//! to `X`, `mfence`, load `Y` into `R1`, then publish `R1` and `DONE = k`.
//! The host (`vmm/tests/tcg_memory_order.rs`) does the mirror image on `Y`
//! and `X` after a varying delay; if both loads miss the other side's store
//! of round `k`, the fences did not order the stores before the loads: an
//! outcome sequential consistency (and x86 with `mfence`) forbids.
//!
//! Layout (offsets in BAR2, each word on its own cache line): `GO` 0x000
//! (host), `X` 0x040 (guest), `Y` 0x080 (host), `DONE` 0x0c0 (guest),
//! `R1` 0x100 (guest), `READY` 0x140 (guest: [`READY_MAGIC`] once it runs).

use core::ptr::{read_volatile, write_volatile};

use super::{allocator, bad_param, Context, Test, GUESS_TSC_KHZ};
use crate::cmdline::ParamError;
use crate::exit::status;
use crate::pci::{self, bar};
use crate::{println, tsc};

pub const TEST: Test = Test {
    name: "sb-litmus",
    params: concat!(
        "[dev=1af4:1110] [rounds=100000] [timeout_ms=60000] [tsc_khz=auto] ",
        crate::allocator_params!()
    ),
    about: "store-buffering litmus test with a host process over shared memory (checks the emulator's fences)",
    run,
};

const GO: u64 = 0x000;
const X: u64 = 0x040;
const Y: u64 = 0x080;
const DONE: u64 = 0x0c0;
const R1: u64 = 0x100;
const READY: u64 = 0x140;
/// `READY` once the guest is in its loop: "SBLT".
pub const READY_MAGIC: u32 = u32::from_le_bytes(*b"SBLT");

fn run(ctx: &Context) -> u8 {
    let c = &ctx.cmdline;
    let parsed = (|| -> Result<_, ParamError> {
        let khz = super::tsc_khz(ctx)?.unwrap_or(GUESS_TSC_KHZ);
        Ok((
            c.pci_id_or("dev", pci::IVSHMEM)?,
            c.u64_or("rounds", 100_000)?,
            c.u64_or("timeout_ms", 60_000)?.saturating_mul(khz),
            allocator(ctx)?,
        ))
    })();
    let ((vendor, device), rounds, timeout, mut allocator) = match parsed {
        Ok(v) => v,
        Err(e) => return bad_param(e),
    };
    let (function, bars) = match super::find_and_assign((vendor, device), &mut allocator) {
        Ok(found) => found,
        Err(status) => return status,
    };
    let Some(b) = bars[2].filter(|b| b.kind != bar::BarKind::Io && b.addr != 0 && b.size >= 0x1000)
    else {
        println!(
            "error: {} has no assigned memory BAR2 of 4 KiB or more",
            function.bdf
        );
        return status::FAILURE;
    };
    let base = match b.map() {
        Ok(addr) => addr,
        Err(err) => {
            println!("error: cannot map BAR2 at 0x{:x}: {err:?}", b.addr);
            return status::FAILURE;
        }
    };
    let word = |off: u64| (base + off) as *mut u32;
    // SAFETY: `base` maps BAR2 (at least 4 KiB, checked) and every offset
    // used is below 0x180; the memory is shared with the host, hence
    // volatile accesses only.
    let (rd, wr) = (
        |off: u64| unsafe { read_volatile(word(off)) },
        |off: u64, v: u32| unsafe { write_volatile(word(off), v) },
    );
    println!("sb-litmus {} rounds={rounds}", function.bdf);
    wr(READY, READY_MAGIC);
    for k in 1..=rounds {
        let k = k as u32;
        let start = tsc::rdtsc();
        while rd(GO) != k {
            core::hint::spin_loop();
            if tsc::rdtsc().wrapping_sub(start) > timeout {
                println!("error: the host did not start round {k} within timeout_ms");
                return status::FAILURE;
            }
        }
        wr(X, k);
        // SAFETY: a full fence; no memory operands.
        unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
        let r1 = rd(Y);
        wr(R1, r1);
        wr(DONE, k);
    }
    println!("sb-litmus-done rounds={rounds}");
    status::SUCCESS
}
