//! The benchmark suites and what they share.
//!
//! A suite is one environment running one set of measurements. The runner
//! asks each whether it can run here ([`Suite::unavailable`]) and says why
//! not when it cannot; nothing is ever estimated in place of a measurement.
//! New suites (the device-level benchmarks under ivc-vmm, Linux guests in
//! ivc-vmm on a host with hardware virtualization) implement [`Suite`] and
//! are added to [`all`].

use std::path::PathBuf;
use std::time::Duration;

use ivc_guest_harness::GuestArtifacts;

use crate::progress::Console;
use crate::record::SuiteReport;

/// How long and how much to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Short run (CI, a first look).
    pub quick: bool,
    /// Time per host floor measurement point.
    pub host_budget: Duration,
    /// Time per guest measurement point, seconds (`ivc-bench --seconds`).
    pub guest_seconds: f64,
    /// Ping-pong message sizes.
    pub sizes: Vec<u64>,
    /// Throughput totals.
    pub totals: Vec<u64>,
    /// Throughput packet sizes.
    pub packets: Vec<u64>,
}

impl Plan {
    /// The standard plan, or the short one.
    pub fn new(quick: bool, seconds: Option<f64>) -> Self {
        const K: u64 = 1024;
        Plan {
            quick,
            host_budget: Duration::from_millis(if quick { 200 } else { 1000 }),
            guest_seconds: seconds.unwrap_or(if quick { 0.3 } else { 1.0 }),
            sizes: vec![1, 64, 512, 4 * K, 16 * K, 64 * K],
            totals: vec![512, K, 4 * K, 2 * K * K, K * K * K],
            packets: vec![1, 32, 4 * K, 64 * K],
        }
    }

    /// Rough wall time of one guest pair running the whole grid: boot, the
    /// latency sizes (twice: `shm-poll` is measured spinning and blocking),
    /// and per packet size the probes and the one transfer
    /// that fills its budget (the others are much shorter).
    pub fn guest_estimate(&self) -> Duration {
        let s = self.guest_seconds;
        let points =
            2.0 * self.sizes.len() as f64 * s + self.packets.len() as f64 * (1.6 * s + 0.2);
        Duration::from_secs_f64(5.0 + points)
    }
}

/// What every suite gets.
pub struct Context {
    /// The plan.
    pub plan: Plan,
    /// Where the user sees progress.
    pub console: Console,
    /// The results directory.
    pub out_dir: PathBuf,
    /// The guest kernel and initramfs, or why they are not there.
    pub artifacts: Result<GuestArtifacts, String>,
    /// The host's TSC rate, handed to guest tools (see `ivc_floors::tsc`).
    pub tsc_mhz: Option<f64>,
}

/// One suite.
pub trait Suite {
    /// Short name (`--only` takes these).
    fn name(&self) -> &'static str;
    /// Where it runs, for labels.
    fn environment(&self) -> String;
    /// Why it cannot run here, or `None` if it can.
    fn unavailable(&self, ctx: &Context) -> Option<String>;
    /// Rough duration, for the progress display.
    fn estimate(&self, plan: &Plan) -> Duration;
    /// Runs, adding records and notes to `report`; an error marks the suite
    /// failed (records gathered so far are kept).
    fn run(&self, ctx: &Context, report: &mut SuiteReport) -> Result<(), String>;
}

/// Every suite, in the order they run.
pub fn all() -> Vec<Box<dyn Suite>> {
    use crate::floors::{HostFloors, TcpLoopback};
    use crate::guests::{QemuShm, ShmVariant};
    vec![
        Box::new(HostFloors),
        Box::new(TcpLoopback),
        Box::new(QemuShm(ShmVariant::Poll)),
        Box::new(QemuShm(ShmVariant::Irq)),
        Box::new(QemuShm(ShmVariant::IrqSpin)),
        Box::new(crate::vmm_exit::VmmPioExit),
        Box::new(crate::vmm_devices::VmmDevices),
        Box::new(crate::vmm_linux::LinuxInVmm),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names_are_unique() {
        let names: Vec<&str> = all().iter().map(|s| s.name()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
    }

    #[test]
    fn plans_cover_the_issue_grid() {
        let p = Plan::new(false, None);
        for t in [512, 1024, 4096, 2 << 20, 1 << 30] {
            assert!(p.totals.contains(&t));
        }
        for k in [1, 32, 4096, 65536] {
            assert!(p.packets.contains(&k));
        }
        assert_eq!(p.sizes.first(), Some(&1));
        assert_eq!(p.sizes.last(), Some(&65536));
        let q = Plan::new(true, Some(0.1));
        assert!(q.quick && q.guest_seconds == 0.1);
        assert!(q.guest_estimate() < p.guest_estimate());
    }
}
