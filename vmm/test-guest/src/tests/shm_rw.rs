//! `test=shm-rw`: write and/or verify a pattern in a memory BAR, by default
//! BAR2 of the first ivshmem-compatible device (1af4:1110, which QEMU's
//! ivshmem and our ivc-shm both are): the shared memory.
//!
//! The loops run at CPL3, natively under PVM. Across two VMs that share the
//! memory, `mode=write seed=S` in one and then `mode=read seed=S` in the
//! other proves both see the same bytes.

use core::ptr::{read_volatile, write_volatile};

use super::{allocator, bad_param, Context, Test};
use crate::cmdline::ParamError;
use crate::exit::{exit, status};
use crate::pci::{self, bar};
use crate::tsc::rdtsc;
use crate::{cpl3, println};

pub const TEST: Test = Test {
    name: "shm-rw",
    params: concat!(
        "[dev=1af4:1110] [bar=2] [offset=0] [bytes=all] [mode=rw|write|read] [seed=1] ",
        crate::allocator_params!()
    ),
    about: "write/verify a pattern in a device's memory BAR (shared memory) at CPL3",
    run,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    ReadWrite,
    Write,
    Read,
}

struct Params {
    base: u64,
    words: u64,
    mode: Mode,
    seed: u64,
}

fn run(ctx: &Context) -> u8 {
    let cmdline = &ctx.cmdline;
    let params = (|| -> Result<_, ParamError> {
        let (vendor, device) = cmdline.pci_id_or("dev", pci::IVSHMEM)?;
        let mode = cmdline.choice(
            "mode",
            Mode::ReadWrite,
            &[
                ("rw", Mode::ReadWrite),
                ("write", Mode::Write),
                ("read", Mode::Read),
            ],
            "rw, write or read",
        )?;
        let index = cmdline.u64_in("bar", 2, 0..=5, "a BAR index 0-5")?;
        Ok((
            vendor,
            device,
            index as usize,
            cmdline.u64_or("offset", 0)?,
            cmdline
                .get("bytes")
                .map(|_| cmdline.u64_or("bytes", 0))
                .transpose()?,
            mode,
            cmdline.u64_or("seed", 1)?,
            allocator(ctx)?,
        ))
    })();
    let (vendor, device, index, offset, bytes, mode, seed, mut allocator) = match params {
        Ok(p) => p,
        Err(err) => return bad_param(err),
    };

    let (function, bars) = match super::find_and_assign((vendor, device), &mut allocator) {
        Ok(found) => found,
        Err(status) => return status,
    };
    let Some(b) = bars[index].filter(|b| b.kind != bar::BarKind::Io && b.addr != 0) else {
        println!("error: {} has no assigned memory BAR {index}", function.bdf);
        return status::FAILURE;
    };
    let bytes = bytes.unwrap_or(b.size.saturating_sub(offset));
    if offset % 8 != 0 || offset.checked_add(bytes).is_none_or(|end| end > b.size) {
        println!(
            "error: offset=0x{offset:x} bytes={bytes} does not fit BAR {index} (size 0x{:x}) or is not 8-byte aligned",
            b.size
        );
        return status::USAGE;
    }
    let addr = match b.map() {
        Ok(addr) => addr,
        Err(err) => {
            println!("error: cannot map BAR {index} at 0x{:x}: {err:?}", b.addr);
            return status::FAILURE;
        }
    };
    let mode_name = match mode {
        Mode::ReadWrite => "rw",
        Mode::Write => "write",
        Mode::Read => "read",
    };
    println!(
        "shm {} bar={index} addr=0x{:x} size=0x{:x} offset=0x{offset:x} bytes={} mode={mode_name} seed={seed}",
        function.bdf,
        b.addr,
        b.size,
        bytes / 8 * 8
    );
    let params = Params {
        base: addr + offset,
        words: bytes / 8,
        mode,
        seed,
    };
    cpl3::run(user_main, &params)
}

fn user_main(p: &Params) -> ! {
    let base = p.base as *mut u64;
    let start = rdtsc();
    let mut written = 0;
    if p.mode != Mode::Read {
        for i in 0..p.words {
            // SAFETY: base..base + words*8 lies inside a memory BAR that is
            // assigned, decoding, identity-mapped and user-accessible
            // (checked by `run`); volatile because another VM may look.
            unsafe { write_volatile(base.add(i as usize), pattern(p.seed, i)) };
        }
        written = p.words;
    }
    let mut verified = 0;
    let mut mismatches = 0u64;
    let mut first = None;
    if p.mode != Mode::Write {
        for i in 0..p.words {
            // SAFETY: as above.
            let got = unsafe { read_volatile(base.add(i as usize)) };
            let want = pattern(p.seed, i);
            if got != want {
                mismatches += 1;
                first = first.or(Some((i, got, want)));
            }
        }
        verified = p.words;
    }
    let cycles = rdtsc().wrapping_sub(start);
    println!(
        "shm-result written={} verified={} mismatches={mismatches} cycles={cycles}",
        written * 8,
        verified * 8
    );
    if let Some((i, got, want)) = first {
        println!(
            "error: first mismatch at offset=0x{:x} got=0x{got:016x} want=0x{want:016x}",
            i * 8
        );
    }
    exit(if mismatches == 0 {
        status::SUCCESS
    } else {
        status::FAILURE
    })
}

/// Word `i` of the pattern for `seed`: the SplitMix64 output function over
/// (seed, i), so every word differs, and a wrong offset, seed or stale page
/// shows up as a mismatch.
fn pattern(seed: u64, i: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(i.wrapping_mul(0xd1b5_4a32_d192_ed03));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
