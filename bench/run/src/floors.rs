//! The host suites: the floors, and TCP over loopback as the alternative a
//! user would pick.

use std::time::Duration;

use ivc_floors::{
    cacheline, cpu_pair, eventfd, interleaved, kvm_exit, memcpy, ring, syscall, tcp, Latency,
};

use crate::record::{env, Data, Record, SuiteReport};
use crate::repeats::{self, Best};
use crate::suites::{Context, Plan, Suite};

/// `what` of the floor records (the summary looks them up by these).
pub mod what {
    /// Cache-line ping-pong.
    pub const CACHELINE: &str = "cache-line ping-pong, 2 processes on 2 cores";
    /// eventfd ping-pong.
    pub const EVENTFD: &str = "eventfd ping-pong, 2 processes";
    /// memcpy prefix; the block size follows.
    pub const MEMCPY: &str = "memcpy, 1 core";
    /// KVM_EXIT_IO.
    pub const KVM_EXIT: &str = "KVM_EXIT_IO round trip";
    /// getppid.
    pub const SYSCALL: &str = "null system call (getppid)";
    /// The ivc ring between two host processes (a reference, not a floor).
    pub const RING: &str = "ivc ring ping-pong, 2 processes on 2 cores (no VMs)";
    /// Prefix of the blocks measured interleaved with the cache-line floor;
    /// the block's description follows.
    pub const INTERLEAVED: &str = "interleaved with the floor: ";
}

/// Message sizes of the host ring reference: those of the ring ping-pong
/// between two ivc-vmm VMs (`vmm_shm`).
const RING_SIZES: [usize; 4] = [1, 64, 512, 4096];

/// memcpy block sizes: cache-resident, L2-ish, DRAM.
const MEMCPY_BLOCKS: [usize; 3] = [64 << 10, 1 << 20, 64 << 20];
/// The memcpy block the summary compares channel throughput with.
pub const MEMCPY_REFERENCE: u64 = 1 << 20;

/// Records the run `repeats` kept as the latency record `what`, with the
/// note naming every run.
fn record_kept(report: &mut SuiteReport, what: &str, kept: Option<(Latency, Option<String>)>) {
    if let Some((stats, note)) = kept {
        report.notes.extend(note);
        report.records.push(latency(what, stats));
    }
}

/// [`repeats::REPEATS`] runs of the latency floor `name`, the lowest median recorded
/// as `what`.
fn latency_floor(
    report: &mut SuiteReport,
    what: &str,
    name: &str,
    mut measure: impl FnMut() -> std::io::Result<Latency>,
) -> Result<(), String> {
    let runs = repeats::run(|_| measure()).map_err(|e| format!("{name}: {e}"))?;
    let label = format!("{name}, median round trip");
    let kept = repeats::best(&label, runs, |l| l.median_ns, "ns", Best::Lowest);
    record_kept(report, what, kept);
    Ok(())
}

/// The floor, the ring as `ivc-abi` implements it and the ring-format
/// models, in alternating blocks in the same two processes
/// (`ivc_floors::interleaved`): each figure divided by the floor of its own
/// repetition, so a change of the cores' placement between repetitions does
/// not enter the ratios.
fn interleaved_blocks(report: &mut SuiteReport, budget: Duration) -> Result<(), String> {
    let plan = interleaved::Plan {
        // About 1 ms per block on a quiet host: 25 repetitions of the 11
        // default blocks take a fraction of a second per `budget`.
        round_trips: (budget.as_millis() as usize * 4).clamp(200, 4000),
        ..interleaved::Plan::default()
    };
    let r =
        interleaved::measure(cpu_pair(), &plan).map_err(|e| format!("interleaved blocks: {e}"))?;
    report.notes.push(format!(
        "interleaved blocks: {} repetitions x {} round trips per block; ratio = block median / floor block median of the same repetition",
        r.repeats, r.round_trips
    ));
    for f in r.figures {
        report.records.push(Record {
            channel: "host".into(),
            environment: env::HOST.into(),
            what: format!("{}{}", what::INTERLEAVED, f.name),
            data: Data::Interleaved {
                stats: f.latency,
                ratio: f.ratio,
            },
        });
    }
    Ok(())
}

fn latency(what: &str, stats: Latency) -> Record {
    Record {
        channel: "host".into(),
        environment: env::HOST.into(),
        what: what.into(),
        data: Data::Latency {
            stats,
            verified: true,
        },
    }
}

/// Cache line, eventfd, memcpy, KVM_EXIT_IO; and the ivc ring between two
/// host processes as a reference.
pub struct HostFloors;

impl Suite for HostFloors {
    fn name(&self) -> &'static str {
        "floors"
    }
    fn environment(&self) -> String {
        env::HOST.into()
    }
    fn unavailable(&self, _ctx: &Context) -> Option<String> {
        None
    }
    fn estimate(&self, plan: &Plan) -> Duration {
        plan.host_budget * 10
    }
    fn run(&self, ctx: &Context, report: &mut SuiteReport) -> Result<(), String> {
        let b = ctx.plan.host_budget;
        let cpus = cpu_pair();
        if !cpus.distinct() {
            report
                .notes
                .push("only one CPU available: ping-pong floors share a core".into());
        }
        // Each floor is the best of a few shorter runs (repeats::best).
        latency_floor(report, what::CACHELINE, "cache-line floor", || {
            cacheline::measure(cpus, b / 3, 50)
        })?;
        for size in RING_SIZES {
            // Short runs, the middle one kept, as for the ring between two
            // VMs.
            let runs = repeats::run(|_| ring::measure(cpus, size, b / 6, 50))
                .map_err(|e| format!("ivc ring on the host, {size} B: {e}"))?;
            let label = format!("ivc ring on the host, {size} B median round trip");
            let kept = repeats::middle(&label, runs, |l| l.median_ns, "ns");
            record_kept(report, what::RING, kept);
        }
        interleaved_blocks(report, b)?;
        latency_floor(report, what::EVENTFD, "eventfd floor", || {
            eventfd::measure(cpus, b / 3, 50)
        })?;
        report
            .records
            .push(latency(what::SYSCALL, syscall::measure(b / 2, 50)));
        for block in MEMCPY_BLOCKS {
            let runs = repeats::run(|_| Ok::<_, String>(memcpy::measure(block, b / 3)))?;
            let label = format!("memcpy floor, {block}-byte blocks");
            let Some((t, note)) = repeats::best(&label, runs, |t| t.mib_s, "MiB/s", Best::Highest)
            else {
                continue;
            };
            report.notes.extend(note);
            report.records.push(Record {
                channel: "host".into(),
                environment: env::HOST.into(),
                what: what::MEMCPY.into(),
                data: Data::Throughput {
                    requested: t.bytes,
                    stats: t,
                    verified: true,
                },
            });
        }
        match kvm_exit::measure(b, 50) {
            Ok((l, mode)) => {
                report.records.push(Record {
                    environment: format!("host /dev/kvm: {}", kvm_exit::describe_kvm()),
                    ..latency(what::KVM_EXIT, l)
                });
                report
                    .notes
                    .push(format!("KVM_EXIT_IO loop ran in {mode:?} mode"));
            }
            Err(why) => {
                let msg = format!("KVM_EXIT_IO floor skipped: {why}");
                ctx.console.line(&format!("    {msg}"));
                report.notes.push(msg);
            }
        }
        Ok(())
    }
}

/// TCP over 127.0.0.1 between two processes.
pub struct TcpLoopback;

impl Suite for TcpLoopback {
    fn name(&self) -> &'static str {
        "tcp-loopback"
    }
    fn environment(&self) -> String {
        env::HOST.into()
    }
    fn unavailable(&self, _ctx: &Context) -> Option<String> {
        None
    }
    fn estimate(&self, plan: &Plan) -> Duration {
        plan.host_budget * (plan.sizes.len() + plan.packets.len()) as u32
    }
    fn run(&self, ctx: &Context, report: &mut SuiteReport) -> Result<(), String> {
        let p = &ctx.plan;
        let cpus = cpu_pair();
        let sizes: Vec<usize> = p.sizes.iter().map(|&s| s as usize).collect();
        let lat = tcp::latency(cpus, &sizes, p.host_budget, 20)
            .map_err(|e| format!("TCP ping-pong: {e}"))?;
        for stats in lat {
            report.records.push(Record {
                channel: "tcp-loopback".into(),
                environment: env::HOST.into(),
                what: "ping-pong".into(),
                data: Data::Latency {
                    stats,
                    verified: true,
                },
            });
        }
        let total = p.totals.iter().copied().max().unwrap_or(1 << 30);
        let packets: Vec<usize> = p.packets.iter().map(|&s| s as usize).collect();
        let tp = tcp::throughput(cpus, &packets, total, p.host_budget)
            .map_err(|e| format!("TCP throughput: {e}"))?;
        for stats in tp {
            report.records.push(Record {
                channel: "tcp-loopback".into(),
                environment: env::HOST.into(),
                what: "one-way transfer".into(),
                data: Data::Throughput {
                    stats,
                    requested: total,
                    verified: false,
                },
            });
        }
        report
            .notes
            .push("TCP transfers are not byte-checked (the peer counts them)".into());
        Ok(())
    }
}
