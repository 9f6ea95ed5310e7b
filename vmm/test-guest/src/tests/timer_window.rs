//! `test=timer-window`: does every timer interrupt arrive while the guest
//! keeps its interrupts off most of the time?
//!
//! A periodic local-APIC timer ticks every `period_us`. The guest runs with
//! IF clear, making `exits` port writes (each one a VM exit) between short
//! `sti; nop; cli` windows, for `seconds`. So a tick is nearly always
//! pending while interrupts are off: the hypervisor under us must ask for
//! an interrupt window (on AMD SVM, KVM sets V_IRQ in the VMCB) on most of
//! its VM entries, and take the tick in at the next window.
//!
//! Under nested KVM on QEMU's TCG this is the load that makes QEMU 10.0's
//! VMRUN emulation set `CPU_INTERRUPT_VIRQ` in the vCPU's interrupt request
//! word without the lock the I/O thread holds when it sets a bit there (the
//! L1 APIC's poll request for its own timer): a lost update loses the L1's
//! timer interrupt, which stalls this guest's ticks (its timer is the L1's
//! hrtimer) until some other interrupt reaches the L1. docs/testing.md has
//! the story. The test reports the ticks, the longest gap between two, and
//! fails when a gap exceeds `stall_ms`.

use super::{bad_param, tsc_khz, Context, Test, GUESS_TSC_KHZ};
use crate::cmdline::ParamError;
use crate::exit::status;
use crate::port::outb;
use crate::{apic, irq, println, tsc};

pub const TEST: Test = Test {
    name: "timer-window",
    params: "[period_us=100] [exits=20] [seconds=20] [stall_ms=1000] [tsc_khz=auto]",
    about: "periodic APIC timer taken in short interrupt windows: count ticks, longest gap",
    run,
};

/// The counting vector used for the timer (`irq::FIRST_VECTOR` + this).
const SLOT: usize = 0;

struct Params {
    period_us: u64,
    exits: u64,
    seconds: u64,
    stall_ms: u64,
    tsc_khz: u64,
}

fn params(ctx: &Context) -> Result<Params, ParamError<'static>> {
    let c = &ctx.cmdline;
    Ok(Params {
        period_us: c.u64_in("period_us", 100, 10..=1_000_000, "10 to 1000000")?,
        exits: c.u64_in("exits", 20, 1..=1_000_000, "1 to 1000000")?,
        seconds: c.u64_in("seconds", 20, 1..=3600, "1 to 3600")?,
        stall_ms: c.u64_in("stall_ms", 1000, 1..=3_600_000, "1 to 3600000")?,
        tsc_khz: match tsc_khz(ctx)? {
            Some(khz) => khz,
            None => {
                println!("tsc_khz unknown: assuming {GUESS_TSC_KHZ} (pass tsc_khz=)");
                GUESS_TSC_KHZ
            }
        },
    })
}

fn run(ctx: &Context) -> u8 {
    let p = match params(ctx) {
        Ok(p) => p,
        Err(e) => return bad_param(e),
    };
    if let Err(e) = apic::init() {
        println!("error: {e}");
        return status::FAILURE;
    }
    irq::init();
    println!(
        "timer-window: period_us={} exits={} seconds={} stall_ms={} tsc_khz={}",
        p.period_us, p.exits, p.seconds, p.stall_ms, p.tsc_khz
    );
    // A u32 count of 1 GHz bus cycles: at most ~4.29 s, far above the range.
    let count = (p.period_us * 1000) as u32;
    apic::start_periodic_timer(irq::FIRST_VECTOR + SLOT as u8, count);
    let cycles_per_ms = p.tsc_khz;
    let start = tsc::rdtsc();
    let end = start + p.seconds * 1000 * cycles_per_ms;
    let (mut seen, mut last_tick, mut max_gap, mut stalls) = (0u64, start, 0u64, 0u64);
    let mut windows = 0u64;
    loop {
        for _ in 0..p.exits {
            outb(0x80, 0);
        }
        // SAFETY: every vector the APIC can raise has a handler (irq::init);
        // the window is one instruction long, as in an idle loop's `sti; hlt`.
        unsafe {
            core::arch::asm!(
                "sti",
                "nop",
                "nop",
                "nop",
                "nop",
                "cli",
                options(nomem, nostack)
            )
        };
        windows += 1;
        let now = tsc::rdtsc();
        let n = irq::count(SLOT);
        if n != seen {
            let at = irq::last_tsc(SLOT);
            let gap = at.wrapping_sub(last_tick);
            max_gap = max_gap.max(gap);
            if gap > p.stall_ms * cycles_per_ms {
                stalls += 1;
                println!(
                    "timer-window: stall: no tick for {} ms (after tick {seen})",
                    gap / cycles_per_ms
                );
            }
            seen = n;
            last_tick = at;
        } else if now.wrapping_sub(last_tick) > p.stall_ms * cycles_per_ms * 10 {
            // Ten stall limits without a tick: it is not coming back.
            stalls += 1;
            println!(
                "timer-window: stall: no tick for {} ms, giving up",
                now.wrapping_sub(last_tick) / cycles_per_ms
            );
            break;
        }
        if now >= end {
            break;
        }
    }
    apic::stop_timer();
    let now = tsc::rdtsc();
    // Ticks that stopped for good near the end never see a next tick.
    let tail = now.wrapping_sub(last_tick);
    if tail > p.stall_ms * cycles_per_ms && stalls == 0 {
        stalls += 1;
        println!(
            "timer-window: stall: no tick for the last {} ms",
            tail / cycles_per_ms
        );
    }
    let elapsed_ms = now.wrapping_sub(start) / cycles_per_ms;
    println!(
        "timer-window ticks={seen} expected={} windows={windows} max_gap_us={} stalls={stalls} elapsed_ms={elapsed_ms}",
        elapsed_ms * 1000 / p.period_us,
        max_gap * 1000 / cycles_per_ms
    );
    if stalls == 0 && seen > 0 {
        status::SUCCESS
    } else {
        status::FAILURE
    }
}
