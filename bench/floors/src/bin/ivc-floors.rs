//! `ivc-floors`: the interleaved measurement on its own, for a quick look
//! (the full set of floors runs as `ivc-run`'s `floors` suite, which records
//! this measurement too).
//!
//! `ivc-floors [--repeats N] [--round-trips N] [--json]`

use std::process::ExitCode;

use ivc_floors::cpu_pair;
use ivc_floors::interleaved::{measure, Plan};

fn main() -> ExitCode {
    let mut plan = Plan::default();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let num = |v: Option<String>| v.and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0);
        match a.as_str() {
            "--repeats" => match num(args.next()) {
                Some(n) => plan.repeats = n,
                None => return usage(),
            },
            "--round-trips" => match num(args.next()) {
                Some(n) => plan.round_trips = n,
                None => return usage(),
            },
            "--json" => json = true,
            _ => return usage(),
        }
    }
    let cpus = cpu_pair();
    if !cpus.distinct() {
        eprintln!("ivc-floors: only one CPU available: the ping-pongs share a core");
    }
    match measure(cpus, &plan) {
        Ok(r) => {
            if json {
                match serde_json::to_string(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("ivc-floors: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", r.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ivc-floors: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: ivc-floors [--repeats N] [--round-trips N] [--json]");
    ExitCode::from(2)
}
