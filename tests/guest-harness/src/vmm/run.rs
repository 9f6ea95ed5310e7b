//! Running a [`Scenario`] on a [`VmmBackend`] and turning the protocol lines
//! into outcomes: a [`GuestOutcome`] per guest (the same type QEMU guests
//! give, so the same assertions apply), a [`HostOutcome`] per host command,
//! and for the nested backend what the L1 did.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, Mutex};
use std::thread::{self, JoinHandle};
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
    let scenario = &effective(scenario)?;
    let files = RunFiles::new(scenario)?;
    let (program, args, deadline) = runner_command(backend, scenario, &files)?;
    let _nested = backend
        .emulated()
        .then(|| NESTED.lock().unwrap_or_else(|p| p.into_inner()));

    eprintln!("[scenario] $ {}", qemu::shell_words(&program, &args));
    let started = Instant::now();
    let mut runner = Runner::spawn(&program, &args)?;
    let (mut lines, timed_out, at_deadline) = runner.collect(started + deadline, || {
        // A nested host that missed its deadline may be the emulator's
        // hang: keep what its vCPU and LAPIC looked like.
        matches!(backend, VmmBackend::Nested { .. })
            .then(|| super::monitor::ask(&files.monitor, super::monitor::STUCK_L1))
    });
    let (status, stderr) = runner.finish(&mut lines)?;
    let end = RunEnd {
        status,
        timed_out,
        elapsed: started.elapsed(),
        stderr,
    };
    let mut outcome = assemble(backend, scenario, &lines, started, end);
    if let Some(l1) = outcome.l1.as_mut() {
        attach_l1_console(l1, &files.console, at_deadline);
    }
    Ok(outcome)
}

/// The scenario as it runs: validated, with `IVC_VMM_LOG` as its `vmm_log`
/// unless it names one itself.
fn effective(scenario: &Scenario) -> Result<Scenario> {
    scenario.validate()?;
    let mut scenario = scenario.clone();
    if scenario.vmm_log.is_none() {
        scenario.vmm_log = std::env::var("IVC_VMM_LOG").ok().filter(|v| !v.is_empty());
    }
    Ok(scenario)
}

/// The files of one run, in a scratch directory that lives as long as this.
struct RunFiles {
    scratch: ScratchDir,
    /// The scenario, for the runner.
    json: PathBuf,
    /// Where the nested host's kernel console goes.
    console: PathBuf,
    /// The nested host's QEMU monitor socket.
    monitor: PathBuf,
}

impl RunFiles {
    /// Writes the scenario's JSON and names the nested host's files.
    fn new(scenario: &Scenario) -> Result<Self> {
        let scratch = ScratchDir::new()?;
        let json = scratch.join("scenario.json");
        std::fs::write(&json, scenario.to_json()?)
            .map_err(|e| HarnessError::io(format!("writing {}", json.display()), e))?;
        let console = scratch.join("l1-console.log");
        // IVC_L1_MONITOR puts the monitor where a person can reach it.
        let monitor = std::env::var_os("IVC_L1_MONITOR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| scratch.join("l1-monitor.sock"), Into::into);
        Ok(RunFiles {
            scratch,
            json,
            console,
            monitor,
        })
    }
}

/// The program that runs `scenario` on `backend` (ivc-scenario, or QEMU
/// with the nested host), its arguments, and how long the run may take.
fn runner_command(
    backend: &VmmBackend,
    scenario: &Scenario,
    files: &RunFiles,
) -> Result<(PathBuf, Vec<OsString>, Duration)> {
    Ok(match backend {
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
                files.scratch.join("run").into(),
                files.json.clone().into(),
            ];
            (bin.clone(), args, scenario.longest() + SLACK)
        }
        VmmBackend::Nested { qemu, image, .. } => (
            qemu.clone(),
            nested_args(image, scenario, &files.json, &files.console, &files.monitor)?,
            L1_BOOT + scenario.longest() + SLACK,
        ),
    })
}

/// The started runner and the threads reading its output: stdout line by
/// line into a channel (with the time each arrived), stderr into a string.
struct Runner {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    out_reader: Option<JoinHandle<()>>,
    err_reader: Option<JoinHandle<String>>,
}

impl Runner {
    fn spawn(program: &Path, args: &[OsString]) -> Result<Runner> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let mut child = qemu::spawn(cmd).map_err(|source| HarnessError::Spawn {
            guest: "scenario".into(),
            program: program.to_path_buf(),
            source,
        })?;
        let (tx, lines) = mpsc::channel::<(Instant, String)>();
        let out_reader = child.stdout.take().map(|p| {
            thread::spawn(move || {
                for_each_line(p, |l| {
                    let _ = tx.send((Instant::now(), l));
                })
            })
        });
        let err_reader = child.stderr.take().map(|p| {
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
        Ok(Runner {
            child,
            lines,
            out_reader,
            err_reader,
        })
    }

    /// Echoes and keeps the output lines until the output ends or `end`
    /// passes. At `end` it asks `at_deadline` for a last look and kills the
    /// runner's process group. Returns the lines, whether `end` passed, and
    /// what `at_deadline` said.
    fn collect(
        &mut self,
        end: Instant,
        at_deadline: impl FnOnce() -> Option<String>,
    ) -> (Vec<(Instant, String)>, bool, Option<String>) {
        let mut lines = Vec::new();
        loop {
            let now = Instant::now();
            if now >= end {
                let state = at_deadline();
                let _ = qemu::kill_group(self.child.id());
                return (lines, true, state);
            }
            match self.lines.recv_timeout(end - now) {
                Ok((at, l)) => {
                    echo("", &l);
                    lines.push((at, l));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return (lines, false, None),
            }
        }
    }

    /// Reaps the runner (its output has ended, or it was killed: it is
    /// exiting), adds the lines that raced the kill to `lines`, and returns
    /// its status and stderr.
    fn finish(mut self, lines: &mut Vec<(Instant, String)>) -> Result<(ExitStatus, String)> {
        let status = wait_bounded(&mut self.child, Duration::from_secs(10))?;
        while let Ok((at, l)) = self.lines.try_recv() {
            lines.push((at, l));
        }
        if let Some(r) = self.out_reader {
            let _ = r.join();
        }
        let stderr = self
            .err_reader
            .and_then(|r| r.join().ok())
            .unwrap_or_default();
        Ok((status, stderr))
    }
}

/// Puts the nested host's kernel console in its report, and what its QEMU
/// monitor said if it missed its deadline.
fn attach_l1_console(l1: &mut L1Report, console: &Path, at_deadline: Option<String>) {
    l1.console = std::fs::read(console)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default();
    if let Some(state) = at_deadline {
        l1.console
            .push_str("[harness] the L1 missed its deadline; its QEMU monitor said:\n");
        l1.console.push_str(&state);
    }
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

/// How the runner ended.
struct RunEnd {
    status: ExitStatus,
    /// The run hit its deadline and was killed.
    timed_out: bool,
    elapsed: Duration,
    stderr: String,
}

/// The protocol lines sorted by whom they are about.
struct Collected {
    guests: Vec<(String, GuestLog)>,
    hosts: Vec<(String, Vec<String>, Option<protocol::Ended>)>,
    servers: String,
    errors: Vec<String>,
    other: Vec<String>,
    finished: bool,
    l1: Option<L1Report>,
}

impl Collected {
    /// Room for every guest and host command of `scenario`, and an L1
    /// report if `backend` has a nested host.
    fn new(backend: &VmmBackend, scenario: &Scenario, status: ExitStatus) -> Self {
        Collected {
            guests: scenario
                .guests
                .iter()
                .map(|g| (g.name.clone(), GuestLog::default()))
                .collect(),
            hosts: scenario
                .host_commands
                .iter()
                .map(|h| (h.name.clone(), Vec::new(), None))
                .collect(),
            servers: String::new(),
            errors: Vec::new(),
            other: Vec::new(),
            finished: false,
            l1: backend.emulated().then(|| L1Report {
                init_s: None,
                kvm_s: None,
                ready_after: None,
                console: String::new(),
                vm_status: status,
                init_exit: None,
            }),
        }
    }

    /// Files one line that arrived at `at` (the run started at `started`).
    fn take(&mut self, at: Instant, raw: &str, started: Instant) {
        match protocol::parse(raw) {
            Line::Output { role, name, text } => self.take_output(role, &name, text, raw),
            Line::Ended(e) => self.take_ended(e, raw),
            Line::AgentError(e) => self.errors.push(e),
            Line::Done => self.finished = true,
            Line::L1Step { step, uptime_s, .. } => {
                if let Some(l1) = self.l1.as_mut() {
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
            Line::L1Error(e) => self.errors.push(format!("L1: {e}")),
            Line::L1Exit(n) => {
                if let Some(l1) = self.l1.as_mut() {
                    l1.init_exit = Some(n);
                }
            }
            Line::Other(l) => {
                if !l.trim().is_empty() {
                    self.other.push(l);
                }
            }
        }
    }

    /// Forwarded output: a guest's serial line, its ivc-vmm's stderr, a
    /// server's or a host command's output.
    fn take_output(&mut self, role: Role, name: &str, text: String, raw: &str) {
        match role {
            Role::Guest | Role::Vmm => match self.guests.iter_mut().find(|(n, _)| n == name) {
                Some((_, g)) if role == Role::Guest => g.serial.push(text),
                Some((_, g)) => {
                    g.vmm.push_str(&text);
                    g.vmm.push('\n');
                }
                None => self.other.push(raw.to_string()),
            },
            Role::Server => {
                self.servers.push_str(&format!("[{name}] {text}\n"));
            }
            Role::Host => match self.hosts.iter_mut().find(|(n, _, _)| n == name) {
                Some((_, out, _)) => out.push(text),
                None => self.other.push(raw.to_string()),
            },
        }
    }

    /// A guest or host command ended.
    fn take_ended(&mut self, e: protocol::Ended, raw: &str) {
        match e.role {
            Role::Guest => match self.guests.iter_mut().find(|(n, _)| *n == e.name) {
                Some((_, g)) => g.end = Some(e),
                None => self.other.push(raw.to_string()),
            },
            _ => match self.hosts.iter_mut().find(|(n, _, _)| *n == e.name) {
                Some((_, _, end)) => *end = Some(e),
                None => self.other.push(raw.to_string()),
            },
        }
    }
}

/// The outcome of one run from the lines it printed and how it ended.
fn assemble(
    backend: &VmmBackend,
    scenario: &Scenario,
    lines: &[(Instant, String)],
    started: Instant,
    end: RunEnd,
) -> ScenarioOutcome {
    let mut c = Collected::new(backend, scenario, end.status);
    for (at, raw) in lines {
        c.take(*at, raw, started);
    }
    // A guest without an end line counts as timed out when the run was cut
    // short (deadline, or the runner never finished).
    let cut_short = end.timed_out || !c.finished;
    ScenarioOutcome {
        backend: backend.describe(),
        guests: guest_outcomes(c.guests, cut_short, end.elapsed),
        hosts: host_outcomes(c.hosts, end.elapsed),
        servers: c.servers,
        errors: c.errors,
        finished: c.finished,
        timed_out: end.timed_out,
        other: c.other,
        l1: c.l1,
        stderr: end.stderr,
        elapsed: end.elapsed,
    }
}

/// One [`GuestOutcome`] per guest; one that never ended was killed with
/// the run.
fn guest_outcomes(
    guests: Vec<(String, GuestLog)>,
    cut_short: bool,
    elapsed: Duration,
) -> Vec<GuestOutcome> {
    let killed = EndStatus::Signal(libc::SIGKILL).to_exit_status();
    guests
        .into_iter()
        .map(|(name, g)| GuestOutcome {
            exit_status: g.serial.iter().rev().find_map(|l| parse_exit(l)),
            serial: g.serial.join("\n"),
            timed_out: g.end.as_ref().map_or(cut_short, |e| e.timed_out),
            vm_status: g.end.as_ref().map_or(killed, |e| e.status.to_exit_status()),
            vm_stderr: g.vmm,
            elapsed: g.end.as_ref().map_or(elapsed, |e| e.elapsed),
            name,
        })
        .collect()
}

/// One [`HostOutcome`] per host command; one that never ended timed out.
fn host_outcomes(
    hosts: Vec<(String, Vec<String>, Option<protocol::Ended>)>,
    elapsed: Duration,
) -> Vec<HostOutcome> {
    hosts
        .into_iter()
        .map(|(name, out, end)| HostOutcome {
            name,
            output: out.join("\n"),
            status: end.as_ref().map(|e| e.status),
            timed_out: end.as_ref().is_none_or(|e| e.timed_out),
            elapsed: end.as_ref().map_or(elapsed, |e| e.elapsed),
        })
        .collect()
}
