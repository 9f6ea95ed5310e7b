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
//! - `test=shm-pingpong proto=interleaved`: both of the above in the same
//!   two VMs, alternating blocks (flag line, ring, flag line, ...), the
//!   ratio taken per block pair (issue 14: a ratio of figures measured
//!   minutes apart mixes placements of the vCPUs);
//! - `test=shm-stream`: one-way through the ring with a pattern that costs
//!   nothing to send and eight bytes per compare to check.
//!
//! The guests time themselves (the host clock would include VM start and
//! console polling) and print nanoseconds from the TSC rate the runner
//! measured and passes as `tsc_khz=`.

use std::time::Duration;

use ivc_floors::interleaved::Spread;
use ivc_floors::{Latency, Throughput};

use crate::record::{Data, Record, SuiteReport};
use crate::repeats;
use crate::suites::Context;
use crate::vmm_devices::{field, run_pair, server, Pair};
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
        if case.proto == "line" {
            let plan = InterleavedPlan::new(quick);
            ctx.console.line(&format!(
                "    shm-poll: shm-pingpong proto=interleaved size=64 blocks={} round trips per block={}",
                plan.blocks,
                plan.round_trips()
            ));
            interleaved(ctx, bins, report, env, &plan, tsc_khz)?;
        }
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
    /// Ring, polled, in blocks interleaved with the flag line (a
    /// `Data::Interleaved` record: its ratio is per block pair).
    pub const INTERLEAVED_RING: &str =
        "ping-pong (ring, polled, CPL3), interleaved with the flag line in the same VM pair";
    /// The flag line's blocks of the same run (ratio 1 by definition).
    pub const INTERLEAVED_LINE: &str =
        "ping-pong (cache-line flag in BAR2, CPL3), interleaved with the ring in the same VM pair";
    /// One-way stream through the ring, every byte checked.
    pub const STREAM: &str = "one-way stream through the ring, CPL3";
    /// The same, the receiver only counting the bytes (ends with
    /// `record::UNCHECKED`, a test checks).
    pub const STREAM_UNCHECKED: &str =
        "one-way stream through the ring, CPL3, bytes counted, not checked";
}

/// A guest's latency figure: the sample count and batch from its `result`
/// line, the nanoseconds from its `ns_line` (the ping-pong's and each
/// interleaved figure's lines have the same fields).
fn latency_from(out: &str, result: &str, ns_line: &str, size: u64) -> Result<Latency, String> {
    let samples = num(out, result, "samples")? as u64;
    let batch = num(out, result, "batch")? as u64;
    let ns = |key: &str| num(out, ns_line, key);
    Ok(Latency {
        size,
        iters: samples * batch,
        batch,
        min_ns: ns("min_ns")?,
        median_ns: ns("median_ns")?,
        p99_ns: ns("p99_ns")?,
        max_ns: ns("max_ns")?,
        mean_ns: ns("mean_ns")?,
    })
}

/// Two test-guest VMs of this suite on a 1 MiB ivc-rendezvous region of
/// their own: the guests get `common` plus `role=<role>`, their logs are
/// `vmm-<name>-<role>.log` in the run's directory.
struct GuestPair<'a> {
    name: &'a str,
    kind: &'a str,
    vectors: u32,
    vmm_args: &'a [&'a str],
    roles: [&'a str; 2],
    connected: &'a str,
}

impl GuestPair<'_> {
    fn run(&self, ctx: &Context, bins: &Binaries, common: &str) -> Result<Pair, String> {
        // The server and its socket directory live until both VMs ended.
        let scratch = ivc_guest_harness::ScratchDir::new().map_err(|e| e.to_string())?;
        let (_server, socket) = server(scratch.path(), self.name, 1 << 20, self.vectors)?;
        let sock = socket.to_str().ok_or("socket path is not UTF-8")?;
        let [ra, rb] = self.roles;
        let log = |role: &str| ctx.out_dir.join(format!("vmm-{}-{role}.log", self.name));
        run_pair(
            bins,
            &ivc_spec(self.kind, sock, self.vectors),
            self.vmm_args,
            [
                &format!("{common} role={ra}"),
                &format!("{common} role={rb}"),
            ],
            self.connected,
            [log(ra), log(rb)],
            Duration::from_secs(120),
        )
    }
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
    let vectors = if case.kind == "shm-irq" { 2 } else { 1 };
    let name = format!(
        "pp-{}-{}-{}{}-r{run}",
        case.kind,
        case.proto,
        case.size,
        case.wait.tag()
    );
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
    let pair = GuestPair {
        name: &name,
        kind: case.kind,
        vectors,
        vmm_args: case.wait.vmm_args(),
        roles: ["a", "b"],
        connected: "pingpong-connected",
    }
    .run(ctx, bins, &common)?;
    let [oa, ob] = &pair.outputs;
    let stats = latency_from(oa, "pingpong-result", "pingpong-ns", case.size)?;
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

/// `proto=interleaved`: repetitions of (flag line block, ring block), each
/// `warmup + iters * batch` round trips of 64 B.
pub struct InterleavedPlan {
    pub blocks: u64,
    pub iters: u64,
    pub batch: u64,
    pub warmup: u64,
}

impl InterleavedPlan {
    /// As the host's interleaved blocks: 4000 timed round trips per block
    /// in batches of 8 (the TSC advances in steps of ~10 ns here), 25
    /// repetitions (`--quick`: 10); 200 untimed round trips open each block,
    /// so the lines have moved to the protocol being timed.
    pub fn new(quick: bool) -> Self {
        InterleavedPlan {
            blocks: if quick { 10 } else { 25 },
            iters: 500,
            batch: 8,
            warmup: 200,
        }
    }

    /// Round trips per block, warm-up included.
    pub fn round_trips(&self) -> u64 {
        self.warmup + self.iters * self.batch
    }
}

/// What guest A of `proto=interleaved` reported.
#[derive(Debug, PartialEq)]
pub struct InterleavedRun {
    /// Every batch of the flag line's blocks / of the ring's blocks.
    pub line: Latency,
    pub ring: Latency,
    /// Per repetition: the ring block's median / the line block's median.
    pub ratios: Vec<f64>,
}

/// Parses guest A's `interleaved-pair`, `interleaved-ratio` and
/// `interleaved-ns figure=line|ring` lines; `blocks`: the repetitions asked
/// for, each of which must have its pair line.
pub fn parse_interleaved(out: &str, size: u64, blocks: u64) -> Result<InterleavedRun, String> {
    let mut ratios = Vec::new();
    for line in out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ivc-test-guest: "))
        .filter(|l| l.starts_with("interleaved-pair "))
    {
        let get = |key: &str| -> Result<u64, String> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no {key} on the guest's line '{line}'"))
        };
        if get("rep")? != ratios.len() as u64 {
            return Err(format!("interleaved pair out of order: '{line}'"));
        }
        if get("line_cycles")? == 0 {
            return Err(format!("a flag-line block without time: '{line}'"));
        }
        ratios.push(get("ratio_milli")? as f64 / 1000.0);
    }
    if ratios.len() as u64 != blocks || num(out, "interleaved-ratio", "pairs")? as u64 != blocks {
        return Err(format!(
            "{} interleaved pairs reported, {blocks} asked for",
            ratios.len()
        ));
    }
    let figure = |name: &str| {
        latency_from(
            out,
            &format!("interleaved-result figure={name} "),
            &format!("interleaved-ns figure={name} "),
            size,
        )
    };
    Ok(InterleavedRun {
        line: figure("line")?,
        ring: figure("ring")?,
        ratios,
    })
}

/// Runs `proto=interleaved` once in a fresh VM pair (its repetitions are
/// the repeats: one run holds every pair) and records both figures as
/// `Data::Interleaved`, the ring's with the spread of the per-pair ratios;
/// each pair is noted.
pub fn interleaved(
    ctx: &Context,
    bins: &Binaries,
    report: &mut SuiteReport,
    environment: &str,
    plan: &InterleavedPlan,
    tsc_khz: u64,
) -> Result<(), String> {
    let name = "pp-shm-poll-interleaved-64";
    let common = format!(
        "test=shm-pingpong proto=interleaved size=64 blocks={} iters={} batch={} warmup={} tsc_khz={tsc_khz}",
        plan.blocks, plan.iters, plan.batch, plan.warmup
    );
    let pair = GuestPair {
        name,
        kind: "shm-poll",
        vectors: 1,
        vmm_args: &[],
        roles: ["a", "b"],
        connected: "pingpong-connected",
    }
    .run(ctx, bins, &common)?;
    let [oa, ob] = &pair.outputs;
    let run = parse_interleaved(oa, 64, plan.blocks)?;
    // B checks the stamp of every message and every flag value, A every
    // echo; a failure ends the VM with status 1 and run_pair fails.
    let echoed = num(ob, "pingpong-result", "echoed")? as u64;
    if echoed != 2 * plan.blocks * plan.round_trips() {
        return Err(format!(
            "interleaved: B echoed {echoed} round trips, {} expected",
            2 * plan.blocks * plan.round_trips()
        ));
    }
    report.notes.extend(interleaved_notes(oa, plan));
    let ratio = Spread::of(run.ratios).ok_or("interleaved: no block pairs")?;
    let ones = Spread::of(vec![1.0]).ok_or("interleaved: no block pairs")?;
    for (w, stats, ratio) in [
        (what::INTERLEAVED_LINE, run.line, ones),
        (what::INTERLEAVED_RING, run.ring, ratio),
    ] {
        report.records.push(Record {
            channel: "ivc-vmm shm-poll".into(),
            environment: environment.into(),
            what: w.into(),
            data: Data::Interleaved { stats, ratio },
        });
    }
    Ok(())
}

/// The plan, and each block pair as the guest printed it.
fn interleaved_notes(out: &str, plan: &InterleavedPlan) -> Vec<String> {
    let mut notes = vec![format!(
        "shm-poll interleaved: {} repetitions of a flag-line block and a ring block of {} round trips each ({} untimed, then batches of {}); ratio = ring block median / flag-line block median of the same repetition",
        plan.blocks,
        plan.round_trips(),
        plan.warmup,
        plan.batch
    )];
    notes.extend(
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("ivc-test-guest: "))
            .filter(|l| l.starts_with("interleaved-pair ") || l.starts_with("interleaved-ratio "))
            .map(|l| format!("shm-poll {l}")),
    );
    notes
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
    let name = if check {
        format!("stream-{chunk}-r{run}")
    } else {
        format!("stream-{chunk}-unchecked-r{run}")
    };
    let common = format!(
        "test=shm-stream bytes={bytes} chunk={chunk} check={} tsc_khz={tsc_khz}",
        u8::from(check)
    );
    let pair = GuestPair {
        name: &name,
        kind: "shm-poll",
        vectors: 1,
        vmm_args: &[],
        roles: ["tx", "rx"],
        connected: "stream-connected",
    }
    .run(ctx, bins, &common)?;
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
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
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

    /// Guest A's console of a 3-repetition `proto=interleaved` run.
    const INTERLEAVED_A: &str = "\
ivc-test-guest: pingpong ivposition=1 role=a proto=interleaved size=64 iters=500 warmup=200 batch=8 irq=0
ivc-test-guest: pingpong-interleaved blocks=3 round_trips_per_block=4200 order=line,ring
ivc-test-guest: pingpong-connected slot=0
ivc-test-guest: interleaved-pair rep=0 line_cycles=300 ring_cycles=600 ratio_milli=2000 line_ns=150 ring_ns=300
ivc-test-guest: interleaved-pair rep=1 line_cycles=300 ring_cycles=750 ratio_milli=2500 line_ns=150 ring_ns=375
ivc-test-guest: interleaved-pair rep=2 line_cycles=400 ring_cycles=600 ratio_milli=1500 line_ns=200 ring_ns=300
ivc-test-guest: interleaved-ratio pairs=3 min_milli=1500 p10_milli=1500 median_milli=2000 p90_milli=2500 max_milli=2500
ivc-test-guest: interleaved-result figure=line size=64 samples=1500 batch=8 min_cycles=250 median_cycles=300 p99_cycles=500 max_cycles=900 mean_cycles=320
ivc-test-guest: interleaved-ns figure=line tsc_khz=2000000 min_ns=125 median_ns=150 p99_ns=250 max_ns=450 mean_ns=160
ivc-test-guest: interleaved-result figure=ring size=64 samples=1500 batch=8 min_cycles=500 median_cycles=620 p99_cycles=1000 max_cycles=2000 mean_cycles=640
ivc-test-guest: interleaved-ns figure=ring tsc_khz=2000000 min_ns=250 median_ns=310 p99_ns=500 max_ns=1000 mean_ns=320
";

    #[test]
    fn interleaved_output_parses_into_both_figures_and_the_pair_ratios() {
        let run = parse_interleaved(INTERLEAVED_A, 64, 3).unwrap();
        assert_eq!(run.ratios, vec![2.0, 2.5, 1.5]);
        assert_eq!(run.line.median_ns, 150.0);
        assert_eq!(run.line.iters, 1500 * 8);
        assert_eq!(run.line.batch, 8);
        assert_eq!(run.ring.min_ns, 250.0);
        assert_eq!(run.ring.median_ns, 310.0);
        assert_eq!(run.ring.p99_ns, 500.0);
        assert_eq!(run.ring.size, 64);
        let s = Spread::of(run.ratios).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.5, 2.0, 2.5));
        let notes = interleaved_notes(INTERLEAVED_A, &InterleavedPlan::new(false));
        assert_eq!(notes.len(), 1 + 3 + 1, "{notes:?}");
        assert!(notes[1].starts_with("shm-poll interleaved-pair rep=0"));
    }

    #[test]
    fn interleaved_output_missing_a_pair_or_a_figure_is_an_error() {
        // Fewer pairs than repetitions asked for.
        let e = parse_interleaved(INTERLEAVED_A, 64, 4).unwrap_err();
        assert!(
            e.contains("3 interleaved pairs reported, 4 asked for"),
            "{e}"
        );
        // A pair dropped from the middle.
        let gap: String = INTERLEAVED_A
            .lines()
            .filter(|l| !l.contains("rep=1 "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_interleaved(&gap, 64, 2)
            .unwrap_err()
            .contains("out of order"));
        // No ring figure (the guest died before its report ended).
        let cut: String = INTERLEAVED_A
            .lines()
            .filter(|l| !l.contains("figure=ring"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_interleaved(&cut, 64, 3).is_err());
        // A garbled ratio.
        let bad = INTERLEAVED_A.replace("ratio_milli=2500", "ratio_milli=x");
        assert!(parse_interleaved(&bad, 64, 3)
            .unwrap_err()
            .contains("ratio_milli"));
        // The line's figure is not taken for the ring's: the prefixes differ.
        let run = parse_interleaved(INTERLEAVED_A, 64, 3).unwrap();
        assert_ne!(run.line, run.ring);
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
