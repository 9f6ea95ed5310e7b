//! A running guest: the QEMU process, the threads that collect its output,
//! and waiting for it.

use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::artifacts::GuestArtifacts;
use crate::error::{HarnessError, Result};
use crate::outcome::{format_tail, GuestOutcome};
use crate::qemu;
use crate::spec::GuestSpec;

/// The line the guest init prints when the command ends.
pub const EXIT_MARKER: &str = "IVC_EXIT=";

/// Set to `1` to stream every guest's output to stderr as it arrives, even
/// when the test harness captures output.
pub const VERBOSE_ENV: &str = "IVC_HARNESS_VERBOSE";

/// How long to wait for the output pipes to drain after QEMU has exited.
/// Bounded because a process outside our reach could hold a pipe open.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How often [`Guest::wait`] checks whether QEMU has exited, at most. Output
/// ending wakes it earlier.
const POLL: Duration = Duration::from_millis(50);

/// A guest running in QEMU. Dropping it kills QEMU.
///
/// ```no_run
/// # use ivc_guest_harness::*;
/// # use std::time::Duration;
/// # fn main() -> Result<()> {
/// let Some(artifacts) = require_guest_env() else { return Ok(()) };
/// let mut guest = Guest::spawn(&artifacts, GuestSpec::new("a", "echo ready; sleep 1"))?;
/// guest.wait_for_line("ready", Duration::from_secs(60))?;
/// let outcome = guest.wait()?;
/// outcome.assert_success();
/// # Ok(())
/// # }
/// ```
pub struct Guest {
    name: String,
    child: Child,
    /// `Some` once the QEMU process has been reaped; from then on its pid
    /// (and process group id) may belong to someone else and is never signalled.
    status: Option<ExitStatus>,
    output: Arc<Output>,
    started: Instant,
    timeout: Duration,
    timed_out: bool,
    /// Index of the first serial line [`Guest::wait_for_line`] still searches.
    cursor: usize,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("status", &self.status)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Output collected by the reader threads.
#[derive(Default)]
struct Output {
    log: Mutex<Log>,
    changed: Condvar,
}

#[derive(Default)]
struct Log {
    serial: Vec<String>,
    exit_status: Option<i32>,
    vm_stderr: String,
    serial_open: bool,
    stderr_open: bool,
}

impl Output {
    fn lock(&self) -> MutexGuard<'_, Log> {
        // A reader thread that panicked leaves consistent data behind (every
        // update is a single push), so poisoning is not a reason to fail.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `done(log)` holds, for at most [`DRAIN_GRACE`]: used once
    /// the writers are gone (or going), so only a pipe held open by some
    /// unrelated process could make it wait that long.
    fn drained<'a>(
        &'a self,
        mut log: MutexGuard<'a, Log>,
        done: impl Fn(&Log) -> bool,
    ) -> MutexGuard<'a, Log> {
        let deadline = Instant::now() + DRAIN_GRACE;
        while !done(&log) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            log = self
                .changed
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        log
    }

    fn wait_for_stderr<'a>(&'a self, log: MutexGuard<'a, Log>) -> MutexGuard<'a, Log> {
        self.drained(log, |log| !log.stderr_open)
    }
}

impl Guest {
    /// Boots a guest as `spec` says. Returns once QEMU has started; the guest
    /// is still booting. The spec's timeout runs from now.
    pub fn spawn(artifacts: &GuestArtifacts, spec: GuestSpec) -> Result<Guest> {
        let args = qemu::qemu_args(artifacts, &spec)?;
        let name = spec.name.clone();
        // Captured by the test harness (shown for failing tests only): the
        // exact command to reproduce the run by hand.
        eprintln!("[{name}] $ {}", qemu::shell_words(artifacts.qemu(), &args));
        let mut cmd = Command::new(artifacts.qemu());
        cmd.args(&args);
        let mut child = qemu::spawn(cmd).map_err(|source| HarnessError::Spawn {
            guest: name.clone(),
            program: artifacts.qemu().to_path_buf(),
            source,
        })?;
        let started = Instant::now();

        let output = Arc::new(Output::default());
        {
            let mut log = output.lock();
            log.serial_open = true;
            log.stderr_open = true;
        }
        let readers = child
            .stdout
            .take()
            .zip(child.stderr.take())
            .ok_or_else(|| io::Error::other("QEMU's output was not piped"))
            .and_then(|(stdout, stderr)| {
                start_reader(&name, Stream::Serial, stdout, &output)?;
                start_reader(&name, Stream::QemuStderr, stderr, &output)
            });
        let mut guest = Guest {
            name,
            child,
            status: None,
            output,
            started,
            timeout: spec.timeout,
            timed_out: false,
            cursor: 0,
        };
        if let Err(e) = readers {
            guest.kill()?;
            return Err(HarnessError::io("starting the output reader threads", e));
        }
        Ok(guest)
    }

    /// The spec's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The serial output so far, lines joined by `\n`.
    pub fn serial(&self) -> String {
        self.output.lock().serial.join("\n")
    }

    /// Waits up to `timeout` for a serial line containing `pattern` and
    /// returns that line.
    ///
    /// Successive calls move forward through the output: each searches from
    /// the line after the previous match, so waiting for the same pattern
    /// twice finds two different lines. Fails, quoting the serial tail, if
    /// the guest ends or `timeout` passes first; the guest keeps running
    /// after a timeout here (its own limit is enforced by [`Guest::wait`]).
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut log = self.output.lock();
        let mut searched = self.cursor;
        loop {
            if let Some(i) = log.serial[searched..]
                .iter()
                .position(|line| line.contains(pattern))
            {
                let index = searched + i;
                self.cursor = index + 1;
                return Ok(log.serial[index].clone());
            }
            searched = log.serial.len();
            if !log.serial_open {
                // QEMU's stderr says why a guest ended early (a bad device
                // option, a server that went away): let it arrive.
                log = self.output.wait_for_stderr(log);
                return Err(HarnessError::GuestEnded {
                    guest: self.name.clone(),
                    pattern: pattern.to_string(),
                    context: format_tail(&self.name, &log.serial, &log.vm_stderr),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HarnessError::LineTimeout {
                    guest: self.name.clone(),
                    pattern: pattern.to_string(),
                    timeout,
                    context: format_tail(&self.name, &log.serial, &log.vm_stderr),
                });
            }
            log = self
                .output
                .changed
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for the guest to finish, up to the spec's timeout counted from
    /// spawn; on timeout kills QEMU and reports `timed_out`. A guest that
    /// fails is an outcome, not an error: assert on it.
    pub fn wait(mut self) -> Result<GuestOutcome> {
        let deadline = self.started + self.timeout;
        while self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.status = Some(status),
                Ok(None) => {
                    let now = Instant::now();
                    if now >= deadline {
                        self.timed_out = true;
                        self.kill()?;
                        break;
                    }
                    // Sleep until output changes (QEMU closing its stdout when
                    // it exits) or the next poll.
                    let log = self.output.lock();
                    if log.serial_open {
                        let _ = self
                            .output
                            .changed
                            .wait_timeout(log, POLL.min(deadline - now));
                    } else {
                        drop(log);
                        thread::sleep(Duration::from_millis(5).min(deadline - now));
                    }
                }
                Err(e) => return Err(HarnessError::io("waiting for QEMU", e)),
            }
        }
        let elapsed = self.started.elapsed();
        let vm_status = self
            .status
            .ok_or_else(|| HarnessError::io("waiting for QEMU", io::Error::other("not reaped")))?;

        // Every writer is gone; the readers finish as soon as they have
        // taken what is left in the pipes.
        let log = self.output.drained(self.output.lock(), |log| {
            !log.serial_open && !log.stderr_open
        });
        Ok(GuestOutcome {
            name: self.name.clone(),
            exit_status: log.exit_status,
            serial: log.serial.join("\n"),
            timed_out: self.timed_out,
            vm_status,
            vm_stderr: log.vm_stderr.clone(),
            elapsed,
        })
    }

    /// Kills QEMU (and anything in its process group) now and reaps it.
    /// [`Guest::wait`] afterwards returns at once with what was collected.
    pub fn kill(&mut self) -> Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        qemu::kill_group(self.child.id())
            .map_err(|e| HarnessError::io(format!("killing QEMU of '{}'", self.name), e))?;
        let status = self
            .child
            .wait()
            .map_err(|e| HarnessError::io(format!("reaping QEMU of '{}'", self.name), e))?;
        self.status = Some(status);
        Ok(())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Nothing to report to from a destructor (it may run during a
            // panic); at least reap what we could kill.
            if qemu::kill_group(self.child.id()).is_err() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// Boots every spec at once, waits for all of them, and returns their
/// outcomes in the same order. If one cannot be started, the ones already
/// started are killed and the error is returned.
pub fn run_guests(
    artifacts: &GuestArtifacts,
    specs: impl IntoIterator<Item = GuestSpec>,
) -> Result<Vec<GuestOutcome>> {
    let guests = specs
        .into_iter()
        .map(|spec| Guest::spawn(artifacts, spec))
        .collect::<Result<Vec<_>>>()?;
    // Deadlines count from each spawn, so waiting in turn loses nothing.
    guests.into_iter().map(Guest::wait).collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Serial,
    QemuStderr,
}

fn start_reader(
    name: &str,
    stream: Stream,
    pipe: impl Read + Send + 'static,
    output: &Arc<Output>,
) -> io::Result<()> {
    let prefix = match stream {
        Stream::Serial => format!("[{name}] "),
        Stream::QemuStderr => format!("[{name} qemu] "),
    };
    let output = Arc::clone(output);
    // The thread inherits the test's output capture, so its eprintln! lines
    // appear with the test's own output when the test fails.
    thread::Builder::new()
        .name(format!("ivc-guest-{name}-{}", stream.label()))
        .spawn(move || read_lines(pipe, stream, &prefix, &output))
        .map(drop)
}

impl Stream {
    fn label(self) -> &'static str {
        match self {
            Stream::Serial => "serial",
            Stream::QemuStderr => "stderr",
        }
    }
}

fn read_lines(pipe: impl Read, stream: Stream, prefix: &str, output: &Output) {
    crate::lines::for_each_line(pipe, |line| {
        echo(prefix, &line);
        let mut log = output.lock();
        match stream {
            Stream::Serial => {
                if let Some(status) = parse_exit(&line) {
                    log.exit_status = Some(status);
                }
                log.serial.push(line);
            }
            Stream::QemuStderr => {
                log.vm_stderr.push_str(&line);
                log.vm_stderr.push('\n');
            }
        }
        drop(log);
        output.changed.notify_all();
    });
    let mut log = output.lock();
    match stream {
        Stream::Serial => log.serial_open = false,
        Stream::QemuStderr => log.stderr_open = false,
    }
    drop(log);
    output.changed.notify_all();
}

/// Shows one line of guest output: live on stderr with `IVC_HARNESS_VERBOSE=1`,
/// otherwise through the test's output capture.
pub(crate) fn echo(prefix: &str, line: &str) {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    let verbose = *VERBOSE.get_or_init(|| std::env::var(VERBOSE_ENV).is_ok_and(|v| v == "1"));
    if verbose {
        // io::stderr() directly is not captured by the test harness.
        let _ = writeln!(io::stderr().lock(), "{prefix}{line}");
    } else {
        eprintln!("{prefix}{line}");
    }
}

/// The status in an `IVC_EXIT=<status>` line. The marker may follow other
/// text on the same line, because kernel messages can interleave with the
/// init's output on the shared console.
pub(crate) fn parse_exit(line: &str) -> Option<i32> {
    let rest = &line[line.rfind(EXIT_MARKER)? + EXIT_MARKER.len()..];
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_exit;

    #[test]
    fn exit_lines() {
        assert_eq!(parse_exit("IVC_EXIT=0"), Some(0));
        assert_eq!(parse_exit("IVC_EXIT=137"), Some(137));
        assert_eq!(parse_exit("[    1.2] random: crng initIVC_EXIT=3"), Some(3));
        assert_eq!(parse_exit("IVC_EXIT=3 trailing"), Some(3));
        assert_eq!(parse_exit("IVC_EXIT=-1"), Some(-1));
        assert_eq!(parse_exit("IVC_EXIT="), None);
        assert_eq!(parse_exit("IVC_EXIT=x"), None);
        assert_eq!(parse_exit("hello"), None);
    }
}
