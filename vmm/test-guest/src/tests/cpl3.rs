//! `test=cpl3`: prove code runs at CPL3 and loop over memory there.
//!
//! Under PVM this is the native-speed path: the loop runs without emulation,
//! which the `cycles` figure shows next to the emulated CPL0 boot.

use core::ptr::{read_volatile, write_volatile};

use super::{bad_param, Context, Test};
use crate::exit::{exit, status};
use crate::tsc::rdtsc;
use crate::{boot, cpl3, println};

pub const TEST: Test = Test {
    name: "cpl3",
    params: "[bytes=1m] [rounds=4]",
    about: "switch to CPL3 (IOPL=3), print cpl=3, checksum a memory loop, exit 0",
    run,
};

/// Multiplier of the fill pattern (a large odd constant, so every word of
/// the buffer differs and a misdirected write changes the sum).
const PATTERN: u64 = 0x9e37_79b9_7f4a_7c15;

struct Params {
    buffer: u64,
    words: u64,
    rounds: u64,
}

fn run(ctx: &Context) -> u8 {
    let (bytes, rounds) = match (
        ctx.cmdline.u64_or("bytes", 1 << 20),
        ctx.cmdline.u64_or("rounds", 4),
    ) {
        (Ok(b), Ok(r)) => (b, r),
        (Err(err), _) | (_, Err(err)) => return bad_param(err),
    };
    let words = bytes / 8;
    let Some(buffer) = ctx.start_info.find_ram(boot::image_end(), words * 8, 4096) else {
        println!("error: no {bytes} bytes of RAM above the image in the memory map");
        return status::FAILURE;
    };
    // The boot map only covers 4 GiB; a buffer must lie inside it.
    if buffer + words * 8 > crate::paging::BOOT_MAPPED_END {
        println!("error: buffer at 0x{buffer:x} is beyond the 4 GiB identity map");
        return status::FAILURE;
    }
    println!(
        "entering cpl3 buffer=0x{buffer:x} bytes={} rounds={rounds}",
        words * 8
    );
    let params = Params {
        buffer,
        words,
        rounds,
    };
    cpl3::run(user_main, &params)
}

fn user_main(p: &Params) -> ! {
    let cpl = cpl3::current_cpl();
    println!("cpl={cpl}");
    if cpl != 3 {
        exit(status::FAILURE);
    }
    let buffer = p.buffer as *mut u64;
    let start = rdtsc();
    let mut sum: u64 = 0;
    for round in 0..p.rounds {
        for i in 0..p.words {
            // SAFETY: buffer..buffer + words*8 is RAM from the memory map,
            // above the image, identity-mapped and user-accessible; nothing
            // else uses it. Volatile keeps the compiler from folding the
            // fill-then-sum into a formula: the memory traffic is the point.
            unsafe {
                write_volatile(
                    buffer.add(i as usize),
                    i.wrapping_mul(PATTERN).wrapping_add(round),
                )
            };
        }
        for i in 0..p.words {
            // SAFETY: as above.
            sum = sum.wrapping_add(unsafe { read_volatile(buffer.add(i as usize)) });
        }
    }
    let cycles = rdtsc().wrapping_sub(start);
    let expected = expected_sum(p.words, p.rounds);
    println!(
        "memloop bytes={} rounds={} checksum=0x{sum:016x} expected=0x{expected:016x} cycles={cycles}",
        p.words * 8,
        p.rounds
    );
    exit(if sum == expected {
        status::SUCCESS
    } else {
        status::FAILURE
    })
}

/// Closed form of the loop's sum: rounds * PATTERN * n(n-1)/2 + n * rounds(rounds-1)/2,
/// all modulo 2^64.
fn expected_sum(n: u64, rounds: u64) -> u64 {
    let pairs = ((n as u128 * n.saturating_sub(1) as u128) / 2) as u64;
    let round_sum = ((rounds as u128 * rounds.saturating_sub(1) as u128) / 2) as u64;
    rounds
        .wrapping_mul(PATTERN)
        .wrapping_mul(pairs)
        .wrapping_add(n.wrapping_mul(round_sum))
}
