//! Linux guests with `ivc.ko` in ivc-vmm, every channel kind: `pio` (the
//! driver forced to string I/O), `pio-desc` (its descriptor mode, one exit
//! per call), `shm-poll`, `shm-irq`, `shm-irq+spin` (the driver spinning
//! before it arms a doorbell; latency only). Guest A runs `ivc-bench latency`
//! then `send`, guest B `echo` then `recv`, one pair per channel, one pair
//! after the other so they do not compete for the cores. The shared-memory
//! pairs then measure the mapped path the way the QEMU TCG suites do
//! (`guests::MappedRun`): records `<channel>/mmap`, and interleaved 64 B
//! blocks of both paths. On hosts without hardware
//! virtualization (ours) the guests run in the nested host, a Linux VM under
//! QEMU TCG whose KVM runs on the emulated SVM CPU: every figure is then
//! emulated twice over and says how the channels compare, not how fast they
//! are on hardware. The same run measures the floor the `pio` channel is
//! built on there: one port-I/O exit through ivc-vmm inside that nested host
//! (the bare-metal test guest's `pio-cost`).

use std::fmt::Write as _;
use std::time::Duration;

use ivc_floors::Latency;
use ivc_guest_harness::vmm::HostOutcome;
use ivc_guest_harness::{run_scenario, Device, GuestSpec, Scenario, ScenarioOutcome, VmmBackend};

use crate::guests::{check, note_guest_lines, MappedRun, COUNTERS, IRQ_SPIN_US};
use crate::progress::StderrToFile;
use crate::record::{guest_lines, Data, Record, SuiteReport};
use crate::suites::{Context, Plan, Suite};
use crate::vmm_exit::parse_pio_cost;

/// Shared memory per channel: ample for a 64 KiB message in each ring.
const SHM_SIZE: u64 = 4 << 20;
/// Port accesses per `pio-cost` run of the test guest in the nested host.
const EXIT_ACCESSES: u64 = 200;
/// `pio-cost` runs (each a fresh VM) in the nested host.
const EXIT_RUNS: usize = 5;
/// What the nested exit floor is called in records and the summary.
pub const EXIT_WHAT: &str = "port-I/O exit round trip through ivc-vmm, guest CPL0";

/// The same from guest CPL3 (where the test guest issues its `GO`s).
pub const EXIT_WHAT_CPL3: &str = "port-I/O exit round trip through ivc-vmm, guest CPL3";
/// What the nested descriptor exit cost is called in records and the summary.
pub const DESC_EXIT_WHAT: &str =
    "descriptor exit (one IN from TX_GO/RX_GO) through ivc-vmm, test guest at CPL3";

/// The channel kinds, as `(kind, record channel)`; the kind names the
/// server and the guests (so no `+`: the harness takes A-Z, a-z, 0-9, `-`
/// and `_`), both pio kinds are `--ivc pio`, both shm-irq kinds `--ivc
/// shm-irq`.
pub const CHANNELS: [(&str, &str); 5] = [
    ("pio", "linux-in-ivc-vmm pio"),
    ("pio-desc", "linux-in-ivc-vmm pio-desc"),
    ("shm-poll", "linux-in-ivc-vmm shm-poll"),
    ("shm-irq", "linux-in-ivc-vmm shm-irq"),
    ("shm-irq-spin", "linux-in-ivc-vmm shm-irq+spin"),
];

/// Whether channel `kind` is shared memory, which has a mapped path.
pub fn has_mapped_path(kind: &str) -> bool {
    kind.starts_with("shm-")
}

/// The grid for one channel: port I/O with string instructions moves a
/// few bytes per VM exit, so under nesting its large sizes would take
/// minutes for one round trip; it gets the small half of the grid.
fn grid(kind: &str, plan: &Plan) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    const K: u64 = 1024;
    if kind == "pio" {
        (
            vec![1, 64, 512, 4 * K],
            vec![512, K, 4 * K, 64 * K],
            vec![1, 32, 4 * K],
        )
    } else {
        (
            plan.sizes.clone(),
            plan.totals.clone(),
            plan.packets.clone(),
        )
    }
}

fn list(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The two guests' scripts for channel `kind` (record label `label`).
pub fn scripts(kind: &str, label: &str, plan: &Plan) -> (String, String) {
    let (sizes, totals, packets) = grid(kind, plan);
    let s = plan.guest_seconds;
    // Polled shared memory is measured spinning, the way its users poll;
    // doorbells and port I/O blocking (a doorbell wake-up; the driver's own
    // status polling).
    let (params, wait) = match kind {
        "shm-poll" => (" mode=1".to_string(), "spin"),
        "shm-irq" => (" mode=2".into(), "block"),
        "shm-irq-spin" => (format!(" mode=2 irq_spin_us={IRQ_SPIN_US}"), "block"),
        "pio" => (" pio_string_io=1".into(), "block"),
        _ => (String::new(), "block"),
    };
    // The spinning variant is about latency, as between QEMU TCG guests:
    // its throughput would be the doorbell channel's.
    let transfers = kind != "shm-irq-spin";
    let (sizes, totals, packets) = (list(&sizes), list(&totals), list(&packets));
    let insmod = format!("insmod /lib/ivc/ivc.ko{params} || exit 10\n");
    let mut a = insmod.clone();
    let _ = writeln!(
        a,
        "ivc-bench latency /dev/ivc0 --wait {wait} --label '{label}' --seconds {s} --sizes {sizes} || exit 11"
    );
    let mut b = insmod;
    let _ = writeln!(b, "ivc-bench echo /dev/ivc0 --wait {wait} || exit 11");
    if transfers {
        let _ = writeln!(
            a,
            "ivc-bench send /dev/ivc0 --wait {wait} --label '{label}' --seconds {s} --totals {totals} --packets {packets} || exit 12"
        );
        let _ = writeln!(b, "ivc-bench recv /dev/ivc0 --wait {wait} || exit 12");
    }
    if has_mapped_path(kind) {
        // The guests' clock is the L2's own: no --tsc-mhz, as above.
        MappedRun {
            label: &format!("'{label}'"),
            wait,
            spin_us: if kind == "shm-irq-spin" {
                IRQ_SPIN_US
            } else {
                0
            },
            tsc: "",
            seconds: s,
            sizes: &sizes,
            transfers: transfers.then_some((totals.as_str(), packets.as_str())),
        }
        .append(&mut a, &mut b);
    }
    a.push_str(COUNTERS);
    b.push_str(COUNTERS);
    (a, b)
}

/// The L1 command measuring the nested exit floor with the test guest.
fn exit_floor_command(tsc_khz: u64) -> String {
    format!(
        "for i in $(seq {EXIT_RUNS}); do /opt/ivc/bin/ivc-vmm run --mem 64M --kernel /opt/ivc/tier2/ivc-test-guest \
         --cmdline 'test=pio-cost n={EXIT_ACCESSES} tsc_khz={tsc_khz}' || exit $?; done"
    )
}

/// Bytes each way of the nested descriptor-mode exit measurement.
const DESC_EXIT_BYTES: u64 = 8 << 20;

/// The L1 command measuring ivc-pio's descriptor exits with two test
/// guests (`pio-duplex desc=1 chunk=256k check=0`) on an `ivc-rendezvous` server
/// of its own: each VM prints its GOs' count, bytes and cycles, and its
/// VMM the device's exit counts (`ivc-pio traffic:`).
fn desc_exit_command(tsc_khz: u64) -> String {
    let run = |side: &str, seeds: &str| {
        format!(
            "IVC_VMM_LOG=info /opt/ivc/bin/ivc-vmm run --mem 64M --kernel /opt/ivc/tier2/ivc-test-guest \
             --ivc pio,socket=/tmp/ivc-desc-exit.sock --cmdline 'test=pio-duplex tx={DESC_EXIT_BYTES} rx={DESC_EXIT_BYTES} \
             {seeds} desc=1 chunk=256k check=0 tsc_khz={tsc_khz}' >/tmp/ivc-desc-{side}.log 2>&1"
        )
    };
    format!(
        "/opt/ivc/bin/ivc-rendezvous --socket /tmp/ivc-desc-exit.sock --shm-size 1048576 --vectors 1 & s=$!\n\
         n=0; while [ ! -S /tmp/ivc-desc-exit.sock ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done\n\
         {} & a=$!\n{}; rb=$?; wait $a; ra=$?\nkill $s\n\
         sed 's/^/A /' /tmp/ivc-desc-a.log; sed 's/^/B /' /tmp/ivc-desc-b.log\n\
         [ $ra = 0 ] && [ $rb = 0 ]",
        run("a", "seed=1 peer_seed=2"),
        run("b", "seed=2 peer_seed=1")
    )
}

/// Linux guests in ivc-vmm.
pub struct LinuxInVmm;

impl LinuxInVmm {
    fn backend() -> Result<VmmBackend, String> {
        VmmBackend::detect()
    }
}

impl Suite for LinuxInVmm {
    fn name(&self) -> &'static str {
        "linux-in-ivc-vmm"
    }
    fn environment(&self) -> String {
        match Self::backend() {
            Ok(b) if b.emulated() => {
                "nested KVM under QEMU TCG (emulated): ivc-vmm in an L1 Linux VM".into()
            }
            Ok(b) => b.describe(),
            Err(_) => "Linux guests in ivc-vmm".into(),
        }
    }
    fn unavailable(&self, ctx: &Context) -> Option<String> {
        if let Err(e) = &ctx.artifacts {
            return Some(e.clone());
        }
        Self::backend().err()
    }
    fn estimate(&self, plan: &Plan) -> Duration {
        // Nested: ~10 s for the L1, ~15 s per L2 boot, the grids.
        Duration::from_secs(20)
            + CHANNELS.len() as u32 * (plan.guest_estimate() + Duration::from_secs(15))
    }
    fn run(&self, ctx: &Context, report: &mut SuiteReport) -> Result<(), String> {
        let backend = Self::backend()?;
        // The exit floors need the host's TSC rate and only mean something
        // where the nested host's exits are emulated like the guests'.
        let floor = backend.emulated().then_some(()).and(ctx.tsc_mhz);
        let scenario = Self::scenario(&ctx.plan, floor)?;
        let outcome = {
            let _quiet = StderrToFile::new(&ctx.out_dir.join("linux-in-ivc-vmm.log"))
                .map_err(|e| format!("guest log: {e}"))?;
            run_scenario(&backend, &scenario).map_err(|e| e.to_string())?
        };
        Self::note_hosts(ctx, &backend, &outcome, report);
        self.channel_records(ctx, &outcome, report);
        if let Some(mhz) = floor {
            self.exit_floors(outcome.host("exit-floor"), report);
            self.desc_exits(&outcome.host("desc-exit").output, mhz, report);
        }
        outcome.check_ran()?;
        for o in &outcome.guests {
            check(o)?;
        }
        Ok(())
    }
}

impl LinuxInVmm {
    /// One pair of guests per channel, each pair after the previous one,
    /// and with `floor` (the host's TSC MHz) the two exit-floor commands in
    /// the nested host.
    fn scenario(plan: &Plan, floor: Option<f64>) -> Result<Scenario, String> {
        // Per guest, from its own start: three times what one pair needs
        // (a boot and the grid), so a stall fails within minutes and says
        // where it waited (the agent's `timed out: thread` lines).
        let timeout =
            3 * (plan.guest_estimate() + Duration::from_secs(15)) + Duration::from_secs(60);
        let mut scenario = Scenario::new();
        let mut previous: Option<String> = None;
        for (kind, label) in CHANNELS {
            let (a, b) = scripts(kind, label, plan);
            let device = match kind {
                "pio" | "pio-desc" => Device::ivc_pio(kind),
                "shm-poll" => Device::ivc_shm_poll(kind),
                _ => Device::ivc_shm_irq(kind),
            };
            let spec = |side: &str, cmd: String| {
                GuestSpec::new(format!("{kind}-{side}"), cmd)
                    .device(device.clone())
                    .timeout(timeout)
            };
            scenario = scenario.server(kind, SHM_SIZE, 1);
            // Each pair starts once the previous pair's measuring side ended.
            for (side, cmd) in [("a", a), ("b", b)] {
                scenario = match &previous {
                    None => scenario.guest(spec(side, cmd)),
                    Some(p) => scenario.guest_after_exit(spec(side, cmd), p),
                }
                .map_err(|e| e.to_string())?;
            }
            previous = Some(format!("{kind}-a"));
        }
        // ivc-pio's exit and byte counts (`ivc-pio traffic:` at exit).
        scenario.vmm_log = Some("info".into());
        if let Some(mhz) = floor {
            let khz = (mhz * 1000.0).round() as u64;
            scenario = scenario
                .host_command(
                    "exit-floor",
                    exit_floor_command(khz),
                    Duration::from_secs(300),
                )
                .host_command(
                    "desc-exit",
                    desc_exit_command(khz),
                    Duration::from_secs(300),
                );
        }
        Ok(scenario)
    }

    /// Where the run happened: the nested host's console (kept) and boot
    /// time, the backend, and what one vCPU means for the figures.
    fn note_hosts(
        ctx: &Context,
        backend: &VmmBackend,
        outcome: &ScenarioOutcome,
        report: &mut SuiteReport,
    ) {
        if let Some(l1) = &outcome.l1 {
            let _ = std::fs::write(
                ctx.out_dir.join("linux-in-ivc-vmm.l1-console.log"),
                &l1.console,
            );
            if let Some(t) = l1.ready_after {
                report.notes.push(format!(
                    "nested host: /dev/kvm ready {:.1} s after QEMU started",
                    t.as_secs_f64()
                ));
            }
        }
        report.notes.push(format!("ran on: {}", outcome.backend));
        if backend.emulated() {
            report.notes.push(
                "the nested host has one vCPU (QEMU 10's TCG breaks nested SVM with two; \
                 docs/testing.md): both guests share one host core, so a spinning wait for \
                 the other VM lasts until the L1 scheduler switches (milliseconds)"
                    .into(),
            );
        }
    }

    /// Every guest's serial log (kept) and counters; per channel, ivc-pio's
    /// traffic of both VMs and the measuring guest's result lines.
    fn channel_records(&self, ctx: &Context, outcome: &ScenarioOutcome, report: &mut SuiteReport) {
        for o in &outcome.guests {
            let _ = std::fs::write(
                ctx.out_dir
                    .join(format!("linux-in-ivc-vmm-{}.serial.log", o.name)),
                &o.serial,
            );
            note_guest_lines(o, report);
        }
        for (kind, label) in CHANNELS {
            for side in ["a", "b"] {
                let o = outcome.guest(&format!("{kind}-{side}"));
                if let Some(t) = o
                    .vm_stderr
                    .lines()
                    .find_map(|l| l.split_once("ivc-pio traffic: "))
                {
                    report.notes.push(format!("{label} VM {side}: {}", t.1));
                }
            }
            let a = outcome.guest(&format!("{kind}-a"));
            let (lines, bad) = guest_lines(&a.serial);
            report.records.extend(lines.into_iter().map(|l| {
                let mut r = l.into_record(label);
                r.environment = self.environment();
                r
            }));
            for b in bad {
                report.notes.push(format!("unparsed result line: {b}"));
            }
        }
    }

    /// The nested exit floor per guest CPL: the test guest's `pio-cost`
    /// samples as one latency record each (or a note saying why not).
    fn exit_floors(&self, h: &HostOutcome, report: &mut SuiteReport) {
        for (cpl, what) in [(0, EXIT_WHAT), (3, EXIT_WHAT_CPL3)] {
            let mut samples: Vec<u64> = h
                .output
                .lines()
                .filter_map(parse_pio_cost)
                .filter(|(c, _)| *c == cpl)
                .map(|(_, ns)| (ns * EXIT_ACCESSES as f64) as u64)
                .collect();
            match Latency::from_samples(0, EXIT_ACCESSES, &mut samples) {
                Some(stats) => report.records.push(Record {
                    channel: "linux-in-ivc-vmm".into(),
                    environment: self.environment(),
                    what: what.into(),
                    data: Data::Latency {
                        stats,
                        verified: true,
                    },
                }),
                None => report.notes.push(format!(
                    "the nested exit floor (CPL{cpl}) printed nothing usable ({:?}): {}",
                    h.status,
                    h.output.lines().last().unwrap_or_default()
                )),
            }
        }
        report.notes.push(format!(
            "nested exit floor: the test guest's `pio-cost` in ivc-vmm inside the nested host, {EXIT_RUNS} runs of {EXIT_ACCESSES} accesses"
        ));
    }
}

impl LinuxInVmm {
    /// The nested descriptor exits: the cost of one `GO` (the test guests'
    /// `pio-desc-timing`, per VM) as a latency record whose size is the
    /// bytes one `GO` moved, and the VMMs' exit counts as notes.
    fn desc_exits(&self, output: &str, mhz: f64, report: &mut SuiteReport) {
        let mut per_go = Vec::new();
        let mut size = 0u64;
        for side in ["A", "B"] {
            let lines: String = output
                .lines()
                .filter_map(|l| l.strip_prefix(side)?.strip_prefix(' '))
                .map(|l| format!("{l}\n"))
                .collect();
            if let Some(t) = lines
                .lines()
                .find_map(|l| l.split_once("ivc-pio traffic: "))
            {
                report.notes.push(format!(
                    "nested desc-exit VM {side} (pio-duplex desc=1, 256 KiB calls): {}",
                    t.1
                ));
            }
            let num = |key: &str| -> Option<u64> {
                crate::vmm_devices::field(&lines, "pio-desc-timing", key)?
                    .parse()
                    .ok()
            };
            if let (Some(gos), Some(bytes), Some(cycles)) =
                (num("gos"), num("bytes"), num("cycles"))
            {
                if gos > 0 {
                    per_go.push((cycles as f64 / gos as f64 * 1e3 / mhz) as u64);
                    size = size.max(bytes / gos);
                }
            }
        }
        match Latency::from_samples(size, 1, &mut per_go) {
            Some(stats) => report.records.push(Record {
                channel: "linux-in-ivc-vmm".into(),
                environment: self.environment(),
                what: DESC_EXIT_WHAT.into(),
                data: Data::Latency {
                    stats,
                    verified: true,
                },
            }),
            None => report.notes.push(format!(
                "the nested descriptor-exit measurement printed nothing usable: {}",
                output.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_pair_up_and_fit_the_command_line() {
        let plan = Plan::new(false, None);
        for (kind, label) in CHANNELS {
            let (a, b) = scripts(kind, label, &plan);
            assert!(a.contains(&format!("--label '{label}'")), "{a}");
            // One latency run per path, and for shared memory the two
            // paths once more in the interleaved loop (one line each):
            // every latency run pairs with one echo run.
            let runs = if has_mapped_path(kind) { 4 } else { 1 };
            assert_eq!(a.matches("ivc-bench latency").count(), runs, "{a}");
            assert_eq!(b.matches("ivc-bench echo").count(), runs, "{b}");
            assert_eq!(
                a.matches("--path mmap").count(),
                b.matches("--path mmap").count()
            );
            let transfers = kind != "shm-irq-spin";
            assert_eq!(a.contains("ivc-bench send"), transfers, "{a}");
            assert_eq!(b.contains("ivc-bench recv"), transfers, "{b}");
            // base64 makes it 4/3 longer; the kernel command line holds 2047.
            for s in [&a, &b] {
                assert!(s.len() * 4 / 3 < 1500, "{kind}: {}", s.len());
            }
        }
        // The mapped path of the shared-memory channels, as between QEMU
        // TCG guests: same wait, the label quoted (it has a space) and
        // numbered in the interleaved blocks, no --tsc-mhz (the L2's clock).
        let (poll, poll_b) = scripts("shm-poll", "linux-in-ivc-vmm shm-poll", &plan);
        assert!(poll.contains(
            "ivc-bench latency /dev/ivc0 --path mmap --wait spin --label 'linux-in-ivc-vmm shm-poll' \
             --seconds 1 --sizes 1,64,512,4096,16384,65536 || exit 14"
        ), "{poll}");
        assert!(poll.contains("ivc-bench send /dev/ivc0 --path mmap --wait spin"));
        assert!(
            poll.contains(
                "for i in 1 2 3; do ivc-bench latency /dev/ivc0 --wait spin \
             --label 'linux-in-ivc-vmm shm-poll'#$i --seconds 1 --sizes 64 || exit 16; \
             ivc-bench latency /dev/ivc0 --path mmap --wait spin \
             --label 'linux-in-ivc-vmm shm-poll'#$i --seconds 1 --sizes 64 || exit 16; done"
            ),
            "{poll}"
        );
        assert!(poll_b.contains("ivc-bench recv /dev/ivc0 --path mmap --wait spin || exit 15"));
        assert!(!poll.contains("--tsc-mhz") && !poll.contains("--spin-us"));
        // The read/write path comes first on both sides.
        for s in [&poll, &poll_b] {
            assert!(
                s.find("--wait spin").unwrap_or(usize::MAX) < s.find("--path mmap").unwrap_or(0)
            );
        }
        let (spin, spin_b) = scripts("shm-irq-spin", "linux-in-ivc-vmm shm-irq+spin", &plan);
        assert!(
            spin.starts_with(&format!(
                "insmod /lib/ivc/ivc.ko mode=2 irq_spin_us={IRQ_SPIN_US} || exit 10"
            )),
            "{spin}"
        );
        // Its mapped path spins as long as the driver before sleeping.
        let spin_mmap = format!("--path mmap --wait block --spin-us {IRQ_SPIN_US}");
        assert_eq!(spin.matches(&spin_mmap).count(), 2, "{spin}");
        assert_eq!(spin_b.matches(&spin_mmap).count(), 2, "{spin_b}");
        let (pio, pio_b) = scripts("pio", "x", &plan);
        assert!(!pio.contains("mmap") && !pio_b.contains("mmap"));
        let (pio, _) = scripts("pio", "x", &plan);
        assert!(
            pio.contains("--sizes 1,64,512,4096 ") && pio.contains("--packets 1,32,4096 "),
            "{pio}"
        );
        assert!(
            pio.starts_with("insmod /lib/ivc/ivc.ko pio_string_io=1 || exit 10"),
            "{pio}"
        );
        let (desc, _) = scripts("pio-desc", "x", &plan);
        assert!(
            desc.starts_with("insmod /lib/ivc/ivc.ko || exit 10")
                && desc.contains("--packets 1,32,4096,65536 "),
            "{desc}"
        );
        let (irq, _) = scripts("shm-irq", "x", &plan);
        assert!(irq.contains("mode=2") && irq.contains("--wait block"));
        let (poll, _) = scripts("shm-poll", "x", &plan);
        assert!(poll.contains("mode=1") && poll.contains("--wait spin"));
        assert!(exit_floor_command(2_600_000).contains("tsc_khz=2600000"));
        let d = desc_exit_command(2_600_000);
        assert!(
            d.contains("desc=1 chunk=256k check=0 tsc_khz=2600000")
                && d.contains("ivc-rendezvous --socket"),
            "{d}"
        );
    }
}
