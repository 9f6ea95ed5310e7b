//! The progress display, and keeping the guests' console chatter off it.
//!
//! The guest harness echoes every QEMU command line and serial line to
//! stderr (it is made for `cargo test`, which captures that). Here that
//! would bury the progress display, so while guests run, file descriptor 2
//! points at a log file in the results directory, and the display writes to
//! a duplicate of the original stderr taken at start-up.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The terminal (or whatever stderr was at start-up).
#[derive(Clone)]
pub struct Console {
    out: Arc<Mutex<File>>,
    tty: bool,
}

impl Console {
    /// A duplicate of the current stderr.
    pub fn new() -> io::Result<Self> {
        let tty = io::stderr().is_terminal();
        // SAFETY: dup of fd 2 with no memory arguments; the result is checked.
        let fd = unsafe { libc::dup(2) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Console {
            out: Arc::new(Mutex::new(file)),
            tty,
        })
    }

    /// Writes a line (clearing a progress line first on a terminal).
    pub fn line(&self, text: &str) {
        let clear = if self.tty { "\r\x1b[K" } else { "" };
        self.raw(&format!("{clear}{text}\n"));
    }

    fn raw(&self, text: &str) {
        if let Ok(mut f) = self.out.lock() {
            let _ = f.write_all(text.as_bytes());
            let _ = f.flush();
        }
    }
}

/// While alive, fd 2 writes to a log file; the old stderr comes back on drop.
pub struct StderrToFile {
    saved: OwnedFd,
}

impl StderrToFile {
    /// Appends fd 2's output to `path` from now on.
    pub fn new(path: &Path) -> io::Result<Self> {
        let log = File::options().create(true).append(true).open(path)?;
        // SAFETY: dup of fd 2; checked.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor, owned here from now on.
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        // SAFETY: dup2 onto fd 2 of a descriptor that is open for writing.
        if unsafe { libc::dup2(log.as_raw_fd(), 2) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(StderrToFile { saved })
    }
}

impl Drop for StderrToFile {
    fn drop(&mut self) {
        // SAFETY: restores fd 2 from our saved duplicate, which is open.
        unsafe { libc::dup2(self.saved.as_raw_fd(), 2) };
    }
}

/// One long step: a line when it starts, a live elapsed-time line while it
/// runs (every second on a terminal, every 30 s otherwise, so logs stay
/// short), and a line when it ends.
pub struct Step {
    console: Console,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    start: Instant,
    name: String,
}

impl Step {
    /// Starts step `name`; `expect` is a rough duration shown to the user.
    pub fn start(console: &Console, name: &str, expect: Option<Duration>) -> Self {
        let hint = expect.map_or(String::new(), |d| format!(" (about {} s)", d.as_secs()));
        console.line(&format!("==> {name}{hint}"));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let ticker = {
            let (console, stop, name) = (console.clone(), stop.clone(), name.to_string());
            let every = if console.tty {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(30)
            };
            std::thread::spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(200));
                    if last.elapsed() >= every {
                        last = Instant::now();
                        let s = start.elapsed().as_secs();
                        if console.tty {
                            console.raw(&format!("\r\x1b[K    {name}: {s} s"));
                        } else {
                            console.line(&format!("    {name}: still running, {s} s"));
                        }
                    }
                }
            })
        };
        Step {
            console: console.clone(),
            stop,
            ticker: Some(ticker),
            start,
            name: name.to_string(),
        }
    }

    /// Ends the step with a one-line outcome.
    pub fn finish(mut self, outcome: &str) -> Duration {
        self.halt();
        let d = self.start.elapsed();
        self.console.line(&format!(
            "    {}: {outcome} ({:.1} s)",
            self.name,
            d.as_secs_f64()
        ));
        d
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.halt();
    }
}
