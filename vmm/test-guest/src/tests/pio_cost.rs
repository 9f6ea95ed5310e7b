//! `test=pio-cost`: what one port-I/O VM exit costs, at CPL0 and at CPL3.
//!
//! Times `n` single-byte `out` (or `in`) instructions with RDTSC. Port 0x80
//! (the POST-code port) is the default because writing it has no effect on
//! any device we use; `op=in port=0xcfc` reads PCI config data instead.

use super::{bad_param, Context, Ratio, Test};
use crate::cmdline::ParamError;
use crate::exit::{exit, status};
use crate::port::{inb, outb};
use crate::{cpl3, println, tsc};

pub const TEST: Test = Test {
    name: "pio-cost",
    params: "[n=1000] [op=out|in] [port=0x80] [cpl=both|0|3] [tsc_khz=auto]",
    about: "cycles per port-I/O exit at CPL0 and CPL3 (RDTSC)",
    run,
};

/// Untimed accesses first, so one-time costs (first exit, cold paths in
/// the VMM) stay out of the figure.
const WARMUP: u64 = 16;

#[derive(Clone, Copy)]
struct Params {
    n: u64,
    read: bool,
    port: u16,
    tsc_khz: Option<u64>,
}

fn run(ctx: &Context) -> u8 {
    let cmdline = &ctx.cmdline;
    let params = (|| -> Result<(Params, &str), ParamError> {
        let read = cmdline.choice("op", false, &[("out", false), ("in", true)], "out or in")?;
        let port = cmdline.u64_or("port", 0x80)?;
        let port = u16::try_from(port).map_err(|_| ParamError {
            key: "port",
            value: cmdline.get("port").unwrap_or(""),
            expected: "a port number below 0x10000",
        })?;
        let cpl = cmdline.choice(
            "cpl",
            "both",
            &[("both", "both"), ("0", "0"), ("3", "3")],
            "both, 0 or 3",
        )?;
        Ok((
            Params {
                n: cmdline.u64_or("n", 1000)?.max(1),
                read,
                port,
                tsc_khz: match cmdline.get("tsc_khz") {
                    // CPUID often does not say (AMD, many hypervisors): let
                    // the caller, who can read the host's, pass it in.
                    Some(_) => Some(cmdline.u64_or("tsc_khz", 0)?).filter(|&khz| khz != 0),
                    None => tsc::khz(),
                },
            },
            cpl,
        ))
    })();
    let (params, cpl) = match params {
        Ok(p) => p,
        Err(err) => return bad_param(err),
    };
    match params.tsc_khz {
        Some(khz) => println!("tsc_khz={khz}"),
        None => println!("tsc_khz=unknown"),
    }
    if cpl != "3" {
        measure(&params);
    }
    if cpl == "0" {
        return status::SUCCESS;
    }
    cpl3::run(user_main, &params)
}

fn user_main(params: &Params) -> ! {
    measure(params);
    exit(status::SUCCESS)
}

/// Times the accesses at the current CPL and prints one result line.
fn measure(p: &Params) {
    let access = |count: u64| {
        for _ in 0..count {
            if p.read {
                inb(p.port);
            } else {
                outb(p.port, 0);
            }
        }
    };
    access(WARMUP);
    let start = tsc::rdtsc();
    access(p.n);
    let cycles = tsc::rdtsc().wrapping_sub(start);
    let op = if p.read { "in" } else { "out" };
    let cpl = cpl3::current_cpl();
    match p.tsc_khz {
        Some(khz) => println!(
            "pio-cost op={op} port=0x{:x} cpl={cpl} n={} cycles={cycles} cycles_per_op={} ns_per_op={}",
            p.port,
            p.n,
            Ratio(cycles as u128, p.n as u128),
            Ratio(cycles as u128 * 1_000_000, p.n as u128 * khz as u128)
        ),
        None => println!(
            "pio-cost op={op} port=0x{:x} cpl={cpl} n={} cycles={cycles} cycles_per_op={}",
            p.port,
            p.n,
            Ratio(cycles as u128, p.n as u128)
        ),
    }
}
