//! The device-level figure ivc-vmm can give today: the cost of one port-I/O
//! VM exit through ivc-vmm, measured by the bare-metal test guest
//! (`vmm/test-guest`, `test=pio-cost`) with RDTSC, from CPL0 and CPL3. This
//! is the per-access price the `pio` channel pays before any device work;
//! the summary sets it beside the raw `KVM_EXIT_IO` floor. The channel
//! suites themselves (pio bytes per exit, shm ping-pong between two VMs,
//! doorbell latency) wait for the ivc-vmm devices ([`crate::suites::VmmDevices`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ivc_floors::{kvm_exit, Latency};

use crate::record::{Data, Record, SuiteReport};
use crate::suites::{Context, Plan, Suite};

/// Port accesses per guest run (after the guest's own 16 warm-up accesses).
const ACCESSES: u64 = 500;

/// The checkout's root (this crate is `bench/run`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// One `pio-cost` result line: (cpl, ns per access).
pub fn parse_pio_cost(line: &str) -> Option<(u32, f64)> {
    let rest = line.trim().strip_prefix("ivc-test-guest: pio-cost ")?;
    let field = |k: &str| {
        rest.split_whitespace()
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
    };
    Some((
        field("cpl")?.parse().ok()?,
        field("ns_per_op")?.parse().ok()?,
    ))
}

/// ivc-vmm and the test guest.
pub struct Binaries {
    /// `target/release/ivc-vmm`.
    pub vmm: PathBuf,
    /// The bare-metal test guest ELF.
    pub guest: PathBuf,
}

/// Builds ivc-vmm (release) and the test guest, incrementally (quick when up
/// to date), logging into the results directory. Where a build fails but an
/// older binary exists, that one is used and `notes` says so; where none
/// exists, the error says which build failed.
pub fn ensure_binaries(ctx: &Context, notes: &mut Vec<String>) -> Result<Binaries, String> {
    let root = repo_root();
    let vmm = root.join("target/release/ivc-vmm");
    let guest = std::env::var_os("IVC_TEST_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            root.join("vmm/test-guest/target/x86_64-unknown-none/release/ivc-test-guest")
        });
    let run_logged = |log_name: &str, cmd: &mut Command| -> Result<bool, String> {
        let log = ctx.out_dir.join(log_name);
        let l = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let l2 = l.try_clone().map_err(|e| e.to_string())?;
        let status = cmd
            .stdin(Stdio::null())
            .stdout(l)
            .stderr(l2)
            .status()
            .map_err(|e| format!("{log_name}: {e}"))?;
        Ok(status.success())
    };
    let vmm_ok = run_logged(
        "ivc-vmm-build.log",
        Command::new("cargo")
            .args(["build", "--release", "-p", "ivc-vmm", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join("target")),
    )?;
    let guest_ok = run_logged(
        "test-guest-build.log",
        &mut Command::new(root.join("scripts/build-test-guest.sh")),
    )?;
    for (ok, path, what, log) in [
        (vmm_ok, &vmm, "ivc-vmm", "ivc-vmm-build.log"),
        (guest_ok, &guest, "the test guest", "test-guest-build.log"),
    ] {
        let log = ctx.out_dir.join(log);
        match (ok, path.is_file()) {
            (true, true) => {}
            (false, true) => notes.push(format!(
                "building {what} failed (see {}); used the existing {}",
                log.display(),
                path.display()
            )),
            (_, false) => return Err(format!("building {what} failed (see {})", log.display())),
        }
    }
    Ok(Binaries { vmm, guest })
}

/// Port-I/O exit cost inside ivc-vmm.
pub struct VmmPioExit;

impl Suite for VmmPioExit {
    fn name(&self) -> &'static str {
        "vmm-pio-exit"
    }
    fn environment(&self) -> String {
        format!("ivc-vmm on /dev/kvm: {}", kvm_exit::describe_kvm())
    }
    fn unavailable(&self, _ctx: &Context) -> Option<String> {
        (!Path::new("/dev/kvm").exists()).then(|| "no /dev/kvm on this host".to_string())
    }
    fn estimate(&self, plan: &Plan) -> Duration {
        Duration::from_secs(if plan.quick { 3 } else { 8 })
    }
    fn run(&self, ctx: &Context, report: &mut SuiteReport) -> Result<(), String> {
        let bins = ensure_binaries(ctx, &mut report.notes)?;
        let Some(mhz) = ctx.tsc_mhz else {
            return Err("the host TSC rate is unknown, so guest cycles cannot be timed".into());
        };
        let runs = if ctx.plan.quick { 3 } else { 9 };
        let mut per_cpl: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..runs {
            let cmdline = format!(
                "test=pio-cost n={ACCESSES} tsc_khz={}",
                (mhz * 1000.0).round() as u64
            );
            let out = Command::new(&bins.vmm)
                .args(["run", "--mem", "64M", "--kernel"])
                .arg(&bins.guest)
                .args(["--cmdline", &cmdline])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running {}: {e}", bins.vmm.display()))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                let tail: Vec<&str> = stdout.lines().rev().take(5).collect();
                return Err(format!(
                    "ivc-vmm with the test guest ended with {}: {} {}",
                    out.status,
                    tail.join(" | "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            for (cpl, ns) in stdout.lines().filter_map(parse_pio_cost) {
                if let Some(v) = per_cpl.get_mut(cpl.min(3) as usize / 3) {
                    // Store the whole run's time; Latency divides by ACCESSES.
                    v.push((ns * ACCESSES as f64) as u64);
                }
            }
        }
        for (i, samples) in per_cpl.iter_mut().enumerate() {
            let cpl = if i == 0 { 0 } else { 3 };
            let stats = Latency::from_samples(0, ACCESSES, samples)
                .ok_or_else(|| format!("the test guest printed no pio-cost line for CPL{cpl}"))?;
            report.records.push(Record {
                channel: "ivc-vmm".into(),
                environment: self.environment(),
                what: format!("port-I/O exit round trip, guest CPL{cpl}"),
                data: Data::Latency {
                    stats,
                    verified: true,
                },
            });
        }
        report.notes.push(format!(
            "each sample is the mean of {ACCESSES} `out 0x80` accesses in one VM run ({runs} runs), timed by the guest with RDTSC at the host's {mhz:.1} MHz"
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pio_cost_lines() {
        let l = "ivc-test-guest: pio-cost op=out port=0x80 cpl=3 n=2000 cycles=375280450 cycles_per_op=187640.23 ns_per_op=72169.32";
        assert_eq!(parse_pio_cost(l), Some((3, 72169.32)));
        let no_ns =
            "ivc-test-guest: pio-cost op=out port=0x80 cpl=0 n=2000 cycles=1 cycles_per_op=1.0";
        assert_eq!(parse_pio_cost(no_ns), None);
        assert_eq!(parse_pio_cost("ivc-test-guest: done status=0"), None);
        assert!(repo_root().join("Cargo.toml").is_file());
    }
}
