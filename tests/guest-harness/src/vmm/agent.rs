//! Executes a [`Scenario`] where ivc-vmm runs (the `ivc-scenario` program):
//! starts the servers, then the guests (each its own ivc-vmm process) and the
//! host commands, forwards every line they print with a tag, enforces the
//! timeouts and kill rules, and reports how each one ended
//! ([`protocol`](super::protocol)).
//!
//! It judges nothing: whether a guest did what a test wanted is for the test
//! to decide from the lines. It fails (status 1, after an `@ivc-agent error`
//! line) only when it cannot run the scenario at all.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::protocol::{self, EndStatus, Ended, Role};
use super::scenario::{HostCommand, KernelImage, Scenario, VmmGuest, FAIL_FAST_GRACE_MS};
use crate::guest::parse_exit;

/// How long a server gets to create its socket.
const SERVER_START: Duration = Duration::from_secs(10);
/// How long a stopped server gets before SIGKILL.
const SERVER_STOP: Duration = Duration::from_secs(5);
/// How long the output of an ended process may take to drain.
const DRAIN: Duration = Duration::from_secs(5);
/// Main loop period.
const TICK: Duration = Duration::from_millis(10);

/// Where the programs and the guest kernel are.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The ivc-vmm binary.
    pub vmm: PathBuf,
    /// Guest kernel (PVH vmlinux).
    pub kernel: PathBuf,
    /// The same kernel as a bzImage, for scenarios that boot from it.
    pub bzimage: Option<PathBuf>,
    /// Guest initramfs.
    pub initrd: PathBuf,
    /// Sockets go here (created if missing).
    pub workdir: PathBuf,
    /// `IVC_VMM_LOG` for the servers (the scenario's `vmm_log`).
    pub vmm_log: Option<String>,
}

/// The output stream shared by every forwarding thread: one `write` per line,
/// so lines never interleave.
#[derive(Clone)]
pub struct Out(Arc<Mutex<Box<dyn Write + Send>>>);

impl Out {
    /// Wraps a writer.
    pub fn new(w: impl Write + Send + 'static) -> Self {
        Out(Arc::new(Mutex::new(Box::new(w))))
    }

    /// Writes one line.
    pub fn line(&self, line: &str) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        // Nothing sensible to do if the harness stopped reading.
        let _ = w.write_all(buf.as_bytes());
        let _ = w.flush();
    }
}

/// A kill rule's state: armed when its line shows up. A fail-fast trigger
/// has no pattern: it arms on an `IVC_EXIT=<n>` line with n != 0.
struct Trigger {
    pattern: Option<String>,
    after: Duration,
    armed_at: Mutex<Option<Instant>>,
}

impl Trigger {
    fn matches(&self, line: &str) -> bool {
        match &self.pattern {
            Some(p) => line.contains(p.as_str()),
            None => parse_exit(line).is_some_and(|status| status != 0),
        }
    }

    fn arm(&self) {
        let mut armed = self.armed_at.lock().unwrap_or_else(|p| p.into_inner());
        armed.get_or_insert_with(Instant::now);
    }

    fn fired(&self) -> bool {
        self.armed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() >= self.after)
    }
}

/// A started guest or host command.
struct Running {
    role: Role,
    name: String,
    child: Child,
    /// Kill the whole process group (host commands start their own programs).
    group: bool,
    started: Instant,
    timeout: Duration,
    triggers: Vec<Arc<Trigger>>,
    readers: Vec<JoinHandle<()>>,
    timed_out: bool,
    killed: bool,
}

/// Runs `scenario`, writing the protocol to `out`. `Err` means the scenario
/// could not run (after an error line was written).
pub fn run(cfg: &AgentConfig, scenario: &Scenario, out: &Out) -> Result<(), String> {
    let result = run_inner(cfg, scenario, out);
    if let Err(e) = &result {
        out.line(&protocol::agent_error(e));
    }
    out.line(protocol::DONE);
    result
}

fn run_inner(cfg: &AgentConfig, scenario: &Scenario, out: &Out) -> Result<(), String> {
    scenario.validate().map_err(|e| e.to_string())?;
    let kernel = guest_kernel(cfg, scenario.kernel)?;
    for (what, p) in [
        ("ivc-vmm", cfg.vmm.as_path()),
        ("guest kernel", kernel),
        ("guest initramfs", cfg.initrd.as_path()),
    ] {
        if !scenario.guests.is_empty() && !p.is_file() {
            return Err(format!("{what} {} not found", p.display()));
        }
    }
    let rendezvous = rendezvous_binary(cfg);
    if !scenario.servers.is_empty() && !rendezvous.is_file() {
        return Err(format!("ivc-rendezvous {} not found", rendezvous.display()));
    }
    std::fs::create_dir_all(&cfg.workdir)
        .map_err(|e| format!("creating {}: {e}", cfg.workdir.display()))?;

    let mut servers = Vec::new();
    let result = (|| {
        let cfg = &AgentConfig {
            vmm_log: scenario.vmm_log.clone(),
            ..cfg.clone()
        };
        for s in &scenario.servers {
            servers.push(start_server(
                cfg,
                s.name.as_str(),
                s.shm_size,
                s.vectors,
                out,
            )?);
        }
        let sockets: HashMap<&str, (String, u32)> = scenario
            .servers
            .iter()
            .map(|s| (s.name.as_str(), (socket_path(cfg, &s.name), s.vectors)))
            .collect();
        run_processes(cfg, scenario, &sockets, out)
    })();
    for (name, mut child, readers) in servers {
        stop(&mut child, SERVER_STOP);
        join_all(readers);
        if let Ok(Some(st)) = child.try_wait() {
            if !matches!(
                EndStatus::of(st),
                EndStatus::Exit(0) | EndStatus::Signal(libc::SIGTERM)
            ) {
                out.line(&protocol::output(
                    Role::Server,
                    &name,
                    &format!("ended with {}", EndStatus::of(st)),
                ));
            }
        }
    }
    result
}

/// The rendezvous server program: `ivc-rendezvous`, installed next to
/// ivc-vmm (cargo's target directory, `/opt/ivc/bin` in the nested host).
fn rendezvous_binary(cfg: &AgentConfig) -> PathBuf {
    cfg.vmm.with_file_name("ivc-rendezvous")
}

fn socket_path(cfg: &AgentConfig, server: &str) -> String {
    cfg.workdir
        .join(format!("{server}.sock"))
        .to_string_lossy()
        .into_owned()
}

type Server = (String, Child, Vec<JoinHandle<()>>);

fn start_server(
    cfg: &AgentConfig,
    name: &str,
    size: u64,
    vectors: u32,
    out: &Out,
) -> Result<Server, String> {
    let socket = socket_path(cfg, name);
    let _ = std::fs::remove_file(&socket);
    let mut cmd = Command::new(rendezvous_binary(cfg));
    cmd.args([
        "--socket",
        &socket,
        "--shm-size",
        &size.to_string(),
        "--vectors",
        &vectors.to_string(),
    ]);
    if let Some(level) = &cfg.vmm_log {
        cmd.env("IVC_VMM_LOG", level);
    }
    let mut child = spawn(cmd, false).map_err(|e| format!("starting server {name}: {e}"))?;
    let readers = forward_both(
        &mut child,
        Role::Server,
        Role::Server,
        name,
        Vec::new(),
        out,
    );
    let deadline = Instant::now() + SERVER_START;
    while !Path::new(&socket).exists() {
        if let Ok(Some(st)) = child.try_wait() {
            join_all(readers);
            return Err(format!(
                "server {name} exited with {} before listening",
                EndStatus::of(st)
            ));
        }
        if Instant::now() >= deadline {
            stop(&mut child, Duration::ZERO);
            join_all(readers);
            return Err(format!(
                "server {name} did not create {socket} within {SERVER_START:?}"
            ));
        }
        thread::sleep(TICK);
    }
    Ok((name.to_string(), child, readers))
}

fn run_processes(
    cfg: &AgentConfig,
    scenario: &Scenario,
    sockets: &HashMap<&str, (String, u32)>,
    out: &Out,
) -> Result<(), String> {
    let mut s = Schedule::new(scenario);
    loop {
        s.start_due(cfg, scenario, sockets, out)?;
        if s.all_done() {
            return Ok(());
        }
        s.cancel_after_failure(out);
        s.reap_and_police(out)?;
        thread::sleep(TICK);
    }
}

/// Where every guest and host command of a scenario stands: still to start,
/// running, or ended. Guests start by their delay and predecessor; host
/// commands one at a time, in order.
struct Schedule<'a> {
    t0: Instant,
    waiting: Vec<&'a VmmGuest>,
    host_queue: VecDeque<&'a HostCommand>,
    running: Vec<Running>,
    ended_guests: Vec<String>,
    host_busy: bool,
    /// One trigger every guest arms when its command fails; it ends them
    /// all (`fail_fast`).
    failed: Option<Arc<Trigger>>,
}

impl<'a> Schedule<'a> {
    fn new(scenario: &'a Scenario) -> Self {
        let t0 = Instant::now();
        let mut waiting: Vec<&VmmGuest> = scenario.guests.iter().collect();
        waiting.sort_by_key(|g| g.start_after_ms);
        let failed = scenario.fail_fast.then(|| {
            Arc::new(Trigger {
                pattern: None,
                after: Duration::from_millis(FAIL_FAST_GRACE_MS),
                armed_at: Mutex::new(None),
            })
        });
        Schedule {
            t0,
            waiting,
            host_queue: scenario.host_commands.iter().collect(),
            running: Vec::new(),
            ended_guests: Vec::new(),
            host_busy: false,
            failed,
        }
    }

    /// Starts the guests that are due and, if none runs, the next host
    /// command.
    fn start_due(
        &mut self,
        cfg: &AgentConfig,
        scenario: &Scenario,
        sockets: &HashMap<&str, (String, u32)>,
        out: &Out,
    ) -> Result<(), String> {
        let mut i = 0;
        while i < self.waiting.len() {
            let g = self.waiting[i];
            let due = self.t0.elapsed() >= Duration::from_millis(g.start_after_ms)
                && g.after_guest
                    .as_ref()
                    .is_none_or(|p| self.ended_guests.contains(p));
            if due {
                self.waiting.remove(i);
                let failed = self.failed.clone();
                self.running
                    .push(start_guest(cfg, g, scenario, sockets, failed, out)?);
            } else {
                i += 1;
            }
        }
        if !self.host_busy {
            if let Some(c) = self.host_queue.pop_front() {
                self.running.push(start_host(c, out)?);
                self.host_busy = true;
            }
        }
        Ok(())
    }

    fn all_done(&self) -> bool {
        self.waiting.is_empty() && self.host_queue.is_empty() && self.running.is_empty()
    }

    /// Once the fail-fast trigger fired, guests that have not started never
    /// will: say so.
    fn cancel_after_failure(&mut self, out: &Out) {
        if self.failed.as_ref().is_some_and(|f| f.fired()) && !self.waiting.is_empty() {
            for g in self.waiting.drain(..) {
                out.line(&protocol::agent_error(&format!(
                    "guest {} not started: another guest failed (fail_fast)",
                    g.name
                )));
            }
        }
    }

    /// Reports what has ended; times out or kills what must stop.
    fn reap_and_police(&mut self, out: &Out) -> Result<(), String> {
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            match r.child.try_wait() {
                Ok(Some(status)) => {
                    let r = self.running.swap_remove(i);
                    self.ended(r, status, out);
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for {}: {e}", r.name)),
            }
            police(r, out);
            i += 1;
        }
        Ok(())
    }

    /// `r` exited with `status`: drain its output, then say how it ended.
    fn ended(&mut self, mut r: Running, status: ExitStatus, out: &Out) {
        let elapsed = r.started.elapsed();
        join_all(std::mem::take(&mut r.readers));
        if r.role == Role::Host {
            self.host_busy = false;
        } else {
            self.ended_guests.push(r.name.clone());
        }
        out.line(&protocol::ended(&Ended {
            role: r.role,
            name: r.name,
            status: EndStatus::of(status),
            timed_out: r.timed_out,
            killed: r.killed,
            elapsed,
        }));
    }
}

/// Kills `r` at its timeout (after saying where it was stuck) or when one
/// of its kill rules fired; once.
fn police(r: &mut Running, out: &Out) {
    if r.timed_out || r.killed {
        return;
    }
    if r.started.elapsed() >= r.timeout {
        r.timed_out = true;
        // Where each thread waits says which layer stalled: a
        // vCPU in KVM_RUN (the guest), in pipe_write (output
        // backpressure), in a futex (a lock).
        let role = match r.role {
            Role::Guest => Role::Vmm,
            other => other,
        };
        if r.role == Role::Guest {
            ask_for_vcpu_state(&r.child);
            for l in l1_kernel_clues()
                .into_iter()
                .chain(l1_trace_of(r.child.id()))
            {
                out.line(&protocol::output(role, &r.name, &l));
            }
        }
        for l in where_stuck(r.child.id()) {
            out.line(&protocol::output(role, &r.name, &l));
        }
        kill(&r.child, r.group);
    } else if r.triggers.iter().any(|t| t.fired()) {
        r.killed = true;
        kill(&r.child, r.group);
    }
}

/// The kernel file a scenario's guests boot.
fn guest_kernel(cfg: &AgentConfig, image: KernelImage) -> Result<&Path, String> {
    match image {
        KernelImage::Vmlinux => Ok(&cfg.kernel),
        KernelImage::BzImage => cfg
            .bzimage
            .as_deref()
            .ok_or_else(|| "the scenario boots a bzImage, but no --bzimage was given".to_string()),
    }
}

fn start_guest(
    cfg: &AgentConfig,
    g: &VmmGuest,
    scenario: &Scenario,
    sockets: &HashMap<&str, (String, u32)>,
    failed: Option<Arc<Trigger>>,
    out: &Out,
) -> Result<Running, String> {
    let mut cmd = Command::new(&cfg.vmm);
    if let Some(level) = &scenario.vmm_log {
        cmd.env("IVC_VMM_LOG", level);
    }
    cmd.arg("run")
        .arg("--kernel")
        .arg(guest_kernel(cfg, scenario.kernel)?)
        .arg("--initrd")
        .arg(&cfg.initrd)
        .args([
            "--mem",
            &format!("{}M", g.mem_mib),
            "--cpus",
            &g.cpus.to_string(),
        ])
        .args(["--cmdline", &g.cmdline]);
    for d in &g.devices {
        let (socket, vectors) = sockets
            .get(d.server())
            .ok_or_else(|| format!("guest {}: no server {}", g.name, d.server()))?;
        cmd.arg("--ivc").arg(d.vmm_arg(socket, *vectors));
    }
    let triggers: Vec<Arc<Trigger>> = scenario
        .kills
        .iter()
        .filter(|k| k.guest == g.name)
        .map(|k| {
            Arc::new(Trigger {
                pattern: Some(k.line.clone()),
                after: Duration::from_millis(k.after_ms),
                armed_at: Mutex::new(None),
            })
        })
        .chain(failed)
        .collect();
    if let Some(cpu) = g.pin_cpu {
        // SAFETY: runs in the child between fork and exec; sched_setaffinity
        // is a plain system call on a stack-local set.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu as usize, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child =
        spawn(cmd, false).map_err(|e| format!("starting ivc-vmm for guest {}: {e}", g.name))?;
    let readers = forward_both(
        &mut child,
        Role::Guest,
        Role::Vmm,
        &g.name,
        triggers.clone(),
        out,
    );
    Ok(Running {
        role: Role::Guest,
        name: g.name.clone(),
        child,
        group: false,
        started: Instant::now(),
        timeout: Duration::from_millis(g.timeout_ms),
        triggers,
        readers,
        timed_out: false,
        killed: false,
    })
}

fn start_host(c: &HostCommand, out: &Out) -> Result<Running, String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&c.command);
    let mut child =
        spawn(cmd, true).map_err(|e| format!("starting host command {}: {e}", c.name))?;
    let readers = forward_both(&mut child, Role::Host, Role::Host, &c.name, Vec::new(), out);
    Ok(Running {
        role: Role::Host,
        name: c.name.clone(),
        child,
        group: true,
        started: Instant::now(),
        timeout: Duration::from_millis(c.timeout_ms),
        triggers: Vec::new(),
        readers,
        timed_out: false,
        killed: false,
    })
}

/// Starts a child with piped output that dies with this process (the thread
/// that spawns, which is the main thread, lives as long as the process).
fn spawn(mut cmd: Command, own_group: bool) -> io::Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        cmd.process_group(0);
    }
    crate::qemu::die_with_parent(&mut cmd);
    cmd.spawn()
}

fn forward_both(
    child: &mut Child,
    out_role: Role,
    err_role: Role,
    name: &str,
    triggers: Vec<Arc<Trigger>>,
    out: &Out,
) -> Vec<JoinHandle<()>> {
    let mut v = Vec::new();
    if let Some(p) = child.stdout.take() {
        v.push(forward(p, out_role, name, triggers, out));
    }
    if let Some(p) = child.stderr.take() {
        v.push(forward(p, err_role, name, Vec::new(), out));
    }
    v
}

fn forward(
    pipe: impl Read + Send + 'static,
    role: Role,
    name: &str,
    triggers: Vec<Arc<Trigger>>,
    out: &Out,
) -> JoinHandle<()> {
    let (name, out) = (name.to_string(), out.clone());
    thread::spawn(move || {
        crate::lines::for_each_line(pipe, |text| {
            // The 8250 console starts some lines with a stray \r.
            let text = text.trim_start_matches('\r');
            for t in &triggers {
                if t.matches(text) {
                    t.arm();
                }
            }
            out.line(&protocol::output(role, &name, text));
        })
    })
}

fn join_all(readers: Vec<JoinHandle<()>>) {
    // A pipe held open by a grandchild must not hang the run: give the
    // readers a bounded time, then leave them.
    let deadline = Instant::now() + DRAIN;
    for r in readers {
        while !r.is_finished() && Instant::now() < deadline {
            thread::sleep(TICK);
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
}

/// Asks the guest's ivc-vmm twice, a second apart, to log each vCPU's
/// state (SIGUSR1, `cpu::state_report`): run state, IF, the local APIC's
/// IRR/ISR/PPR and timer, the TSC deadline. Two reports tell a guest that
/// still runs (its TSC and RIP move, the timer re-arms) from one that waits
/// for an interrupt that never comes. The lines reach the report through
/// the VMM's stderr, which is forwarded until the kill.
fn ask_for_vcpu_state(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    for pause in [Duration::from_secs(1), Duration::from_millis(300)] {
        // SAFETY: kill(2) with plain integers; the child is unreaped, so
        // its pid cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
        thread::sleep(pause);
    }
}

/// What the nested host's own kernel said about its clocks, timers and KVM:
/// the layer under a stuck guest's timer (a TSC marked unstable changes how
/// KVM keeps a guest's TSC; a soft lockup says the host's own timer stalled).
fn l1_kernel_clues() -> Vec<String> {
    let Ok(o) = Command::new("dmesg").output() else {
        return vec!["L1 kernel: dmesg could not run".into()];
    };
    let keep = [
        "tsc",
        "clocksource",
        "kvm",
        "watchdog",
        "lockup",
        "hrtimer",
        "rcu",
    ];
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            keep.iter().any(|k| l.contains(k))
        })
        .map(|l| format!("L1 kernel: {l}"))
        .collect()
}

/// What the L1's trace buffer holds about the vCPU threads of process
/// `pid`, when the nested init turned tracing on (`ivc_l1_trace=1`): the
/// starts and expiries of the hrtimers that emulate the L2's local-APIC
/// timer, KVM's halt wake-ups and the threads' scheduling. The last
/// [`TRACE_LINES`] events of those threads, then the buffer's own last
/// lines (what everybody else did just before).
fn l1_trace_of(pid: u32) -> Vec<String> {
    const TRACE_LINES: usize = 300;
    const TAIL: usize = 40;
    let dir = Path::new("/sys/kernel/tracing");
    let on = std::fs::read_to_string(dir.join("tracing_on")).unwrap_or_default();
    if on.trim() != "1" {
        return Vec::new();
    }
    let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("vcpu"))
        })
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect();
    let text = std::fs::read_to_string(dir.join("trace")).unwrap_or_default();
    let events: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let mine: Vec<&str> = events
        .iter()
        .copied()
        .filter(|l| {
            tids.iter()
                .any(|t| l.contains(&format!("-{t} ")) || l.contains(&format!("pid={t} ")))
        })
        .collect();
    let mut out = vec![format!(
        "L1 trace: {} events in the buffer, {} of vCPU thread(s) {tids:?}; their last {TRACE_LINES}:",
        events.len(),
        mine.len()
    )];
    let from = mine.len().saturating_sub(TRACE_LINES);
    out.extend(
        mine[from..]
            .iter()
            .map(|l| format!("L1 trace: {}", l.trim())),
    );
    out.push(format!("L1 trace: the buffer's last {TAIL} events:"));
    let from = events.len().saturating_sub(TAIL);
    out.extend(
        events[from..]
            .iter()
            .map(|l| format!("L1 trace: {}", l.trim())),
    );
    out
}

/// One line per thread of process `pid`: name, state, the kernel function
/// it waits in and the top of its kernel stack (readable as root, which the
/// nested host's agent is; elsewhere the stack is left out).
fn where_stuck(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![format!("timed out; /proc/{pid}/task unreadable")];
    };
    let mut lines = Vec::new();
    for t in tasks.flatten() {
        let dir = t.path();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        // The state is the field after the parenthesised name.
        let stat = read("stat");
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .unwrap_or("?");
        let stack: Vec<String> = read("stack")
            .lines()
            .take(6)
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect();
        lines.push(format!(
            "timed out: thread {} ({}) state {state} wchan {} stack [{}]",
            t.file_name().to_string_lossy(),
            read("comm").trim(),
            read("wchan").trim(),
            stack.join(" < ")
        ));
    }
    lines
}

fn kill(child: &Child, group: bool) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    let target = if group { -pid } else { pid };
    // SAFETY: kill(2) with plain integers; the child is not reaped yet, so
    // its pid (and group id) cannot have been reused.
    unsafe { libc::kill(target, libc::SIGKILL) };
}

/// SIGTERM, then SIGKILL after `grace`; reaps.
fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: as in kill(); the child is unreaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(TICK);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::protocol::{parse, Line};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Sink {
        fn lines(&self) -> Vec<Line> {
            let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            String::from_utf8_lossy(&bytes).lines().map(parse).collect()
        }
    }

    fn cfg() -> AgentConfig {
        AgentConfig {
            vmm: "/nonexistent/ivc-vmm".into(),
            kernel: "/nonexistent/vmlinux".into(),
            bzimage: None,
            initrd: "/nonexistent/initrd".into(),
            workdir: std::env::temp_dir().join(format!("ivc-agent-test-{}", std::process::id())),
            vmm_log: None,
        }
    }

    fn ended(lines: &[Line], name: &str) -> Ended {
        lines
            .iter()
            .find_map(|l| match l {
                Line::Ended(e) if e.name == name => Some(e.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no end line for {name}: {lines:?}"))
    }

    #[test]
    fn host_commands_run_in_order_with_output_status_and_timeouts() {
        let s = Scenario::new()
            .host_command(
                "one",
                "echo out; echo err >&2; exit 3",
                Duration::from_secs(20),
            )
            .host_command("two", "sleep 30 & sleep 30", Duration::from_millis(300));
        let sink = Sink::default();
        let started = Instant::now();
        run(&cfg(), &s, &Out::new(sink.clone())).expect("runs");
        // The timed-out command's background child went with its group.
        assert!(started.elapsed() < Duration::from_secs(10));
        let lines = sink.lines();
        let out = |t: &str| Line::Output {
            role: Role::Host,
            name: "one".into(),
            text: t.into(),
        };
        assert!(
            lines.contains(&out("out")) && lines.contains(&out("err")),
            "{lines:?}"
        );
        let one = ended(&lines, "one");
        assert_eq!((one.status, one.timed_out), (EndStatus::Exit(3), false));
        let two = ended(&lines, "two");
        assert_eq!((two.status, two.timed_out), (EndStatus::Signal(9), true));
        // Before the kill, where it waited.
        assert!(
            lines.iter().any(
                |l| matches!(l, Line::Output { role: Role::Host, name, text }
                if name == "two" && text.starts_with("timed out: thread") && text.contains("(sh)"))
            ),
            "{lines:?}"
        );
        let pos = |n: &str| {
            lines
                .iter()
                .position(|l| matches!(l, Line::Ended(e) if e.name == n))
        };
        assert!(pos("one") < pos("two"), "run one after the other");
        assert_eq!(lines.last(), Some(&Line::Done));
    }

    #[test]
    fn a_scenario_that_cannot_run_says_why() {
        let s = Scenario::new()
            .server("s0", 1 << 20, 1)
            .guest(
                crate::GuestSpec::new("a", "true").device(crate::Device::Ivc(
                    crate::vmm::IvcDevice::Pio {
                        server: "s0".into(),
                    },
                )),
            )
            .expect("valid");
        let sink = Sink::default();
        let err = run(&cfg(), &s, &Out::new(sink.clone())).expect_err("no ivc-vmm");
        assert!(err.contains("ivc-vmm"), "{err}");
        let lines = sink.lines();
        assert!(
            matches!(&lines[0], Line::AgentError(e) if e.contains("not found")),
            "{lines:?}"
        );
        assert_eq!(lines.last(), Some(&Line::Done));
    }

    /// Stand-ins for ivc-vmm and ivc-rendezvous: the server creates its
    /// socket (`--socket PATH`) and waits; `ivc-vmm run` prints its
    /// arguments, runs the guest command (base64 in `ivc_cmd=`) with `sh`
    /// and prints `IVC_EXIT=`, like the guest init.
    fn fake_vmm(dir: &Path) -> PathBuf {
        let path = dir.join("fake-vmm");
        std::fs::create_dir_all(dir).expect("mkdir");
        let server = dir.join("ivc-rendezvous");
        std::fs::write(&server, "#!/bin/sh\ntouch \"$2\"; exec sleep 1000\n")
            .expect("write fake server");
        std::fs::write(
            &path,
            r#"#!/bin/sh
case "$1" in
run)
    echo "ARGS $*"
    while [ $# -gt 0 ]; do [ "$1" = --cmdline ] && cmd="$2"; shift; done
    echo "${cmd##*ivc_cmd=}" | base64 -d >"$0.$$.sh"
    sh "$0.$$.sh"; st=$?; rm -f "$0.$$.sh"
    echo "IVC_EXIT=$st" ;;
esac
"#,
        )
        .expect("write fake vmm");
        use std::os::unix::fs::PermissionsExt;
        for p in [&path, &server] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        path
    }

    fn fake_cfg(name: &str) -> AgentConfig {
        let dir = std::env::temp_dir().join(format!("ivc-agent-{name}-{}", std::process::id()));
        let vmm = fake_vmm(&dir);
        AgentConfig {
            kernel: vmm.clone(),
            bzimage: Some(vmm.clone()),
            initrd: vmm.clone(),
            vmm,
            workdir: dir.join("run"),
            vmm_log: None,
        }
    }

    fn output_of(lines: &[Line], guest: &str) -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Output {
                    role: Role::Guest,
                    name,
                    text,
                } if name == guest => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn guests_get_their_devices_start_in_order_and_are_killed_by_rules() {
        use crate::{Device, GuestSpec};
        let cfg = fake_cfg("rules");
        let s = Scenario::new()
            .server("s0", 1 << 20, 2)
            .guest(GuestSpec::new("a", "echo hello").device(Device::ivc_pio("s0")))
            .and_then(|s| s.guest_after_exit(GuestSpec::new("c", "echo after-a"), "a"))
            .and_then(|s| s.guest(GuestSpec::new("v", "echo ready; sleep 60")))
            .expect("valid")
            .kill_when("v", "ready", Duration::from_millis(200));
        let sink = Sink::default();
        let started = Instant::now();
        run(&cfg, &s, &Out::new(sink.clone())).expect("runs");
        assert!(started.elapsed() < Duration::from_secs(20));
        let lines = sink.lines();
        let a = output_of(&lines, "a");
        let socket = cfg.workdir.join("s0.sock");
        assert!(
            a[0].contains(&format!("--ivc pio,socket={},vectors=2", socket.display())),
            "{a:?}"
        );
        assert!(a.contains(&"hello".to_string()) && a.contains(&"IVC_EXIT=0".to_string()));
        let pos = |pred: &dyn Fn(&Line) -> bool| lines.iter().position(pred);
        let a_end = pos(&|l| matches!(l, Line::Ended(e) if e.name == "a"));
        let c_out = pos(&|l| matches!(l, Line::Output { name, .. } if name == "c"));
        assert!(a_end < c_out, "c starts after a ended: {lines:?}");
        let v = ended(&lines, "v");
        assert!(
            v.killed && !v.timed_out && v.status == EndStatus::Signal(libc::SIGKILL),
            "{v:?}"
        );
        assert_eq!(lines.last(), Some(&Line::Done));
        let _ = std::fs::remove_dir_all(cfg.workdir.parent().expect("dir"));
    }

    #[test]
    fn fail_fast_stops_the_others_when_one_fails() {
        use crate::GuestSpec;
        let cfg = fake_cfg("failfast");
        let s = Scenario::new()
            .guest(GuestSpec::new("bad", "sleep 1; exit 3"))
            .and_then(|s| s.guest(GuestSpec::new("stuck", "sleep 60")))
            .and_then(|s| s.guest_after_exit(GuestSpec::new("never", "true"), "stuck"))
            .expect("valid")
            .fail_fast();
        let sink = Sink::default();
        let started = Instant::now();
        run(&cfg, &s, &Out::new(sink.clone())).expect("runs");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "{took:?}");
        let lines = sink.lines();
        assert!(output_of(&lines, "bad").contains(&"IVC_EXIT=3".to_string()));
        let stuck = ended(&lines, "stuck");
        assert!(stuck.killed, "{stuck:?}");
        assert!(
            lines
                .iter()
                .any(|l| matches!(l, Line::AgentError(e) if e.contains("never not started"))),
            "{lines:?}"
        );
        let _ = std::fs::remove_dir_all(cfg.workdir.parent().expect("dir"));
    }
}
