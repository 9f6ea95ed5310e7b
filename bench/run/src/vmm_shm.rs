//! The shared-memory benchmarks of the device-level suite: round-trip
//! latency and one-way throughput between two bare-metal VMs in ivc-vmm,
//! measured by the test guest at CPL3 with RDTSC (native under PVM).
//!
//! - `test=shm-pingpong proto=ring`: a message through the `ivc-abi`
//!   rings and back (the product), polled (`shm-poll`) or waiting for
//!   doorbells (`shm-irq`, `irq=1`);
//! - `test=shm-pingpong proto=line`: one flag word in BAR2, the protocol of
//!   the host's cache-line floor, the least any protocol over this memory
//!   can cost;
//! - `test=shm-stream`: one-way through the ring with a pattern that costs
//!   nothing to send and eight bytes per compare to check.
//!
//! The guests time themselves (the host clock would include VM start and
//! console polling) and print nanoseconds from the TSC rate the runner
//! measured and passes as `tsc_khz=`.

use std::time::Duration;

use ivc_floors::{Latency, Throughput};

use crate::record::{Data, Record, SuiteReport};
use crate::repeats;
use crate::suites::Context;
use crate::vmm_devices::{field, run_pair, server};
use crate::vmm_exit::Binaries;

pub fn run_all(
    ctx: &Context,
    bins: &Binaries,
    report: &mut SuiteReport,
    env: &str,
    tsc_khz: u64,
) -> Result<(), String> {
    let quick = ctx.plan.quick;
    let ring_iters = if quick { 5_000 } else { 20_000 };
    let mut cases: Vec<PingCase> = [1, 64, 512, 4096]
        .into_iter()
        .map(|size| PingCase {
            kind: "shm-poll",
            proto: "ring",
            size,
            iters: ring_iters,
            batch: 1,
            wait: IrqWait::Spin,
            what: what::RING_POLL,
        })
        .collect();
    // Batches of 32 as in the host's cache-line floor: a single round
    // trip of the flag is close to the cost of reading the TSC.
    cases.push(PingCase {
        kind: "shm-poll",
        proto: "line",
        size: 64,
        iters: if quick { 1_000 } else { 5_000 },
        batch: 32,
        wait: IrqWait::Spin,
        what: what::LINE,
    });
    // Doorbell waits three ways: the waiter halting its vCPU, as an idle
    // guest kernel does, with KVM's default halt polling (the headline) and
    // without (the vCPU thread sleeps, like the eventfd floor's processes);
    // and spinning at CPL3 on its interrupt counter, which under PVM costs a
    // kick of a running vCPU per doorbell.
    for (wait, what) in [
        (IrqWait::Halt, what::RING_IRQ),
        (IrqWait::HaltNoPoll, what::RING_IRQ_NO_POLL),
        (IrqWait::Spin, what::RING_IRQ_SPIN),
    ] {
        cases.push(PingCase {
            kind: "shm-irq",
            proto: "ring",
            size: 64,
            iters: if quick { 50 } else { 300 },
            batch: 1,
            wait,
            what,
        });
    }
    for case in &cases {
        ctx.console.line(&format!(
            "    {}: shm-pingpong proto={} size={}{}",
            case.kind,
            case.proto,
            case.size,
            case.wait.described()
        ));
        pingpong(ctx, bins, report, env, case, tsc_khz)?;
    }
    let bytes = if quick { 64u64 << 20 } else { 256u64 << 20 };
    // 64 KiB twice: with every byte checked (the figure that proves the
    // data), and with the receiver only counting them, the same work as the
    // memcpy floor the summary compares it with.
    for (chunk, check) in [(4096, true), (64 << 10, true), (64 << 10, false)] {
        ctx.console.line(&format!(
            "    shm-poll: shm-stream chunk={chunk} check={}",
            u8::from(check)
        ));
        stream(ctx, bins, report, env, (bytes, chunk, check), tsc_khz)?;
    }
    Ok(())
}

/// How a doorbell ping-pong side waits for the peer's doorbell.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IrqWait {
    /// Spinning at CPL3 on its interrupt counter (also: polled cases).
    Spin,
    /// Halting its vCPU (`wait=hlt`); KVM halt-polls with the kvm module's
    /// `halt_poll_ns` before the vCPU thread sleeps.
    Halt,
    /// Halting, with KVM's halt polling off (`--halt-poll-ns 0`): the vCPU
    /// thread sleeps at once, as the eventfd floor's processes do.
    HaltNoPoll,
}

impl IrqWait {
    /// The guest's `wait=`.
    fn guest_param(self) -> &'static str {
        match self {
            IrqWait::Spin => "spin",
            IrqWait::Halt | IrqWait::HaltNoPoll => "hlt",
        }
    }
    /// Extra `ivc-vmm run` options.
    fn vmm_args(self) -> &'static [&'static str] {
        match self {
            IrqWait::HaltNoPoll => &["--halt-poll-ns", "0"],
            IrqWait::Spin | IrqWait::Halt => &[],
        }
    }
    /// For the progress line: the guest's `wait=` and the VMM options,
    /// empty for the spinning default.
    fn described(self) -> String {
        if self == IrqWait::Spin {
            return String::new();
        }
        let mut s = format!(" wait={}", self.guest_param());
        for arg in self.vmm_args() {
            s.push(' ');
            s.push_str(arg);
        }
        s
    }
    /// In file and note names.
    fn tag(self) -> &'static str {
        match self {
            IrqWait::Spin => "",
            IrqWait::Halt => "-hlt",
            IrqWait::HaltNoPoll => "-hlt-nopoll",
        }
    }
}

/// One ping-pong configuration.
pub struct PingCase {
    /// `shm-poll` or `shm-irq` (the `--ivc` kind and the channel name).
    pub kind: &'static str,
    /// `ring` or `line`.
    pub proto: &'static str,
    /// Message size in bytes (`line`: the flag's cache line, 64).
    pub size: u64,
    /// Samples, and round trips per sample.
    pub iters: u64,
    pub batch: u64,
    /// How a side without data waits (doorbell cases).
    pub wait: IrqWait,
    /// The record's `what`: how it waits.
    pub what: &'static str,
}

/// What the ping-pong records are called (the summary looks them up).
pub mod what {
    /// Ring, polled.
    pub const RING_POLL: &str = "ping-pong (ring, polled, CPL3)";
    /// Flag word in BAR2, polled.
    pub const LINE: &str = "ping-pong (cache-line flag in BAR2, CPL3)";
    /// Ring, waiting for doorbell interrupts with the vCPU halted.
    pub const RING_IRQ: &str = "ping-pong (ring, doorbell waits, vCPU halted, CPL3)";
    /// The same with KVM's halt polling off.
    pub const RING_IRQ_NO_POLL: &str =
        "ping-pong (ring, doorbell waits, vCPU halted, no halt polling, CPL3)";
    /// Ring, waiting for doorbell interrupts spinning at CPL3.
    pub const RING_IRQ_SPIN: &str = "ping-pong (ring, doorbell waits, spinning, CPL3)";
    /// One-way stream through the ring, every byte checked.
    pub const STREAM: &str = "one-way stream through the ring, CPL3";
    /// The same, the receiver only counting the bytes (ends with
    /// `record::UNCHECKED`, a test checks).
    pub const STREAM_UNCHECKED: &str =
        "one-way stream through the ring, CPL3, bytes counted, not checked";
}

fn ivc_spec(kind: &str, sock: &str, vectors: u32) -> String {
    if kind == "shm-irq" {
        format!("{kind},socket={sock},vectors={vectors}")
    } else {
        format!("{kind},socket={sock}")
    }
}

/// `key=value` of the guest line `prefix` as a number.
fn num(out: &str, prefix: &str, key: &str) -> Result<f64, String> {
    field(out, prefix, key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} on the guest's '{prefix}' line"))
}

/// The first guest line starting with `prefix`, without the guest's tag.
fn guest_line<'a>(out: &'a str, prefix: &str) -> Option<&'a str> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("ivc-test-guest: "))
        .find(|l| l.starts_with(prefix))
}

/// One run's record and notes.
type Run = (Record, Vec<String>);

/// Records the run with the middle `figure` ([`repeats::middle`]) with its
/// notes, and notes every run's figure.
fn keep_middle(
    report: &mut SuiteReport,
    label: &str,
    runs: Vec<Run>,
    figure: impl Fn(&Record) -> f64,
    unit: &str,
) {
    if let Some(((record, notes), all)) = repeats::middle(label, runs, |r| figure(&r.0), unit) {
        report.notes.extend(all);
        report.records.push(record);
        report.notes.extend(notes);
    }
}

fn median_ns(r: &Record) -> f64 {
    match &r.data {
        Data::Latency { stats, .. } => stats.median_ns,
        _ => 0.0,
    }
}

fn mib_s(r: &Record) -> f64 {
    match &r.data {
        Data::Throughput { stats, .. } => stats.mib_s,
        _ => 0.0,
    }
}

/// Runs one ping-pong configuration [`repeats::REPEATS`] times and records guest A's
/// summary of the middle run.
pub fn pingpong(
    ctx: &Context,
    bins: &Binaries,
    report: &mut SuiteReport,
    environment: &str,
    case: &PingCase,
    tsc_khz: u64,
) -> Result<(), String> {
    let runs = repeats::run(|run| pingpong_once(ctx, bins, environment, case, tsc_khz, run))?;
    let label = format!(
        "{} {} size {}{} median round trip",
        case.kind,
        case.proto,
        case.size,
        case.wait.tag()
    );
    keep_middle(report, &label, runs, median_ns, "ns");
    Ok(())
}

fn pingpong_once(
    ctx: &Context,
    bins: &Binaries,
    environment: &str,
    case: &PingCase,
    tsc_khz: u64,
    run: usize,
) -> Result<Run, String> {
    let mut notes = Vec::new();
    let scratch = ivc_guest_harness::ScratchDir::new().map_err(|e| e.to_string())?;
    let vectors = if case.kind == "shm-irq" { 2 } else { 1 };
    let name = format!(
        "pp-{}-{}-{}{}-r{run}",
        case.kind,
        case.proto,
        case.size,
        case.wait.tag()
    );
    let (_server, socket) = server(scratch.path(), &name, 1 << 20, vectors)?;
    let sock = socket.to_str().ok_or("socket path is not UTF-8")?;
    let irq = u8::from(case.kind == "shm-irq");
    let warmup = if irq == 1 { 10 } else { 1000 };
    let common = format!(
        "test=shm-pingpong proto={} size={} iters={} batch={} warmup={warmup} irq={irq} wait={} tsc_khz={tsc_khz}",
        case.proto,
        case.size,
        case.iters,
        case.batch,
        case.wait.guest_param()
    );
    let logs = [
        ctx.out_dir.join(format!("vmm-{name}-a.log")),
        ctx.out_dir.join(format!("vmm-{name}-b.log")),
    ];
    let pair = run_pair(
        bins,
        &ivc_spec(case.kind, sock, vectors),
        case.wait.vmm_args(),
        [&format!("{common} role=a"), &format!("{common} role=b")],
        "pingpong-connected",
        logs,
        Duration::from_secs(120),
    )?;
    let [oa, ob] = &pair.outputs;
    let samples = num(oa, "pingpong-result", "samples")? as u64;
    let batch = num(oa, "pingpong-result", "batch")? as u64;
    let ns = |key: &str| num(oa, "pingpong-ns", key);
    let stats = Latency {
        size: case.size,
        iters: samples * batch,
        batch,
        min_ns: ns("min_ns")?,
        median_ns: ns("median_ns")?,
        p99_ns: ns("p99_ns")?,
        max_ns: ns("max_ns")?,
        mean_ns: ns("mean_ns")?,
    };
    // A checks every echo against what it sent, B the order of every
    // message; a failure ends the VM with status 1 and run_pair fails.
    let echoed = field(ob, "pingpong-result", "echoed").is_some();
    let record = Record {
        channel: format!("ivc-vmm {}", case.kind),
        environment: environment.into(),
        what: case.what.into(),
        data: Data::Latency {
            stats,
            verified: echoed,
        },
    };
    if let Some(line) = guest_line(oa, "pingpong-calib") {
        notes.push(format!(
            "{} {} size {}: {line}",
            case.kind, case.proto, case.size
        ));
    }
    if irq == 1 {
        for (side, o) in [("A", oa), ("B", ob)] {
            let get = |k| field(o, "pingpong-result", k).unwrap_or_default();
            notes.push(format!(
                "shm-irq ping-pong ({}{}) guest {side}: rings={} waits={} interrupts={}",
                case.wait.guest_param(),
                if case.wait == IrqWait::HaltNoPoll {
                    ", no halt polling"
                } else {
                    ""
                },
                get("rings"),
                get("waits"),
                get("interrupts")
            ));
        }
    }
    Ok((record, notes))
}

/// Runs one one-way stream of `bytes` in `chunk`-byte calls [`repeats::REPEATS`]
/// times and records the receiver's rate in the middle run; `check`: the
/// receiver compares every byte.
pub fn stream(
    ctx: &Context,
    bins: &Binaries,
    report: &mut SuiteReport,
    environment: &str,
    spec: (u64, u64, bool),
    tsc_khz: u64,
) -> Result<(), String> {
    let runs = repeats::run(|run| stream_once(ctx, bins, environment, spec, tsc_khz, run))?;
    let (_, chunk, check) = spec;
    let label = format!("shm-stream chunk={chunk} check={}", u8::from(check));
    keep_middle(report, &label, runs, mib_s, "MiB/s");
    Ok(())
}

fn stream_once(
    ctx: &Context,
    bins: &Binaries,
    environment: &str,
    (bytes, chunk, check): (u64, u64, bool),
    tsc_khz: u64,
    run: usize,
) -> Result<Run, String> {
    let mut notes = Vec::new();
    let scratch = ivc_guest_harness::ScratchDir::new().map_err(|e| e.to_string())?;
    let name = if check {
        format!("stream-{chunk}-r{run}")
    } else {
        format!("stream-{chunk}-unchecked-r{run}")
    };
    let (_server, socket) = server(scratch.path(), &name, 1 << 20, 1)?;
    let sock = socket.to_str().ok_or("socket path is not UTF-8")?;
    let common = format!(
        "test=shm-stream bytes={bytes} chunk={chunk} check={} tsc_khz={tsc_khz}",
        u8::from(check)
    );
    let logs = [
        ctx.out_dir.join(format!("vmm-{name}-tx.log")),
        ctx.out_dir.join(format!("vmm-{name}-rx.log")),
    ];
    let pair = run_pair(
        bins,
        &ivc_spec("shm-poll", sock, 1),
        &[],
        [&format!("{common} role=tx"), &format!("{common} role=rx")],
        "stream-connected",
        logs,
        Duration::from_secs(120),
    )?;
    let rx = &pair.outputs[1];
    for (side, o) in [("tx", &pair.outputs[0]), ("rx", rx)] {
        if let Some(line) = guest_line(o, "stream-calib") {
            notes.push(format!("shm-stream {side}: {line}"));
        }
    }
    let complete = field(rx, "stream-result", "outcome").as_deref() == Some("complete")
        && num(rx, "stream-result", "bytes")? as u64 == bytes;
    // "Verified" means every byte was compared; an unchecked run says so.
    let checked = num(rx, "stream-result", "checked")? == 1.0;
    if check && !checked {
        return Err("the shm-stream receiver did not check the bytes it was asked to".into());
    }
    let timed = num(rx, "stream-result", "timed_bytes")? as u64;
    let ns = num(rx, "stream-result", "ns")? as u64;
    // How much of the receiver's time went to checking the bytes rather
    // than to the channel (the figure below includes it).
    let cycles = num(rx, "stream-result", "cycles")?;
    if let (Ok(verify), true) = (
        num(rx, "stream-result", "verify_cycles"),
        check && cycles > 0.0,
    ) {
        notes.push(format!(
            "shm-stream chunk={chunk}: the receiver spent {:.0}% of its time checking every byte against the pattern (included in the figure)",
            100.0 * verify / cycles
        ));
    }
    let record = Record {
        channel: "ivc-vmm shm-poll".into(),
        environment: environment.into(),
        what: if check {
            what::STREAM
        } else {
            what::STREAM_UNCHECKED
        }
        .into(),
        data: Data::Throughput {
            stats: Throughput::new(chunk, timed, Duration::from_nanos(ns)),
            requested: timed,
            verified: complete && checked,
        },
    };
    Ok((record, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{fixtures, Status};

    fn latency_run(median: f64, note: &str) -> Run {
        let record = fixtures::latency("ivc-vmm shm-poll", what::RING_POLL, 64, median);
        (record, vec![note.into()])
    }

    fn empty_report() -> SuiteReport {
        SuiteReport {
            suite: "vmm-devices".into(),
            environment: "PVM".into(),
            status: Status::Ran,
            records: Vec::new(),
            notes: Vec::new(),
            seconds: 0.0,
        }
    }

    #[test]
    fn progress_lines_name_the_wait_and_the_vmm_options() {
        assert_eq!(IrqWait::Spin.described(), "");
        assert_eq!(IrqWait::Halt.described(), " wait=hlt");
        assert_eq!(
            IrqWait::HaltNoPoll.described(),
            " wait=hlt --halt-poll-ns 0"
        );
    }

    #[test]
    fn the_middle_run_is_recorded_and_every_run_noted() {
        let mut report = empty_report();
        let runs = vec![
            latency_run(663.0, "slow"),
            latency_run(345.0, "fast"),
            latency_run(356.0, "middle"),
        ];
        keep_middle(&mut report, "ring 64", runs, median_ns, "ns");
        assert_eq!(report.records.len(), 1);
        assert_eq!(median_ns(&report.records[0]), 356.0);
        // The kept run's own notes, and one line naming all three in the
        // order they ran.
        assert!(report.notes.iter().any(|n| n == "middle"));
        assert!(!report.notes.iter().any(|n| n == "slow" || n == "fast"));
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("3 runs, 663 / 345 / 356 ns")),
            "{:?}",
            report.notes
        );
    }
}
