//! Running a [`Scenario`] on a [`VmmBackend`] and turning the protocol lines
//! into outcomes: a [`GuestOutcome`] per guest (the same type QEMU guests
//! give, so the same assertions apply), a [`HostOutcome`] per host command,
//! and for the nested backend what the L1 did.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::backend::VmmBackend;
use super::protocol::{self, EndStatus, Line, Role};
use super::scenario::Scenario;
use crate::error::{HarnessError, Result};
use crate::guest::{echo, parse_exit};
use crate::lines::for_each_line;
use crate::outcome::{format_tail, is_kernel_error, GuestOutcome};
use crate::qemu;
use crate::scratch::ScratchDir;

/// What the L1 gets on top of the guests' memory (its kernel, the initramfs
/// holding the payload, ivc-vmm processes).
const L1_BASE_MIB: u32 = 768;
/// vCPUs of the L1. One: QEMU 10.0.2's TCG breaks nested SVM when the L1
/// has two vCPUs running two L2 VMs. Measured with 16 L2 boots, two at a
/// time: L2 triple faults at random points of their boot (registers already
/// reset, so KVM saw a real shutdown) in up to 14 of 16, and the L1 kernel
/// itself died once ("BUG: TASK stack guard page was hit" in
/// `exc_page_fault`, in an ivc-vmm vCPU thread), which no guest can cause in
/// a correct machine; single-threaded TCG with two vCPUs hung instead. With
/// one L1 vCPU: 0 of 42 boots failed, with 1- and 2-vCPU L2 guests and
/// verbose consoles. Both L2 VMs then share one host core: correct, but
/// spinning waits between them cost a scheduler time slice
/// (docs/testing.md, "Tier 4").
const L1_CPUS: u32 = 1;
/// The longest the L1 may take from QEMU's start to the scenario's start
/// (measured ~6 s on an idle 2-core host; a loaded one is several times slower).
const L1_BOOT: Duration = Duration::from_secs(120);
/// Slack for the runner's own start and end (servers stopping, output draining).
const SLACK: Duration = Duration::from_secs(30);

/// How a host command ended.
#[derive(Debug, Clone)]
pub struct HostOutcome {
    /// Its name.
    pub name: String,
    /// Its stdout and stderr, lines joined by `\n`.
    pub output: String,
    /// How it ended; `None` if the run ended first.
    pub status: Option<EndStatus>,
    /// Killed at its timeout (or the run's).
    pub timed_out: bool,
    /// From its start to its end.
    pub elapsed: Duration,
}

impl HostOutcome {
    /// Panics with its output unless it exited with status 0.
    #[track_caller]
    pub fn assert_success(&self) {
        if self.status != Some(EndStatus::Exit(0)) || self.timed_out {
            let lines: Vec<&str> = self.output.lines().collect();
            panic!(
                "host command '{}' failed ({:?}, timed out: {})\n{}",
                self.name,
                self.status,
                self.timed_out,
                format_tail(&self.name, &lines, "")
            );
        }
    }
}

/// What the nested host did.
#[derive(Debug, Clone)]
pub struct L1Report {
    /// L1 uptime when its init started, seconds.
    pub init_s: Option<f64>,
    /// L1 uptime when `/dev/kvm` was ready, seconds.
    pub kvm_s: Option<f64>,
    /// Wall time from QEMU's start to `/dev/kvm` ready.
    pub ready_after: Option<Duration>,
    /// The L1 kernel console.
    pub console: String,
    /// How QEMU ended.
    pub vm_status: ExitStatus,
    /// The init's final status line, if it got there.
    pub init_exit: Option<i32>,
}

/// Everything one run produced.
#[derive(Debug, Clone)]
pub struct ScenarioOutcome {
    /// Where it ran ([`VmmBackend::describe`]).
    pub backend: String,
    /// One per guest, in scenario order. `vm_status` is ivc-vmm's status.
    pub guests: Vec<GuestOutcome>,
    /// One per host command, in order.
    pub hosts: Vec<HostOutcome>,
    /// The servers' output.
    pub servers: String,
    /// Errors of the runner or the L1 init.
    pub errors: Vec<String>,
    /// Whether the runner finished (its `done` line arrived).
    pub finished: bool,
    /// Whether the whole run hit its deadline and was killed.
    pub timed_out: bool,
    /// Lines no one claimed (L1 messages, garbage).
    pub other: Vec<String>,
    /// The nested host, when there was one.
    pub l1: Option<L1Report>,
    /// The runner's (or QEMU's) stderr.
    pub stderr: String,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl ScenarioOutcome {
    /// The guest called `name`.
    #[track_caller]
    pub fn guest(&self, name: &str) -> &GuestOutcome {
        self.guests
            .iter()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("no guest '{name}' in the outcome"))
    }

    /// The host command called `name`.
    #[track_caller]
    pub fn host(&self, name: &str) -> &HostOutcome {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host command '{name}' in the outcome"))
    }

    /// Whether the run itself worked: the runner finished without errors
    /// or timeout and the L1 reported no kernel trouble. Says nothing about
    /// what the guests did. The error is a short reason.
    pub fn check_ran(&self) -> std::result::Result<(), String> {
        let l1_trouble: Vec<&str> = self
            .l1
            .as_ref()
            .map(|l| l.console.lines().filter(|l| is_kernel_error(l)).collect())
            .unwrap_or_default();
        if self.finished && self.errors.is_empty() && !self.timed_out && l1_trouble.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the scenario did not run cleanly (finished: {}, timed out: {}, errors: {:?}, L1 kernel trouble: {:?})",
            self.finished, self.timed_out, self.errors, l1_trouble
        ))
    }

    /// Panics with [`ScenarioOutcome::report`] unless [`ScenarioOutcome::check_ran`].
    #[track_caller]
    pub fn assert_ran(&self) {
        if let Err(why) = self.check_ran() {
            panic!("{why}\n{}", self.report());
        }
    }

    /// The runner's view for failure messages: errors, unclaimed lines, the
    /// servers' output, the L1 console tail.
    pub fn report(&self) -> String {
        let mut s = format!("backend: {}\nelapsed: {:.1?}\n", self.backend, self.elapsed);
        for e in &self.errors {
            s.push_str(&format!("error: {e}\n"));
        }
        if !self.other.is_empty() {
            s.push_str(&format_tail("unclaimed lines", &self.other, ""));
            s.push('\n');
        }
        if !self.servers.is_empty() {
            let lines: Vec<&str> = self.servers.lines().collect();
            s.push_str(&format_tail("servers", &lines, ""));
            s.push('\n');
        }
        if let Some(l1) = &self.l1 {
            let lines: Vec<&str> = l1.console.lines().collect();
            s.push_str(&format!(
                "L1: QEMU {}, init exit {:?}\n",
                l1.vm_status, l1.init_exit
            ));
            s.push_str(&format_tail("L1 console", &lines, &self.stderr));
        } else if !self.stderr.trim().is_empty() {
            s.push_str(&format!(
                "---- runner stderr ----\n{}\n----",
                self.stderr.trim_end()
            ));
        }
        s
    }
}

/// Nested hosts take both cores; two at once would only starve each other.
static NESTED: Mutex<()> = Mutex::new(());

/// Runs `scenario` on `backend` and waits for it to finish.
///
/// A guest that fails is an outcome; `Err` is for the harness failing (the
/// scenario is invalid, a program cannot start).
pub fn run_scenario(backend: &VmmBackend, scenario: &Scenario) -> Result<ScenarioOutcome> {
    scenario.validate()?;
    let mut scenario = scenario.clone();
    if scenario.vmm_log.is_none() {
        scenario.vmm_log = std::env::var("IVC_VMM_LOG").ok().filter(|v| !v.is_empty());
    }
    let scenario = &scenario;
    let scratch = ScratchDir::new()?;
    let json = scratch.join("scenario.json");
    std::fs::write(&json, scenario.to_json()?)
        .map_err(|e| HarnessError::io(format!("writing {}", json.display()), e))?;
    let console = scratch.join("l1-console.log");
    // IVC_L1_MONITOR puts the monitor where a person can reach it.
    let monitor = std::env::var_os("IVC_L1_MONITOR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| scratch.join("l1-monitor.sock"), Into::into);

    let (program, args, deadline) = match backend {
        VmmBackend::Direct {
            vmm,
            scenario: bin,
            kernel,
            initrd,
        } => {
            let args: Vec<OsString> = vec![
                "--vmm".into(),
                vmm.into(),
                "--kernel".into(),
                kernel.into(),
                "--initrd".into(),
                initrd.into(),
                "--workdir".into(),
                scratch.join("run").into(),
                json.clone().into(),
            ];
            (bin.clone(), args, scenario.longest() + SLACK)
        }
        VmmBackend::Nested { qemu, image, .. } => (
            qemu.clone(),
            nested_args(image, scenario, &json, &console, &monitor)?,
            L1_BOOT + scenario.longest() + SLACK,
        ),
    };
    let _nested = backend
        .emulated()
        .then(|| NESTED.lock().unwrap_or_else(|p| p.into_inner()));

    eprintln!("[scenario] $ {}", qemu::shell_words(&program, &args));
    let mut cmd = Command::new(&program);
    cmd.args(&args);
    let started = Instant::now();
    let mut child = qemu::spawn(cmd).map_err(|source| HarnessError::Spawn {
        guest: "scenario".into(),
        program: program.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = stdout.map(|p| {
        thread::spawn(move || {
            for_each_line(p, |l| {
                let _ = tx.send((Instant::now(), l));
            })
        })
    });
    let err_reader = stderr.map(|p| {
        thread::spawn(move || {
            let mut s = String::new();
            for_each_line(p, |l| {
                echo("[scenario stderr] ", &l);
                s.push_str(&l);
                s.push('\n');
            });
            s
        })
    });

    let mut lines = Vec::new();
    let mut timed_out = false;
    let mut at_deadline = None;
    let end = started + deadline;
    loop {
        let now = Instant::now();
        if now >= end {
            timed_out = true;
            // A nested host that missed its deadline may be the emulator's
            // hang: keep what its vCPU and LAPIC looked like.
            if matches!(backend, VmmBackend::Nested { .. }) {
                at_deadline = Some(super::monitor::ask(&monitor, super::monitor::STUCK_L1));
            }
            let _ = qemu::kill_group(child.id());
            break;
        }
        match rx.recv_timeout(end - now) {
            Ok((at, l)) => {
                echo("", &l);
                lines.push((at, l));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Output ended (or the deadline passed): the process is exiting.
    let status = wait_bounded(&mut child, Duration::from_secs(10))?;
    // Lines that raced the kill.
    while let Ok((at, l)) = rx.try_recv() {
        lines.push((at, l));
    }
    if let Some(r) = out_reader {
        let _ = r.join();
    }
    let stderr = err_reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let elapsed = started.elapsed();

    let mut outcome = assemble(
        backend, scenario, &lines, started, status, timed_out, elapsed, stderr,
    );
    if let Some(l1) = outcome.l1.as_mut() {
        l1.console = std::fs::read(&console)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default();
        if let Some(state) = at_deadline {
            l1.console
                .push_str("[harness] the L1 missed its deadline; its QEMU monitor said:\n");
            l1.console.push_str(&state);
        }
    }
    Ok(outcome)
}

/// QEMU arguments of the nested host running `scenario`.
fn nested_args(
    image: &Path,
    scenario: &Scenario,
    json: &Path,
    console: &Path,
    monitor: &Path,
) -> Result<Vec<OsString>> {
    let guests_mib: u32 = scenario.guests.iter().map(|g| g.mem_mib).sum();
    let opt = |p: &Path| {
        crate::device::opt_value(p).map_err(|reason| HarnessError::InvalidSpec {
            guest: "scenario".into(),
            reason,
        })
    };
    let knob = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &str| args.push(a.into());
    // The L1: multi-threaded TCG (one host thread per vCPU), `-cpu max` for
    // SVM with nested paging, the i440FX machine with ACPI (the Debian kernel
    // uses it to power off and to find both CPUs). IVC_L1_ACCEL and
    // IVC_L1_CPUS override for experiments (docs/testing.md).
    let accel = knob("IVC_L1_ACCEL").unwrap_or_else(|| "tcg,thread=multi".into());
    let cpu = knob("IVC_L1_CPU_MODEL").unwrap_or_else(|| "max".into());
    for a in ["-M", "pc", "-accel", &accel, "-cpu", &cpu] {
        push(a);
    }
    push("-smp");
    push(&knob("IVC_L1_CPUS").unwrap_or_else(|| L1_CPUS.to_string()));
    push("-m");
    push(&(L1_BASE_MIB + guests_mib).to_string());
    for a in ["-nodefaults", "-display", "none", "-no-reboot"] {
        push(a);
    }
    // ttyS0: the data channel (scenario lines only); ttyS1: the L1 kernel console.
    push("-serial");
    push("stdio");
    push("-serial");
    push(&format!("file:{}", opt(console)?));
    // A QEMU monitor socket for looking inside a stuck L1 (`info registers`):
    // the runner asks it when the L1 misses its deadline.
    push("-monitor");
    push(&format!("unix:{},server,nowait", opt(monitor)?));
    push("-kernel");
    args.push(image.join("vmlinuz").into());
    args.push("-initrd".into());
    args.push(image.join("l1.cpio").into());
    args.push("-append".into());
    // quiet L1: its console is a file, but every line still costs TCG time.
    // IVC_L1_APPEND adds parameters (e.g. ivc_kvm_amd=npt=0, see the init).
    let mut append = "console=ttyS1 loglevel=4 panic=-1 mitigations=off".to_string();
    if let Some(extra) = knob("IVC_L1_APPEND") {
        append.push(' ');
        append.push_str(&extra);
    }
    args.push(append.into());
    args.push("-fw_cfg".into());
    args.push(format!("name=opt/ivc/scenario,file={}", opt(json)?).into());
    Ok(args)
}

fn wait_bounded(child: &mut std::process::Child, grace: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Ok(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = qemu::kill_group(child.id());
                return child
                    .wait()
                    .map_err(|e| HarnessError::io("reaping the scenario runner", e));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(HarnessError::io("waiting for the scenario runner", e)),
        }
    }
}

#[derive(Default)]
struct GuestLog {
    serial: Vec<String>,
    vmm: String,
    end: Option<protocol::Ended>,
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    backend: &VmmBackend,
    scenario: &Scenario,
    lines: &[(Instant, String)],
    started: Instant,
    status: ExitStatus,
    timed_out: bool,
    elapsed: Duration,
    stderr: String,
) -> ScenarioOutcome {
    let mut guests: Vec<(String, GuestLog)> = scenario
        .guests
        .iter()
        .map(|g| (g.name.clone(), GuestLog::default()))
        .collect();
    let mut hosts: Vec<(String, Vec<String>, Option<protocol::Ended>)> = scenario
        .host_commands
        .iter()
        .map(|h| (h.name.clone(), Vec::new(), None))
        .collect();
    let mut servers = String::new();
    let (mut errors, mut other) = (Vec::new(), Vec::new());
    let mut finished = false;
    let mut l1 = backend.emulated().then(|| L1Report {
        init_s: None,
        kvm_s: None,
        ready_after: None,
        console: String::new(),
        vm_status: status,
        init_exit: None,
    });
    for (at, raw) in lines {
        match protocol::parse(raw) {
            Line::Output { role, name, text } => match role {
                Role::Guest | Role::Vmm => match guests.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, g)) if role == Role::Guest => g.serial.push(text),
                    Some((_, g)) => {
                        g.vmm.push_str(&text);
                        g.vmm.push('\n');
                    }
                    None => other.push(raw.clone()),
                },
                Role::Server => {
                    servers.push_str(&format!("[{name}] {text}\n"));
                }
                Role::Host => match hosts.iter_mut().find(|(n, _, _)| *n == name) {
                    Some((_, out, _)) => out.push(text),
                    None => other.push(raw.clone()),
                },
            },
            Line::Ended(e) => match e.role {
                Role::Guest => match guests.iter_mut().find(|(n, _)| *n == e.name) {
                    Some((_, g)) => g.end = Some(e),
                    None => other.push(raw.clone()),
                },
                _ => match hosts.iter_mut().find(|(n, _, _)| *n == e.name) {
                    Some((_, _, end)) => *end = Some(e),
                    None => other.push(raw.clone()),
                },
            },
            Line::AgentError(e) => errors.push(e),
            Line::Done => finished = true,
            Line::L1Step { step, uptime_s, .. } => {
                if let Some(l1) = l1.as_mut() {
                    match step.as_str() {
                        "up" => l1.init_s = Some(uptime_s),
                        "kvm" => {
                            l1.kvm_s = Some(uptime_s);
                            l1.ready_after = Some(at.duration_since(started));
                        }
                        _ => {}
                    }
                }
            }
            Line::L1Error(e) => errors.push(format!("L1: {e}")),
            Line::L1Exit(n) => {
                if let Some(l1) = l1.as_mut() {
                    l1.init_exit = Some(n);
                }
            }
            Line::Other(l) => {
                if !l.trim().is_empty() {
                    other.push(l);
                }
            }
        }
    }
    let killed = EndStatus::Signal(libc::SIGKILL).to_exit_status();
    let guests = guests
        .into_iter()
        .map(|(name, g)| GuestOutcome {
            exit_status: g.serial.iter().rev().find_map(|l| parse_exit(l)),
            serial: g.serial.join("\n"),
            timed_out: g
                .end
                .as_ref()
                .map_or(timed_out || !finished, |e| e.timed_out),
            vm_status: g.end.as_ref().map_or(killed, |e| e.status.to_exit_status()),
            vm_stderr: g.vmm,
            elapsed: g.end.as_ref().map_or(elapsed, |e| e.elapsed),
            name,
        })
        .collect();
    let hosts = hosts
        .into_iter()
        .map(|(name, out, end)| HostOutcome {
            name,
            output: out.join("\n"),
            status: end.as_ref().map(|e| e.status),
            timed_out: end.as_ref().is_none_or(|e| e.timed_out),
            elapsed: end.as_ref().map_or(elapsed, |e| e.elapsed),
        })
        .collect();
    ScenarioOutcome {
        backend: backend.describe(),
        guests,
        hosts,
        servers,
        errors,
        finished,
        timed_out,
        other,
        l1,
        stderr,
        elapsed,
    }
}
