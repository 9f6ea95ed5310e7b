//! ivc-scenario: runs a scenario of ivc-vmm guests, servers and host commands
//! on this machine and prints the tagged protocol of
//! `ivc_guest_harness::vmm::protocol` on stdout. The nested host's init runs
//! it inside the L1; the direct backend runs it on the test host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ivc_guest_harness::vmm::agent::{self, AgentConfig, Out};
use ivc_guest_harness::Scenario;

/// Runs a scenario (JSON, as the test harness writes it) and reports every
/// line and end of its processes on stdout.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The ivc-vmm binary.
    #[arg(long)]
    vmm: PathBuf,
    /// Guest kernel (PVH vmlinux).
    #[arg(long)]
    kernel: PathBuf,
    /// The same kernel as a bzImage, for scenarios that boot from it
    /// [default: bzImage beside --kernel].
    #[arg(long)]
    bzimage: Option<PathBuf>,
    /// Guest initramfs.
    #[arg(long)]
    initrd: PathBuf,
    /// Directory for the servers' sockets (created if missing).
    #[arg(long)]
    workdir: PathBuf,
    /// The scenario file.
    scenario: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let out = Out::new(std::io::stdout());
    let scenario = match std::fs::read_to_string(&args.scenario)
        .map_err(|e| format!("reading {}: {e}", args.scenario.display()))
        .and_then(|t| Scenario::from_json(&t).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            out.line(&ivc_guest_harness::vmm::protocol::agent_error(&e));
            out.line(ivc_guest_harness::vmm::protocol::DONE);
            return ExitCode::from(2);
        }
    };
    let bzimage = args
        .bzimage
        .or_else(|| args.kernel.parent().map(|d| d.join("bzImage")));
    let cfg = AgentConfig {
        vmm: args.vmm,
        kernel: args.kernel,
        bzimage,
        initrd: args.initrd,
        workdir: args.workdir,
        vmm_log: None,
    };
    match agent::run(&cfg, &scenario, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
