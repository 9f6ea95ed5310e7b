//! ivc-run: the main job. Measures every ivc channel this host can run, next
//! to the host's floors, and writes the results.
//!
//! Order: the host floors and TCP over loopback first (seconds), then the
//! channel suites (minutes: Linux guests under QEMU TCG here), then one
//! summary table on stdout, and `results.json`, `plot.svg`, the guests'
//! serial logs and `summary.txt` in the results directory. Suites that
//! cannot run on this host say why; nothing is estimated in their place.

mod charts;
mod csv;
mod floors;
mod guests;
mod plot;
mod progress;
mod record;
mod repeats;
mod suites;
mod summary;
mod timestamp;
mod vmm_devices;
mod vmm_exit;
mod vmm_linux;
mod vmm_shm;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serde::Serialize;

use crate::progress::{Console, Step};
use crate::record::{Status, SuiteReport};
use crate::suites::{Context, Plan, Suite};
use crate::timestamp::Utc;

#[derive(Parser)]
#[command(
    name = "ivc-run",
    version,
    about = "Benchmark every ivc channel this host can run against the host's floors",
    long_about = "Benchmark every ivc channel this host can run against the host's floors.\n\n\
        Runs, in order: host floors (cache-line and eventfd ping-pong between two processes, \
        memcpy bandwidth, null system call, raw KVM_EXIT_IO round trip), TCP over loopback, then \
        the channels: shm-poll and shm-irq between two Linux guests under QEMU TCG (emulated), \
        the port-I/O exit cost inside ivc-vmm (bare-metal test guest on /dev/kvm), and the \
        ivc-vmm device suites where this host and tree can run them. Prints one summary table and writes \
        results.json, results.csv, plot.svg and the guests' serial logs into the results directory.\n\n\
        Guest artifacts come from $IVC_GUEST_DIR (scripts/run.sh builds them and sets it)."
)]
struct Cli {
    /// Short run: about 0.3 s per guest measurement point, 0.2 s per floor.
    #[arg(long)]
    quick: bool,
    /// Results directory (default: results/<UTC timestamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Time budget per guest measurement point, seconds (overrides --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Run only these suites (comma-separated; see --list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// List the suites, whether each can run here, and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Serialize)]
struct Results<'a> {
    date: String,
    host: Host,
    plan: PlanJson,
    summary: &'a [summary::Row],
    suites: &'a [SuiteReport],
}

#[derive(Serialize)]
struct Host {
    cpu: String,
    cpus_online: usize,
    kernel: String,
    kvm: String,
    load_average_at_start: String,
    tsc_mhz: Option<f64>,
}

#[derive(Serialize)]
struct PlanJson {
    quick: bool,
    host_seconds_per_point: f64,
    guest_seconds_per_point: f64,
    sizes: Vec<u64>,
    totals: Vec<u64>,
    packets: Vec<u64>,
}

fn host_facts() -> Host {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let cpus_online = std::thread::available_parallelism().map_or(1, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let load_average_at_start = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    Host {
        cpu,
        cpus_online,
        kernel,
        kvm: ivc_floors::kvm_exit::describe_kvm(),
        load_average_at_start,
        tsc_mhz: None,
    }
}

/// The 1-minute load average (0 if unknown).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Parses the options into the context every suite gets: the plan, the
/// results directory, the guest artifacts and the host's TSC rate.
fn context(cli: &Cli, all: &[Box<dyn Suite>], now: &Utc) -> Result<Context, String> {
    let console = Console::new().map_err(|e| format!("stderr: {e}"))?;
    let plan = Plan::new(cli.quick, cli.seconds);
    if !(plan.guest_seconds > 0.0 && plan.guest_seconds <= 600.0) {
        return Err("--seconds must be between 0 and 600".into());
    }
    let known: Vec<&str> = all.iter().map(|s| s.name()).collect();
    if let Some(bad) = cli.only.iter().find(|o| !known.contains(&o.as_str())) {
        return Err(format!(
            "unknown suite '{bad}' (suites: {})",
            known.join(", ")
        ));
    }
    let out_dir = cli
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(now.compact()));
    let artifacts = ivc_guest_harness::GuestArtifacts::locate().map_err(|e| e.to_string());
    Ok(Context {
        plan,
        console,
        out_dir,
        artifacts,
        tsc_mhz: ivc_floors::tsc::host_tsc_mhz(std::time::Duration::from_millis(200)),
    })
}

/// `--list`: every suite, where it runs, and whether it can run here.
fn list(all: &[Box<dyn Suite>], ctx: &Context) {
    for s in all {
        let state = s
            .unavailable(ctx)
            .map_or("can run".to_string(), |why| format!("cannot run: {why}"));
        println!("{:<18} {:<28} {state}", s.name(), s.environment());
    }
}

/// What running the suites gave.
struct Outcome {
    reports: Vec<SuiteReport>,
    /// Every suite that ran worked and its data was right.
    all_ok: bool,
    /// The highest 1-minute load average seen around the suites.
    busiest: f64,
}

/// Runs the suites `only` names (all if empty), in order.
fn run_suites(all: &[Box<dyn Suite>], only: &[String], ctx: &Context) -> Outcome {
    let mut outcome = Outcome {
        reports: Vec::new(),
        all_ok: true,
        busiest: load_average(),
    };
    for s in all {
        if !only.is_empty() && !only.iter().any(|o| o == s.name()) {
            continue;
        }
        let (report, ok, load) = run_suite(s.as_ref(), ctx);
        outcome.all_ok &= ok;
        outcome.busiest = outcome.busiest.max(load);
        outcome.reports.push(report);
    }
    outcome
}

/// Runs one suite (or says why it cannot run here): its report, whether it
/// worked with right data, and the highest load average around it.
fn run_suite(s: &dyn Suite, ctx: &Context) -> (SuiteReport, bool, f64) {
    let mut report = SuiteReport {
        suite: s.name().into(),
        environment: s.environment(),
        status: Status::Ran,
        records: Vec::new(),
        notes: Vec::new(),
        seconds: 0.0,
    };
    if let Some(why) = s.unavailable(ctx) {
        ctx.console
            .line(&format!("==> {}: not run: {why}", s.name()));
        report.status = Status::Skipped(why);
        return (report, true, 0.0);
    }
    let step = Step::start(
        &ctx.console,
        &format!("{} [{}]", s.name(), s.environment()),
        Some(s.estimate(&ctx.plan)),
    );
    let started = Instant::now();
    let load_before = load_average();
    let result = s.run(ctx, &mut report);
    report.seconds = started.elapsed().as_secs_f64();
    let load_after = load_average();
    report.notes.push(format!(
        "load average (1 min) before {load_before:.2}, after {load_after:.2}"
    ));
    let bad_data = report.records.iter().any(record::Record::bad_data);
    let ok = match result {
        Ok(()) if !bad_data => {
            step.finish(&format!("{} figures", report.records.len()));
            true
        }
        Ok(()) => {
            step.finish("DATA MISMATCH in some results");
            report.status = Status::Failed("data mismatch".into());
            false
        }
        Err(e) => {
            step.finish(&format!("FAILED: {e}"));
            report.status = Status::Failed(e);
            false
        }
    };
    (report, ok, load_before.max(load_after))
}

/// Writes results.json, plot.svg, summary.txt and results.csv into the
/// results directory; returns the summary table.
fn write_outputs(
    ctx: &Context,
    now: &Utc,
    host: Host,
    reports: &[SuiteReport],
) -> Result<String, String> {
    let rows = summary::rows(reports);
    let table = summary::table(&rows);
    let records: Vec<record::Record> = reports.iter().flat_map(|r| r.records.clone()).collect();
    let footer = format!(
        "ivc-run {}, {}, {} CPUs, /dev/kvm: {}\n\
         shm-poll/shm-irq: two Linux guests under QEMU TCG (emulated); ivc-vmm: bare-metal guests on /dev/kvm (PVM, CPL3 native); tcp-loopback and floors: native on the host",
        now.iso(),
        host.cpu,
        host.cpus_online,
        host.kvm
    );
    let svg = plot::render(
        &[charts::latency(&records), charts::throughput(&records)],
        &footer,
    );
    let results = Results {
        date: now.iso(),
        host,
        plan: PlanJson {
            quick: ctx.plan.quick,
            host_seconds_per_point: ctx.plan.host_budget.as_secs_f64(),
            guest_seconds_per_point: ctx.plan.guest_seconds,
            sizes: ctx.plan.sizes.clone(),
            totals: ctx.plan.totals.clone(),
            packets: ctx.plan.packets.clone(),
        },
        summary: &rows,
        suites: reports,
    };
    let json = serde_json::to_string_pretty(&results).map_err(|e| format!("results.json: {e}"))?;
    let write = |name: &str, data: &str| {
        std::fs::write(ctx.out_dir.join(name), data)
            .map_err(|e| format!("writing {}: {e}", ctx.out_dir.join(name).display()))
    };
    write("results.json", &json)?;
    write("plot.svg", &svg)?;
    write("summary.txt", &table)?;
    write("results.csv", &csv::render(reports)?)?;
    Ok(table)
}

/// The summary on stdout: the table, the stalls, and a warning (also
/// appended to summary.txt) when the host was busier than it has CPUs.
fn print_summary(now: &Utc, table: &str, out: &Outcome, cpus: usize, out_dir: &Path) {
    println!();
    println!(
        "Summary, {} ({}; guest figures emulated under QEMU TCG)",
        now.date(),
        now.iso()
    );
    print!("{table}");
    // Stalls are findings in their own right (a lost wake-up shows up here
    // first), so they are shown, not only kept in results.json.
    for r in &out.reports {
        for n in r.notes.iter().filter(|n| n.contains("stall:")) {
            println!("{}: {n}", r.suite);
        }
    }
    if out.busiest > cpus as f64 {
        let warning = format!(
            "note: the host was busy during the run (load average up to {:.1} on {} CPUs): \
             figures include time spent waiting for a CPU; polling channels suffer most",
            out.busiest, cpus
        );
        println!("{warning}");
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(out_dir.join("summary.txt"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{warning}\n").as_bytes()));
    }
    println!();
    println!(
        "results: {0}/results.json, {0}/results.csv, {0}/plot.svg, {0}/summary.txt",
        out_dir.display()
    );
}

/// Plans, runs the suites, writes and prints the results; `Ok(false)` when
/// a suite failed or found wrong data.
fn run(cli: Cli) -> Result<bool, String> {
    let now = Utc::now();
    let all = suites::all();
    let ctx = context(&cli, &all, &now)?;
    if cli.list {
        list(&all, &ctx);
        return Ok(true);
    }
    std::fs::create_dir_all(&ctx.out_dir)
        .map_err(|e| format!("cannot create {}: {e}", ctx.out_dir.display()))?;
    let mut host = host_facts();
    host.tsc_mhz = ctx.tsc_mhz;
    ctx.console.line(&format!(
        "ivc-run {}: {} ({} CPUs, load {}), /dev/kvm: {}",
        now.iso(),
        host.cpu,
        host.cpus_online,
        host.load_average_at_start,
        host.kvm
    ));
    ctx.console
        .line(&format!("results: {}", ctx.out_dir.display()));
    let outcome = run_suites(&all, &cli.only, &ctx);
    let cpus = host.cpus_online;
    let table = write_outputs(&ctx, &now, host, &outcome.reports)?;
    print_summary(&now, &table, &outcome, cpus, &ctx.out_dir);
    Ok(outcome.all_ok)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("ivc-run: error: {e}");
            ExitCode::FAILURE
        }
    }
}
