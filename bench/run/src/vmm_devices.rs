//! The device-level suite: the ivc devices of ivc-vmm, driven by the
//! bare-metal test guest (`vmm/test-guest`) in two VMs under `/dev/kvm`.
//! Guest loops run at CPL3, natively even under PVM, so these are the
//! channels at the speed this host really has (the guest kernel's own
//! entries and exits are PVM-emulated).
//!
//! - `shm-poll` / `shm-irq`: `test=chan-duplex` moves a checked byte stream
//!   each way at once through the shared-memory channel (the same
//!   `ivc-abi` code the driver compiles), 4 KiB per call;
//! - `pio`: `test=pio-duplex`, the same through ivc-pio with string I/O;
//! - `pio-desc`: the same in ivc-pio's descriptor mode, 1 MiB per call (the
//!   longest a descriptor may name; over a 4 MiB region)
//!   (one `IN` from `TX_GO`/`RX_GO` moves a whole buffer), with the bytes
//!   per exit (ivc-vmm's `ivc-pio traffic:` line) and the cost of one such
//!   exit (the guest times its `GO`s with RDTSC) against the port-I/O exit
//!   floor (`vmm-pio-exit`) plus the VMM's copies at memcpy speed;
//! - shared-memory ping-pong and one-way stream: see `vmm_shm`;
//! - doorbell: `test=doorbell mode=self`, doorbell write to interrupt
//!   handler through ivc-vmm's ioeventfd -> irqfd -> MSI-X path.
//!
//! Transfer time runs from the moment both guests print that they are
//! connected (their console logs are polled) to the moment both VMs have
//! exited, so VM start-up is not in it. The guests check every byte and
//! print FNV checksums; one side's `tx_fnv` must equal the other's `rx_fnv`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ivc_floors::{kvm_exit, Latency, Throughput};
use ivc_rendezvous::{Server, ServerConfig};

use crate::record::{Data, Record, SuiteReport, UNCHECKED};
use crate::suites::{Context, Plan, Suite};
use crate::vmm_exit::{ensure_binaries, Binaries};

/// In the `what` of every duplex record (both directions at once): the
/// summary and the chart tell them from one-way transfers by it.
pub const DUPLEX: &str = "each way at once";

/// `key=value` from the first guest line starting with `prefix`.
pub fn field(out: &str, prefix: &str, key: &str) -> Option<String> {
    let line = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ivc-test-guest: "))
        .find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

/// The `what` of the descriptor-mode exit cost record (its size is the
/// bytes one exit moved).
pub const GO_EXIT: &str = "descriptor exit (one IN from TX_GO/RX_GO)";

/// `cycles=` of a guest's result line (its own timing of the transfer).
fn guest_cycles(out: &str, result: &str) -> Option<u64> {
    field(out, result, "cycles")?
        .parse()
        .ok()
        .filter(|&c| c > 0)
}

/// `chunk=` of a test guest command line, in bytes (`4096`, `64k`, `1m`).
fn chunk_of(extra: &str) -> Option<u64> {
    let v = extra
        .split_whitespace()
        .find_map(|w| w.strip_prefix("chunk="))?;
    let (digits, mult) = match v.char_indices().last()? {
        (i, 'k') => (&v[..i], 1 << 10),
        (i, 'm') => (&v[..i], 1 << 20),
        _ => (v, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * mult)
}

/// ivc-pio's `traffic:` line, which ivc-vmm logs when the VM stops.
#[derive(Debug, PartialEq)]
struct Traffic {
    exits: u64,
    data_exits: u64,
    go_exits: u64,
    moved: u64,
}

fn traffic(out: &str) -> Option<Traffic> {
    let line = out
        .lines()
        .find_map(|l| l.split_once("ivc-pio traffic: ").map(|p| p.1))?;
    let get = |key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(Traffic {
        exits: get("exits")?,
        data_exits: get("data_exits")?,
        go_exits: get("go_exits")?,
        moved: get("sent")? + get("received")?,
    })
}

/// A guest's `pio-desc-timing` line: GOs that moved bytes, the bytes, and
/// the TSC cycles spent in them.
struct DescTiming {
    gos: u64,
    bytes: u64,
    cycles: u64,
}

fn desc_timing(out: &str) -> Option<DescTiming> {
    let num = |key: &str| field(out, "pio-desc-timing", key)?.parse().ok();
    Some(DescTiming {
        gos: num("gos")?,
        bytes: num("bytes")?,
        cycles: num("cycles")?,
    })
}

/// A VM whose console goes to a log file and whose VMM diagnostics to
/// another (`<log>.vmm`: the two interleave mid-line in one file); killed on
/// drop.
struct Vm {
    child: Child,
    log: PathBuf,
    vmm_log: PathBuf,
    done: bool,
}

impl Vm {
    /// Starts ivc-vmm with the test guest, `cmdline`, the device `ivc` and
    /// any further `ivc-vmm run` options in `vmm_args`.
    fn start(
        bins: &Binaries,
        ivc: &str,
        cmdline: &str,
        vmm_args: &[&str],
        log: PathBuf,
    ) -> Result<Vm, String> {
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let vmm_log = log.with_extension("vmm.log");
        let err =
            std::fs::File::create(&vmm_log).map_err(|e| format!("{}: {e}", vmm_log.display()))?;
        let child = Command::new(&bins.vmm)
            .args(["run", "--mem", "64M", "--kernel"])
            .arg(&bins.guest)
            .args(["--ivc", ivc, "--cmdline", cmdline])
            .args(vmm_args)
            // For ivc-pio's `traffic:` line at exit (exits, bytes).
            .env("IVC_VMM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bins.vmm.display()))?;
        Ok(Vm {
            child,
            log,
            vmm_log,
            done: false,
        })
    }

    /// The guest's console.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// ivc-vmm's own diagnostics.
    fn vmm_output(&self) -> String {
        std::fs::read_to_string(&self.vmm_log).unwrap_or_default()
    }

    /// Whether it has exited (reaping it); its exit code then.
    fn poll(&mut self) -> Option<Option<i32>> {
        match self.child.try_wait() {
            Ok(Some(s)) => {
                self.done = true;
                Some(s.code())
            }
            Ok(None) => None,
            Err(_) => {
                self.done = true;
                Some(None)
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one two-VM run produced.
pub(crate) struct Pair {
    /// The guests' consoles.
    pub outputs: [String; 2],
    /// The VMMs' diagnostics.
    pub vmm_outputs: [String; 2],
    /// From both connected to both exited.
    pub transfer: Duration,
}

/// Runs `cmdlines` in two VMs on one `ivc` device spec (and `vmm_args`,
/// further `ivc-vmm run` options) and waits (at most `limit`) for both;
/// `connected` is the line each prints when the channel is up.
pub(crate) fn run_pair(
    bins: &Binaries,
    ivc: &str,
    vmm_args: &[&str],
    cmdlines: [&str; 2],
    connected: &str,
    logs: [PathBuf; 2],
    limit: Duration,
) -> Result<Pair, String> {
    let [la, lb] = logs;
    let mut vms = [
        Vm::start(bins, ivc, cmdlines[0], vmm_args, la)?,
        Vm::start(bins, ivc, cmdlines[1], vmm_args, lb)?,
    ];
    let start = Instant::now();
    let mut up: Option<Instant> = None;
    let mut codes: [Option<Option<i32>>; 2] = [None, None];
    loop {
        for (vm, code) in vms.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                *code = vm.poll();
            }
        }
        if up.is_none() && vms.iter().all(|v| v.output().contains(connected)) {
            up = Some(Instant::now());
        }
        if codes.iter().all(Option::is_some) {
            break;
        }
        if start.elapsed() > limit {
            return Err(format!(
                "the VMs did not finish within {} s (logs: {}, {})",
                limit.as_secs(),
                vms[0].log.display(),
                vms[1].log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = Instant::now();
    let outputs = [vms[0].output(), vms[1].output()];
    let vmm_outputs = [vms[0].vmm_output(), vms[1].vmm_output()];
    for (i, code) in codes.iter().enumerate() {
        if *code != Some(Some(0)) {
            let tail = |s: &str| s.lines().rev().take(6).collect::<Vec<_>>().join("\n      ");
            return Err(format!(
                "VM {} ended with {:?}; logs {} and {}:\n      {}\n      {}",
                ["A", "B"][i],
                code.flatten(),
                vms[i].log.display(),
                vms[i].vmm_log.display(),
                tail(&outputs[i]),
                tail(&vmm_outputs[i])
            ));
        }
    }
    let up = up.ok_or_else(|| format!("no '{connected}' line from both guests"))?;
    Ok(Pair {
        outputs,
        vmm_outputs,
        transfer: end - up,
    })
}

/// A fresh rendezvous server for one case.
pub(crate) fn server(
    dir: &Path,
    name: &str,
    shm: u64,
    vectors: u32,
) -> Result<(StopOnDrop, PathBuf), String> {
    let socket = dir.join(format!("{name}.sock"));
    let s = Server::bind(ServerConfig::new(&socket, shm, vectors))
        .map_err(|e| format!("rendezvous server: {e}"))?
        .spawn()
        .map_err(|e| format!("rendezvous server: {e}"))?;
    Ok((StopOnDrop(Some(s)), socket))
}

pub(crate) struct StopOnDrop(Option<ivc_rendezvous::ServerThread>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.stop();
        }
    }
}

/// The ivc devices of ivc-vmm between two bare-metal VMs.
pub struct VmmDevices;

impl VmmDevices {
    fn duplex(
        &self,
        ctx: &Context,
        bins: &Binaries,
        report: &mut SuiteReport,
        case: (&str, &str, u32, &str),
        bytes: u64,
    ) -> Result<(), String> {
        let (channel, kind, vectors, extra) = case;
        let scratch = ivc_guest_harness::ScratchDir::new().map_err(|e| e.to_string())?;
        // Rings of at least twice a call (the region holds both).
        let chunk = chunk_of(extra).unwrap_or(4096);
        let region = (4 * chunk).max(1 << 20);
        let (_server, socket) = server(scratch.path(), channel, region, vectors)?;
        let sock = socket.to_str().ok_or("socket path is not UTF-8")?;
        let ivc = if kind == "shm-irq" {
            format!("{kind},socket={sock},vectors={vectors}")
        } else {
            format!("{kind},socket={sock}")
        };
        let (test, result, connected) = if kind == "pio" {
            ("pio-duplex", "pio-result", "pio-connected")
        } else {
            ("chan-duplex", "chan-result", "chan-connected")
        };
        let a = format!("test={test} tx={bytes} rx={bytes} seed=11 peer_seed=22 {extra}");
        let b = format!("test={test} tx={bytes} rx={bytes} seed=22 peer_seed=11 {extra}");
        let logs = [
            ctx.out_dir.join(format!("vmm-{channel}-a.log")),
            ctx.out_dir.join(format!("vmm-{channel}-b.log")),
        ];
        let pair = run_pair(
            bins,
            &ivc,
            &[],
            [&a, &b],
            connected,
            logs,
            Duration::from_secs(300),
        )?;
        let [oa, ob] = &pair.outputs;
        let complete = |o: &str| field(o, result, "outcome").as_deref() == Some("complete");
        let verified = complete(oa)
            && complete(ob)
            && field(oa, result, "tx_fnv").is_some()
            && field(oa, result, "tx_fnv") == field(ob, result, "rx_fnv")
            && field(ob, result, "tx_fnv") == field(oa, result, "rx_fnv");
        // chan-duplex and string-I/O pio move at most 4 KiB per call
        // (`chunk=`, one string instruction); descriptor mode what its
        // `chunk=` says (`chunk` above).
        // An unchecked run only counts bytes: not "verified", and said so.
        let checked = !extra.split_whitespace().any(|w| w == "check=0");
        // pio-duplex times itself (TSC from its connection to its last
        // byte), which leaves VM teardown out; else the host's clock.
        let elapsed = match (
            ctx.tsc_mhz,
            guest_cycles(oa, result),
            guest_cycles(ob, result),
        ) {
            (Some(mhz), Some(a), Some(b)) if mhz > 0.0 => {
                Duration::from_secs_f64(a.max(b) as f64 / (mhz * 1e6))
            }
            _ => pair.transfer,
        };
        report.records.push(Record {
            channel: format!("ivc-vmm {channel}"),
            environment: self.environment(),
            what: format!(
                "{test}: {bytes} bytes {DUPLEX}, CPL3{}",
                if checked { "" } else { UNCHECKED }
            ),
            data: Data::Throughput {
                stats: Throughput::new(chunk, bytes, elapsed),
                requested: bytes,
                verified: verified && checked,
            },
        });
        if kind == "pio" {
            let [va, vb] = &pair.vmm_outputs;
            self.pio_exits(ctx, report, channel, checked, [(oa, va), (ob, vb)])?;
        }
        for (side, o) in [("A", oa), ("B", ob)] {
            if let Some(line) = o
                .lines()
                .filter_map(|l| l.trim().strip_prefix("ivc-test-guest: "))
                .find(|l| l.starts_with(result))
            {
                report.notes.push(format!("{channel} guest {side}: {line}"));
            }
        }
        Ok(())
    }

    /// Exits and bytes per exit of a pio run (ivc-vmm's `ivc-pio traffic:`
    /// lines; `outputs` are (console, VMM log) per VM), and in descriptor mode the cost of one `GO` exit (the
    /// guests' `pio-desc-timing` lines) as a latency record, marked
    /// [`UNCHECKED`] when the guests only counted the bytes (`checked`
    /// false).
    fn pio_exits(
        &self,
        ctx: &Context,
        report: &mut SuiteReport,
        channel: &str,
        checked: bool,
        outputs: [(&String, &String); 2],
    ) -> Result<(), String> {
        let mut per_go = Vec::new();
        let mut go_size = 0u64;
        for (side, (o, vmm)) in ["A", "B"].iter().zip(outputs) {
            let t = traffic(vmm).ok_or_else(|| {
                format!("{channel}: VM {side} printed no `ivc-pio traffic:` line")
            })?;
            report.notes.push(format!(
                "{channel} VM {side}: {} exits, {} moving data (DATA or GO), {} bytes sent + received: {:.0} B per exit, {:.0} B per data exit",
                t.exits,
                t.data_exits + t.go_exits,
                t.moved,
                t.moved as f64 / t.exits.max(1) as f64,
                t.moved as f64 / (t.data_exits + t.go_exits).max(1) as f64,
            ));
            if let (Some(g), Some(mhz)) = (desc_timing(o), ctx.tsc_mhz) {
                if g.gos > 0 {
                    per_go.push((g.cycles as f64 / g.gos as f64 * 1e3 / mhz) as u64);
                    go_size = go_size.max(g.bytes / g.gos);
                    report.notes.push(format!(
                        "{channel} VM {side}: {} GOs moved {} bytes ({:.0} B each) in {:.1} us each",
                        g.gos,
                        g.bytes,
                        g.bytes as f64 / g.gos as f64,
                        g.cycles as f64 / g.gos as f64 / mhz
                    ));
                }
            }
        }
        if let Some(stats) = Latency::from_samples(go_size, 1, &mut per_go) {
            report.records.push(Record {
                channel: format!("ivc-vmm {channel}"),
                environment: self.environment(),
                what: format!(
                    "{GO_EXIT}, CPL3 (mean per VM){}",
                    if checked { "" } else { UNCHECKED }
                ),
                data: Data::Latency {
                    stats,
                    verified: true,
                },
            });
        }
        Ok(())
    }

    /// Descriptor exits that move 64 bytes: what one `GO` costs beyond a
    /// plain exit when the copies are negligible (only the exit cost is
    /// recorded; the transfer is too small to be a throughput figure).
    fn small_gos(
        &self,
        ctx: &Context,
        bins: &Binaries,
        report: &mut SuiteReport,
    ) -> Result<(), String> {
        let scratch = ivc_guest_harness::ScratchDir::new().map_err(|e| e.to_string())?;
        let (_server, socket) = server(scratch.path(), "pio-desc-64", 1 << 20, 1)?;
        let sock = socket.to_str().ok_or("socket path is not UTF-8")?;
        let bytes = 64 * 2000;
        let cmd = |seeds: &str| {
            format!("test=pio-duplex tx={bytes} rx={bytes} {seeds} desc=1 chunk=64 check=0")
        };
        let (a, b) = (cmd("seed=11 peer_seed=22"), cmd("seed=22 peer_seed=11"));
        let logs = [
            ctx.out_dir.join("vmm-pio-desc-64-a.log"),
            ctx.out_dir.join("vmm-pio-desc-64-b.log"),
        ];
        let pair = run_pair(
            bins,
            &format!("pio,socket={sock}"),
            &[],
            [&a, &b],
            "pio-connected",
            logs,
            Duration::from_secs(120),
        )?;
        let [oa, ob] = &pair.outputs;
        let [va, vb] = &pair.vmm_outputs;
        self.pio_exits(ctx, report, "pio-desc", false, [(oa, va), (ob, vb)])
    }

    fn doorbell(
        &self,
        ctx: &Context,
        bins: &Binaries,
        report: &mut SuiteReport,
        runs: usize,
    ) -> Result<(), String> {
        const RINGS: u64 = 20;
        let Some(mhz) = ctx.tsc_mhz else {
            report
                .notes
                .push("doorbell latency skipped: the host TSC rate is unknown".into());
            return Ok(());
        };
        let scratch = ivc_guest_harness::ScratchDir::new().map_err(|e| e.to_string())?;
        let (_server, socket) = server(scratch.path(), "db", 64 << 10, 2)?;
        let sock = socket.to_str().ok_or("socket path is not UTF-8")?;
        let ivc = format!("shm-irq,socket={sock},vectors=2");
        let mut samples = Vec::new();
        for i in 0..runs {
            let log = ctx.out_dir.join(format!("vmm-doorbell-{i}.log"));
            let mut vm = Vm::start(
                bins,
                &ivc,
                &format!("test=doorbell mode=self count={RINGS} assign=all"),
                &[],
                log,
            )?;
            let start = Instant::now();
            let code = loop {
                if let Some(c) = vm.poll() {
                    break c;
                }
                if start.elapsed() > Duration::from_secs(60) {
                    return Err("the doorbell VM did not finish within 60 s".into());
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            let out = vm.output();
            if code != Some(0) {
                return Err(format!("the doorbell VM ended with {code:?}"));
            }
            let cycles: f64 = field(&out, "doorbell-result", "latency_cycles_avg")
                .and_then(|v| v.parse().ok())
                .ok_or("no latency_cycles_avg on the doorbell-result line")?;
            // One sample = the run's RINGS doorbells; Latency divides it out.
            samples.push((cycles * 1e3 / mhz * RINGS as f64) as u64);
        }
        let stats = Latency::from_samples(0, RINGS, &mut samples).ok_or("no doorbell samples")?;
        report.records.push(Record {
            channel: "ivc-vmm shm-irq".into(),
            environment: self.environment(),
            what: "doorbell write to MSI-X handler, same VM".into(),
            data: Data::Latency {
                stats,
                verified: true,
            },
        });
        Ok(())
    }
}

impl Suite for VmmDevices {
    fn name(&self) -> &'static str {
        "vmm-devices"
    }
    fn environment(&self) -> String {
        format!(
            "ivc-vmm, bare-metal guests on /dev/kvm: {}",
            kvm_exit::describe_kvm()
        )
    }
    fn unavailable(&self, _ctx: &Context) -> Option<String> {
        (!Path::new("/dev/kvm").exists()).then(|| "no /dev/kvm on this host".to_string())
    }
    fn estimate(&self, plan: &Plan) -> Duration {
        Duration::from_secs(if plan.quick { 25 } else { 45 })
    }
    fn run(&self, ctx: &Context, report: &mut SuiteReport) -> Result<(), String> {
        let bins = ensure_binaries(ctx, &mut report.notes)?;
        let help = Command::new(&bins.vmm)
            .args(["run", "--help"])
            .output()
            .map_err(|e| format!("running {}: {e}", bins.vmm.display()))?;
        if !String::from_utf8_lossy(&help.stdout).contains("--ivc") {
            return Err("this ivc-vmm has no --ivc devices".into());
        }
        let (shm_bytes, pio_bytes) = if ctx.plan.quick {
            (16u64 << 20, 32u64 << 10)
        } else {
            (64u64 << 20, 128u64 << 10)
        };
        for case in [
            ("shm-poll", "shm-poll", 1, ""),
            ("shm-irq", "shm-irq", 2, "irq=1"),
        ] {
            ctx.console.line(&format!("    {}: chan-duplex", case.0));
            self.duplex(ctx, &bins, report, case, shm_bytes)?;
        }
        match ctx.tsc_mhz {
            Some(mhz) => crate::vmm_shm::run_all(
                ctx,
                &bins,
                report,
                &self.environment(),
                (mhz * 1e3).round() as u64,
            )?,
            None => report.notes.push(
                "shm ping-pong and stream skipped: the host TSC rate is unknown (the guests time themselves)"
                    .into(),
            ),
        }
        ctx.console.line("    pio: pio-duplex (string I/O)");
        self.duplex(ctx, &bins, report, ("pio", "pio", 1, ""), pio_bytes)?;
        ctx.console
            .line("    pio-desc: pio-duplex desc=1 (descriptor mode)");
        let desc = ("pio-desc", "pio", 1, "desc=1 chunk=1m");
        self.duplex(ctx, &bins, report, desc, shm_bytes)?;
        ctx.console
            .line("    pio-desc: pio-duplex desc=1 check=0 (bytes counted, not checked)");
        let counted = ("pio-desc", "pio", 1, "desc=1 chunk=1m check=0");
        self.duplex(ctx, &bins, report, counted, 4 * shm_bytes)?;
        ctx.console
            .line("    pio-desc: pio-duplex desc=1 chunk=64 check=0 (the exit's own price)");
        self.small_gos(ctx, &bins, report)?;
        ctx.console.line("    doorbell latency");
        self.doorbell(ctx, &bins, report, if ctx.plan.quick { 3 } else { 7 })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_guest_lines() {
        let out = "ivc-test-guest: chan-connected\n\
                   ivc-test-guest: chan-result outcome=complete sent=4194304 received=4194304 tx_fnv=0x1 rx_fnv=0x2 rings=1\n\
                   ivc-test-guest: doorbell-result sent=10 expected=10 received=10 latency_cycles_avg=303941\n";
        assert_eq!(
            field(out, "chan-result", "outcome").as_deref(),
            Some("complete")
        );
        assert_eq!(field(out, "chan-result", "rx_fnv").as_deref(), Some("0x2"));
        assert_eq!(
            field(out, "doorbell-result", "latency_cycles_avg").as_deref(),
            Some("303941")
        );
        assert_eq!(field(out, "pio-result", "sent"), None);
        let vmm = "[ivc-vmm] ivc-vmm: info: ivc-pio traffic: exits=10 data_exits=2 go_exits=3 sent=100 received=50 bytes_per_exit=15.0\n";
        assert_eq!(
            traffic(vmm),
            Some(Traffic {
                exits: 10,
                data_exits: 2,
                go_exits: 3,
                moved: 150
            })
        );
        assert_eq!(traffic("ivc-pio traffic: exits=1"), None);
        let t = desc_timing("ivc-test-guest: pio-desc-timing gos=4 bytes=1048576 cycles=800\n")
            .expect("parsed");
        assert_eq!((t.gos, t.bytes, t.cycles), (4, 1 << 20, 800));
        assert_eq!(chunk_of("desc=1 chunk=256k"), Some(256 << 10));
        assert_eq!(chunk_of("chunk=4096"), Some(4096));
        assert_eq!(chunk_of("chunk=1m x=1"), Some(1 << 20));
        assert_eq!(chunk_of("desc=1"), None);
        // A key is matched whole: `sent` is not `sent_x`.
        assert_eq!(
            field("ivc-test-guest: r sent_x=1 sent=2", "r", "sent").as_deref(),
            Some("2")
        );
    }
}
