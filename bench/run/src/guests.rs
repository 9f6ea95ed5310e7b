//! Linux guests with ivc.ko under QEMU TCG: `shm-poll` (ivshmem-plain) and
//! `shm-irq` (ivshmem-doorbell through our rendezvous server). Guest A runs
//! `ivc-bench latency` then `send`, guest B `echo` then `recv`; the figures
//! come back as `IVC_BENCH_JSON` lines on A's serial console. `shm-irq+spin`
//! measures the doorbell channel's latency once more with the driver
//! spinning before it arms a doorbell (`irq_spin_us`).
//!
//! `shm-poll` and `shm-irq` then measure the mapped path too (`ivc-bench
//! --path mmap` on both guests, same wait mode, same guests, right after
//! the read/write figures): its records are the channels `shm-poll/mmap`
//! and `shm-irq/mmap`, which the summary shows beside the read/write ones
//! (`shm-irq+spin` its latency too, spinning as long as the driver does).
//!
//! Everything inside TCG is emulated instruction by instruction, so these
//! figures say how the channel behaves (which sizes cost what, where the
//! knee is), not how fast it is on hardware virtualization.

use std::fmt::Write as _;
use std::time::Duration;

use ivc_guest_harness::{run_guests, Device, GuestOutcome, GuestSpec, ScratchDir};
use ivc_rendezvous::{Server, ServerConfig};

use crate::progress::StderrToFile;
use crate::record::{env, guest_lines, SuiteReport};
use crate::suites::{Context, Plan, Suite};

/// Shared memory per channel: ample for a 64 KiB message in each ring.
const SHM_SIZE: u64 = 4 << 20;
/// Prints the driver's debugfs counters as `IVC_COUNTER name=value`.
pub(crate) const COUNTERS: &str = "for f in /sys/kernel/debug/ivc0/counters/*; do \
                        [ -f \"$f\" ] && echo \"IVC_COUNTER $(basename \"$f\")=$(cat \"$f\")\"; done\n";

/// Which shared-memory channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmVariant {
    /// Polled rings, no interrupts.
    Poll,
    /// Doorbells and MSI-X.
    Irq,
    /// Doorbells and MSI-X, the driver spinning [`IRQ_SPIN_US`] before it
    /// arms a doorbell and sleeps; latency only.
    IrqSpin,
}

/// The interleaved blocks of 64 B round trips (read/write, mapped, and
/// again), as the shell loop counts them; their records are "interleaved
/// block N: ..." (`record::GuestLine::into_record`).
pub const BLOCKS: &str = "1 2 3";

/// `irq_spin_us` of the `shm-irq+spin` suite: a little above a polled round
/// trip under TCG (5-10 us for small messages), so a quick answer is caught
/// spinning and only a slow one costs a doorbell.
pub const IRQ_SPIN_US: u32 = 50;

impl ShmVariant {
    /// Channel name.
    pub fn channel(self) -> &'static str {
        match self {
            ShmVariant::Poll => "shm-poll",
            ShmVariant::Irq => "shm-irq",
            ShmVariant::IrqSpin => "shm-irq+spin",
        }
    }
    /// `ivc.ko` parameters.
    fn module_params(self) -> String {
        match self {
            ShmVariant::Poll => "mode=1".into(),
            ShmVariant::Irq => "mode=2".into(),
            ShmVariant::IrqSpin => format!("mode=2 irq_spin_us={IRQ_SPIN_US}"),
        }
    }
    /// How the tools wait: the polled channel is measured polling from user
    /// space (the driver never sleeps); the doorbell channel blocking, so
    /// every wake-up is a doorbell interrupt.
    fn wait(self) -> &'static str {
        match self {
            ShmVariant::Poll => "spin",
            ShmVariant::Irq | ShmVariant::IrqSpin => "block",
        }
    }
}

fn list(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The two guests' shell scripts for `variant` under `plan`; `tsc_mhz` is
/// the host's TSC rate, if known.
pub fn scripts(variant: ShmVariant, plan: &Plan, tsc_mhz: Option<f64>) -> (String, String) {
    let (params, wait, label) = (variant.module_params(), variant.wait(), variant.channel());
    let s = plan.guest_seconds;
    let tsc = tsc_mhz.map_or(String::new(), |m| format!(" --tsc-mhz {m:.3}"));
    let insmod = format!("insmod /lib/ivc/ivc.ko {params} || exit 10\n");
    // The spinning variant is about latency; its throughput would be the
    // doorbell channel's.
    let transfers = variant != ShmVariant::IrqSpin;
    let calib = if wait == "spin" { " --calib" } else { "" };
    let mut a = insmod.clone();
    let _ = writeln!(
        a,
        "ivc-bench latency /dev/ivc0 --wait {wait} --label {label}{tsc} --seconds {s} --sizes {}{calib} || exit 11",
        list(&plan.sizes)
    );
    // The polled channel once more with blocking calls, the way an ordinary
    // program uses it: the driver spins (poll_spin_us), then sleeps.
    let also_block = variant == ShmVariant::Poll;
    if also_block {
        let _ = writeln!(
            a,
            "ivc-bench latency /dev/ivc0 --wait block --label {label}{tsc} --seconds {s} --sizes {} || exit 13",
            list(&plan.sizes)
        );
    }
    if transfers {
        let _ = writeln!(
            a,
            "ivc-bench send /dev/ivc0 --wait {wait} --label {label}{tsc} --seconds {s} --totals {} --packets {} || exit 12",
            list(&plan.totals),
            list(&plan.packets)
        );
    }
    // The mapped path, the same way; for `shm-irq+spin` spinning as long
    // before it sleeps as the driver does (latency only).
    let spin = if variant == ShmVariant::IrqSpin {
        format!(" --spin-us {IRQ_SPIN_US}")
    } else {
        String::new()
    };
    let _ = writeln!(
        a,
        "ivc-bench latency /dev/ivc0 --path mmap --wait {wait}{spin} --label {label}{tsc} --seconds {s} --sizes {} || exit 14",
        list(&plan.sizes)
    );
    if transfers {
        let _ = writeln!(
            a,
            "ivc-bench send /dev/ivc0 --path mmap --wait {wait} --label {label}{tsc} --seconds {s} --totals {} --packets {} || exit 15",
            list(&plan.totals),
            list(&plan.packets)
        );
    }
    // The 64 B round trip once more, the two paths in alternating blocks, so
    // each ratio compares figures taken side by side (placement noise on
    // this kind of host moves a figure within seconds); the summary reports
    // the ratio per block pair.
    let _ = writeln!(
        a,
        "for i in {BLOCKS}; do ivc-bench latency /dev/ivc0 --wait {wait} --label {label}#$i{tsc} --seconds {s} --sizes 64 || exit 16; \
         ivc-bench latency /dev/ivc0 --path mmap --wait {wait}{spin} --label {label}#$i{tsc} --seconds {s} --sizes 64 || exit 16; done"
    );
    a.push_str(COUNTERS);
    let mut b = insmod;
    let _ = writeln!(b, "ivc-bench echo /dev/ivc0 --wait {wait}{tsc} || exit 11");
    if also_block {
        let _ = writeln!(b, "ivc-bench echo /dev/ivc0 --wait block{tsc} || exit 13");
    }
    if transfers {
        let _ = writeln!(b, "ivc-bench recv /dev/ivc0 --wait {wait}{tsc} || exit 12");
    }
    let _ = writeln!(
        b,
        "ivc-bench echo /dev/ivc0 --path mmap --wait {wait}{spin}{tsc} || exit 14"
    );
    if transfers {
        let _ = writeln!(
            b,
            "ivc-bench recv /dev/ivc0 --path mmap --wait {wait}{tsc} || exit 15"
        );
    }
    let _ = writeln!(
        b,
        "for i in {BLOCKS}; do ivc-bench echo /dev/ivc0 --wait {wait}{tsc} || exit 16; \
         ivc-bench echo /dev/ivc0 --path mmap --wait {wait}{spin}{tsc} || exit 16; done"
    );
    b.push_str(COUNTERS);
    (a, b)
}

/// A shared-memory channel between two QEMU TCG guests.
pub struct QemuShm(pub ShmVariant);

impl Suite for QemuShm {
    fn name(&self) -> &'static str {
        self.0.channel()
    }
    fn environment(&self) -> String {
        env::TCG.into()
    }
    fn unavailable(&self, ctx: &Context) -> Option<String> {
        match &ctx.artifacts {
            Err(e) => Some(e.clone()),
            Ok(_) => ivc_guest_harness::qemu_available().err(),
        }
    }
    fn estimate(&self, plan: &Plan) -> Duration {
        plan.guest_estimate()
    }
    fn run(&self, ctx: &Context, report: &mut SuiteReport) -> Result<(), String> {
        let artifacts = ctx.artifacts.as_ref().map_err(Clone::clone)?;
        let scratch = ScratchDir::new().map_err(|e| e.to_string())?;
        let mut server = None;
        let device = match self.0 {
            ShmVariant::Poll => Device::IvshmemPlain {
                mem_path: scratch.join("shm"),
                size: SHM_SIZE,
            },
            ShmVariant::Irq | ShmVariant::IrqSpin => {
                let socket = scratch.join("ivshmem.sock");
                let s = Server::bind(ServerConfig::new(&socket, SHM_SIZE, 1))
                    .map_err(|e| format!("rendezvous server: {e}"))?
                    .spawn()
                    .map_err(|e| format!("rendezvous server: {e}"))?;
                server = Some(s);
                Device::IvshmemDoorbell { socket, vectors: 1 }
            }
        };
        let (a, b) = scripts(self.0, &ctx.plan, ctx.tsc_mhz);
        let timeout = ctx.plan.guest_estimate() * 3 + Duration::from_secs(60);
        let spec = |name: &str, cmd: String| {
            GuestSpec::new(name, cmd)
                .device(device.clone())
                .timeout(timeout)
        };
        let outcomes = {
            // The harness echoes every serial line on stderr; keep it in the
            // log, off the progress display.
            let _quiet = StderrToFile::new(&ctx.out_dir.join("guests.log"))
                .map_err(|e| format!("guest log: {e}"))?;
            run_guests(artifacts, [spec("a", a), spec("b", b)]).map_err(|e| e.to_string())?
        };
        if let Some(s) = server {
            let _ = s.stop();
        }
        for o in &outcomes {
            let path = ctx
                .out_dir
                .join(format!("{}-{}.serial.log", self.0.channel(), o.name));
            let _ = std::fs::write(&path, &o.serial);
            note_guest_lines(o, report);
        }
        let (lines, bad) = guest_lines(&outcomes[0].serial);
        report
            .records
            .extend(lines.into_iter().map(|l| l.into_record(self.0.channel())));
        for b in bad {
            report.notes.push(format!("unparsed result line: {b}"));
        }
        for o in &outcomes {
            check(o)?;
        }
        Ok(())
    }
}

/// Keeps what a guest said about itself as notes: the driver's counters,
/// the receiver's stall reports and its longest wait, the sender's stalls.
pub(crate) fn note_guest_lines(o: &GuestOutcome, report: &mut SuiteReport) {
    for l in o.serial.lines() {
        let l = l.trim();
        if let Some(c) = l.strip_prefix("IVC_COUNTER ") {
            report.notes.push(format!("guest {} counter {c}", o.name));
        }
        if let Some(r) = l.strip_prefix("ivc-bench recv: ") {
            report.notes.push(format!("guest {} receiver: {r}", o.name));
        }
        if let Some(r) = l.strip_prefix("ivc-bench send: ") {
            report.notes.push(format!("guest {} sender: {r}", o.name));
        }
    }
}

/// Fails with a short reason if a guest did not finish cleanly.
pub(crate) fn check(o: &GuestOutcome) -> Result<(), String> {
    let errors = o.kernel_errors();
    let why = if o.timed_out {
        "timed out".to_string()
    } else if o.exit_status != Some(0) {
        match o.exit_status {
            Some(10) => "insmod ivc.ko failed".into(),
            Some(s) => format!("the benchmark exited with status {s}"),
            None => "the guest ended without an exit status".into(),
        }
    } else if !errors.is_empty() {
        format!("kernel reported: {}", errors.join(" | "))
    } else {
        return Ok(());
    };
    let tail: Vec<&str> = o.serial.lines().rev().take(8).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "guest {}: {why}; last lines:\n      {}",
        o.name,
        tail.join("\n      ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_pair_the_roles_and_fit_the_command_line() {
        let plan = Plan::new(false, None);
        let (a, b) = scripts(ShmVariant::Poll, &plan, Some(2600.0));
        assert!(a.starts_with("insmod /lib/ivc/ivc.ko mode=1"));
        assert!(a.contains("ivc-bench latency /dev/ivc0 --wait spin"));
        assert!(a.contains("--calib"));
        assert!(a.contains("--totals 512,1024,4096,2097152,1073741824"));
        assert!(a.contains("--packets 1,32,4096,65536"));
        assert!(b.contains("ivc-bench echo /dev/ivc0 --wait spin"));
        // Polled: measured spinning, then blocking, in the same order on
        // both sides (each latency run pairs with one echo run).
        assert!(a.contains("latency /dev/ivc0 --wait block"));
        // (spin, block, mapped; then the two interleaved in a loop)
        assert_eq!(a.matches("ivc-bench latency").count(), 5);
        assert_eq!(b.matches("ivc-bench echo").count(), 5);
        assert!(b.find("--wait spin").unwrap_or(usize::MAX) < b.find("--wait block").unwrap_or(0));
        // Then the mapped path, spinning too, on both sides, last.
        assert!(a.contains("latency /dev/ivc0 --path mmap --wait spin"));
        assert!(a.contains("send /dev/ivc0 --path mmap --wait spin"));
        assert!(
            b.find("--wait block").unwrap_or(usize::MAX)
                < b.find("echo /dev/ivc0 --path mmap --wait spin")
                    .unwrap_or(0)
        );
        assert!(b.contains("recv /dev/ivc0 --path mmap --wait spin"));
        assert!(b.contains("ivc-bench recv"));
        assert!(a.contains("--tsc-mhz 2600.000"));
        let (a, b) = scripts(ShmVariant::Irq, &plan, None);
        assert!(!a.contains("--tsc-mhz"));
        assert!(a.contains("mode=2") && a.contains("--wait block") && !a.contains("--calib"));
        assert!(b.contains("--wait block"));
        assert_eq!(a.matches("ivc-bench latency").count(), 4);
        assert!(a.contains("ivc-bench send") && b.contains("ivc-bench recv"));
        assert!(a.contains("latency /dev/ivc0 --path mmap --wait block"));
        assert!(b.contains("echo /dev/ivc0 --path mmap --wait block"));
        // The spinning variant: the parameter, latency only.
        let (sa, sb) = scripts(ShmVariant::IrqSpin, &plan, None);
        assert!(sa.starts_with(&format!(
            "insmod /lib/ivc/ivc.ko mode=2 irq_spin_us={IRQ_SPIN_US} "
        )));
        assert!(sa.contains("--label shm-irq+spin") && sa.contains("--wait block"));
        assert!(!sa.contains("ivc-bench send") && !sb.contains("ivc-bench recv"));
        // Interleaved 64 B blocks, both paths, paired on both sides.
        for s in [&a, &sa] {
            assert!(s.contains("for i in 1 2 3; do ivc-bench latency /dev/ivc0 --wait"));
            assert!(s.contains("--label shm-irq"));
        }
        assert!(sb.contains("for i in 1 2 3; do ivc-bench echo /dev/ivc0 --wait block"));
        // Its mapped path spins as long as the driver before sleeping.
        let spin = format!("--path mmap --wait block --spin-us {IRQ_SPIN_US}");
        assert!(sa.contains(&format!("latency /dev/ivc0 {spin}")));
        assert!(sb.contains(&format!("echo /dev/ivc0 {spin}")));
        assert_eq!(sb.matches("ivc-bench echo").count(), 4);
        // base64 makes it 4/3 longer; the kernel command line holds 2047.
        for s in [a, b, sa, sb] {
            assert!(s.len() * 4 / 3 < 1500, "{}", s.len());
        }
    }
}
