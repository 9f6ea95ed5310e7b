//! ivc-polltest: checks the file semantics of an ivc device against a peer
//! guest: `poll` readiness transitions, `O_NONBLOCK`, signals interrupting a
//! blocked read, end of file and `EPIPE` when the peer leaves, and a new
//! connection when a peer comes back.
//!
//! One guest runs `ivc-polltest checker /dev/ivc0`, the other
//! `ivc-polltest peer /dev/ivc0`, which obeys line commands sent by the
//! checker over the channel itself (`ping`, `sleep N`, `discard`, `quit`).
//! The checker prints `IVC_CHECK <name>=ok` or `IVC_CHECK <name>=FAIL ...`
//! for every property and exits 1 if any failed.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Check poll/O_NONBLOCK/signal/EOF/EPIPE semantics of an ivc device against a peer"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Run the checks (the other guest runs `peer`).
    Checker {
        /// Device path.
        dev: PathBuf,
        /// After the first peer left, wait for a new peer and check that
        /// the channel works again.
        #[arg(long)]
        reconnect: bool,
    },
    /// Obey the checker's commands.
    Peer {
        /// Device path.
        dev: PathBuf,
    },
    /// Ping-pong with the other guest's `stress` for a while, waiting for
    /// each answer alternately with poll(2) and with a blocking read, and
    /// count the waits that ended only at their deadline (lost wake-ups).
    /// Prints `IVC_STRESS ...`; exits 1 on a lost wake-up or bad data.
    Stress {
        /// Device path.
        dev: PathBuf,
        /// This side sends first and decides when to stop (the other
        /// echoes until end of file).
        #[arg(long)]
        first: bool,
        /// How long the first side keeps going.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// A poll(2) that returns only after this long was not woken.
        #[arg(long, default_value_t = 5000)]
        deadline_ms: u64,
    },
}

#[path = "ivc-polltest/stress.rs"]
mod stress;

/// A raw file descriptor closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

fn open(dev: &Path, nonblock: bool) -> io::Result<Fd> {
    let c = CString::new(dev.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
    // SAFETY: `c` is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Fd(fd))
}

fn read(fd: &Fd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn write(fd: &Fd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::write(fd.0, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `poll` for `events`, returns revents (0 on timeout).
fn poll(fd: &Fd, events: i16, timeout: Duration) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd: fd.0,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(if r == 0 { 0 } else { p.revents });
    }
}

/// `poll` for `events` that must be woken by the readiness itself: Linux
/// looks once more when a `poll` times out, so readiness that arrived
/// without a wake-up still shows up, only at the deadline. That is a lost
/// wake-up, and an error here rather than a slow pass.
fn poll_woken(fd: &Fd, events: i16, timeout: Duration) -> Result<i16, String> {
    let start = Instant::now();
    let r = poll(fd, events, timeout).map_err(|e| e.to_string())?;
    if start.elapsed() >= timeout {
        return Err(format!(
            "poll returned only at its {timeout:?} deadline (revents {r:#x}): no wake-up came"
        ));
    }
    Ok(r)
}

fn set_nonblock(fd: &Fd, on: bool) -> io::Result<()> {
    // SAFETY: plain fcntl on our descriptor.
    let fl = unsafe { libc::fcntl(fd.0, libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    let fl = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.0, libc::F_SETFL, fl) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes all of `data`, waiting with poll when the channel is full.
fn write_all(fd: &Fd, mut data: &[u8], deadline: Duration) -> io::Result<()> {
    let start = Instant::now();
    while !data.is_empty() {
        match write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() > deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "channel stayed full",
                    ));
                }
                poll(fd, libc::POLLOUT, Duration::from_millis(100))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads one `\n`-terminated line (without it); `None` at end of file.
fn read_line(fd: &Fd, deadline: Duration) -> io::Result<Option<String>> {
    let start = Instant::now();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match read(fd, &mut b) {
            Ok(0) => return Ok(None),
            Ok(_) if b[0] == b'\n' => return Ok(Some(String::from_utf8_lossy(&line).into_owned())),
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() > deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no line arrived"));
                }
                poll(fd, libc::POLLIN, Duration::from_millis(100))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------
// Peer
// ---------------------------------------------------------------------------

fn peer(dev: &Path) -> Result<(), String> {
    let fd = open(dev, false).map_err(|e| format!("open {}: {e}", dev.display()))?;
    println!("ivc-polltest: peer connected to {}", dev.display());
    let forever = Duration::from_secs(3600);
    loop {
        let Some(cmd) = read_line(&fd, forever).map_err(|e| format!("read command: {e}"))? else {
            println!("ivc-polltest: peer saw end of file");
            return Ok(());
        };
        match cmd.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["ping"] => {
                write_all(&fd, b"pong\n", forever).map_err(|e| format!("write pong: {e}"))?
            }
            ["sleep", secs] => {
                let s: u64 = secs.parse().map_err(|_| format!("bad sleep '{cmd}'"))?;
                // Say so first: the checker fills the channel only once we
                // have stopped reading, or our last reads would free space
                // under its "full" check.
                write_all(&fd, b"sleeping\n", forever)
                    .map_err(|e| format!("write sleeping: {e}"))?;
                std::thread::sleep(Duration::from_secs(s));
            }
            ["discard"] => {
                // Everything up to and including a 0xff byte.
                let mut buf = vec![0u8; 65536];
                let mut total = 0u64;
                'outer: loop {
                    let n = read(&fd, &mut buf).map_err(|e| format!("discard: {e}"))?;
                    if n == 0 {
                        return Err("end of file while discarding".into());
                    }
                    for &b in &buf[..n] {
                        if b == 0xff {
                            break 'outer;
                        }
                        total += 1;
                    }
                }
                println!("ivc-polltest: peer discarded {total} bytes");
                // The checker sends nothing after the 0xff until it has this
                // answer, so the big reads above swallowed nothing else.
                write_all(&fd, format!("discarded {total}\n").as_bytes(), forever)
                    .map_err(|e| format!("write discard answer: {e}"))?;
            }
            ["quit"] => {
                println!("ivc-polltest: peer quits");
                return Ok(());
            }
            _ => return Err(format!("unknown command '{cmd}'")),
        }
    }
}

// ---------------------------------------------------------------------------
// Checker
// ---------------------------------------------------------------------------

struct Checks {
    failed: usize,
    /// When the previous check ended: each line says how long its check took.
    last: Instant,
}

impl Checks {
    fn check(&mut self, name: &str, r: Result<(), String>) -> bool {
        match r {
            Ok(()) => {
                println!(
                    "IVC_CHECK {name}=ok ({} ms)",
                    self.last.elapsed().as_millis()
                );
                self.last = Instant::now();
                true
            }
            Err(e) => {
                println!(
                    "IVC_CHECK {name}=FAIL {e} ({} ms)",
                    self.last.elapsed().as_millis()
                );
                self.last = Instant::now();
                self.failed += 1;
                false
            }
        }
    }
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Blocked read interrupted by SIGALRM (installed without SA_RESTART).
fn signal_interrupts_read(fd: &Fd) -> Result<(), String> {
    set_nonblock(fd, false).map_err(|e| e.to_string())?;
    // SAFETY: a zeroed sigaction with a valid handler and empty mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        libc::alarm(1);
    }
    let start = Instant::now();
    let mut b = [0u8; 1];
    let r = read(fd, &mut b);
    let waited = start.elapsed();
    set_nonblock(fd, true).map_err(|e| e.to_string())?;
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EINTR) && waited >= Duration::from_millis(900) => {
            Ok(())
        }
        Err(e) => Err(format!(
            "read failed with {e} after {waited:?}, expected EINTR after ~1 s"
        )),
        Ok(n) => Err(format!("read returned {n} instead of blocking")),
    }
}

fn expect(revents: i16, want: i16, not: i16, what: &str) -> Result<(), String> {
    if revents & want == want && revents & not == 0 {
        Ok(())
    } else {
        Err(format!(
            "{what}: revents {revents:#x}, wanted {want:#x} without {not:#x}"
        ))
    }
}

/// Waits until a (new) peer is connected: POLLOUT without POLLHUP.
fn wait_connected(fd: &Fd, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let r = poll(fd, libc::POLLOUT, Duration::from_millis(200)).map_err(|e| e.to_string())?;
        if r & libc::POLLOUT != 0 && r & (libc::POLLHUP | libc::POLLERR) == 0 {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "no peer connected within {limit:?} (last revents {r:#x})"
            ));
        }
        if r != 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ping(fd: &Fd) -> Result<(), String> {
    let t = Duration::from_secs(60);
    send_ping(fd, t)?;
    let woken = answer_woke(fd, t);
    // The answer is read even after a late wake-up, so the checks after
    // this one still find the stream in step.
    let answer = read_pong(fd, t, "");
    woken.and(answer)
}

fn send_ping(fd: &Fd, t: Duration) -> Result<(), String> {
    write_all(fd, b"ping\n", t).map_err(|e| format!("write ping: {e}"))
}

/// The peer's answer woke a `poll` for input ([`poll_woken`]).
fn answer_woke(fd: &Fd, t: Duration) -> Result<(), String> {
    poll_woken(fd, libc::POLLIN, t)
        .and_then(|r| expect(r, libc::POLLIN, libc::POLLERR, "poll for the answer"))
}

/// Reads the peer's answer line, which must be `pong`; `context` starts the
/// error message.
fn read_pong(fd: &Fd, t: Duration, context: &str) -> Result<(), String> {
    match read_line(fd, t).map_err(|e| e.to_string())? {
        Some(l) if l == "pong" => Ok(()),
        other => Err(format!("{context}expected pong, got {other:?}")),
    }
}

/// A `read` or `write` whose buffer address is bad fails with `EFAULT` and
/// moves nothing: the driver copies between the user's buffer and the ring
/// directly, and must publish or consume only what it copied. The failed
/// write must not reach the peer (the ping after it would arrive garbled),
/// and the failed read must leave the answer for the next read.
fn efault_moves_nothing(fd: &Fd) -> Result<(), String> {
    let efault = |what: &str, n: isize| -> Result<(), String> {
        let e = io::Error::last_os_error();
        match (n, e.raw_os_error()) {
            (-1, Some(libc::EFAULT)) => Ok(()),
            _ => Err(format!(
                "{what} with a bad buffer: expected EFAULT, got {n} ({e})"
            )),
        }
    };
    // Address 8: never mapped (the first page is reserved), not null, so
    // the driver cannot mistake it for "no buffer".
    let bad = 8usize as *mut libc::c_void;
    // SAFETY: the kernel checks the user address; nothing is touched here.
    efault("write", unsafe { libc::write(fd.0, bad, 16) })?;
    let t = Duration::from_secs(60);
    send_ping(fd, t)?;
    answer_woke(fd, t)?;
    // SAFETY: as above.
    efault("read", unsafe { libc::read(fd.0, bad, 16) })?;
    read_pong(fd, t, "after the failed read ")
}

/// Edge-triggered epoll: after a read drained the channel to `EAGAIN`, the
/// next reply must wake `epoll_wait` by itself. Nothing calls `poll` on the
/// device in between (epoll does only when woken), so the driver has to
/// count the `EAGAIN` as "not readable" for its own wake-up logic. A few
/// rounds, since the first is woken by what registering armed.
fn epoll_et_rounds(fd: &Fd) -> Result<(), String> {
    // SAFETY: plain system call; the descriptor is closed by `Fd`.
    let ep = Fd(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) });
    if ep.0 < 0 {
        return Err(format!("epoll_create1: {}", io::Error::last_os_error()));
    }
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 0,
    };
    // SAFETY: valid descriptors and event.
    if unsafe { libc::epoll_ctl(ep.0, libc::EPOLL_CTL_ADD, fd.0, &mut ev) } < 0 {
        return Err(format!("epoll_ctl: {}", io::Error::last_os_error()));
    }
    let t = Duration::from_secs(60);
    let mut waits = Vec::new();
    for round in 1..=3 {
        let mut b = [0u8; 64];
        match read(fd, &mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return Err(format!("round {round}: expected EAGAIN, got {other:?}")),
        }
        send_ping(fd, t)?;
        let start = Instant::now();
        let mut out = [libc::epoll_event { events: 0, u64: 0 }];
        let n = loop {
            // SAFETY: one valid output slot.
            let n = unsafe { libc::epoll_wait(ep.0, out.as_mut_ptr(), 1, t.as_millis() as i32) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        let waited = start.elapsed();
        waits.push(waited);
        // A copy: the kernel's `epoll_event` is packed on x86-64.
        let events = out[0].events;
        // Read the answer in any case, so the checks after this one still
        // find the stream in step.
        let answer = read_line(fd, t).map_err(|e| e.to_string())?;
        if n != 1 || events & libc::EPOLLIN as u32 == 0 {
            return Err(format!(
                "round {round}: epoll_wait returned {n} (events {events:#x}) after {waited:?}: the reply did not wake it"
            ));
        }
        if answer.as_deref() != Some("pong") {
            return Err(format!("round {round}: expected pong, got {answer:?}"));
        }
    }
    // For the reader of the log, not a check: with doorbells the reply
    // should wake the waiter, not the poller's backstop tick (100 ms).
    println!("ivc-polltest: edge-triggered epoll woken after {waits:?}");
    Ok(())
}

fn checker(dev: &Path, reconnect: bool) -> Result<usize, String> {
    let mut c = Checks {
        failed: 0,
        last: Instant::now(),
    };
    let t = Duration::from_secs(60);
    let fd = open(dev, true).map_err(|e| format!("open {}: {e}", dev.display()))?;

    let mut b = [0u8; 16];
    c.check(
        "nonblock_read_eagain",
        match read(&fd, &mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => Err(format!("expected EAGAIN, got {other:?}")),
        },
    );
    if !c.check(
        "pollout_when_peer_connects",
        wait_connected(&fd, Duration::from_secs(120)),
    ) {
        return Ok(c.failed);
    }
    c.check(
        "no_pollin_while_empty",
        poll(&fd, libc::POLLIN, Duration::ZERO)
            .map_err(|e| e.to_string())
            .and_then(|r| expect(r, 0, libc::POLLIN, "empty channel")),
    );
    c.check("pollin_when_data_arrives", ping(&fd));
    c.check("efault_moves_nothing", efault_moves_nothing(&fd));
    c.check("epollet_woken_after_eagain", epoll_et_rounds(&fd));
    c.check(
        "signal_interrupts_blocked_read",
        signal_interrupts_read(&fd),
    );

    fill_and_drain(&mut c, &fd, t);
    peer_leaves(&mut c, &fd, t);
    if reconnect {
        peer_returns(&mut c, &fd, t);
    }
    Ok(c.failed)
}

/// Fills the channel while the peer sleeps: EAGAIN and no POLLOUT when full,
/// POLLOUT once the peer drains, and the stream intact afterwards.
fn fill_and_drain(c: &mut Checks, fd: &Fd, t: Duration) {
    let mut filled_bytes = None;
    let filled = write_all(fd, b"sleep 3\n", t)
        .map_err(|e| e.to_string())
        .and_then(|()| match read_line(fd, t).map_err(|e| e.to_string())? {
            Some(l) if l == "sleeping" => Ok(()),
            other => Err(format!("expected 'sleeping', got {other:?}")),
        })
        .and_then(|()| write_all(fd, b"discard\n", t).map_err(|e| e.to_string()))
        .and_then(|()| {
            let zeros = vec![0u8; 65536];
            let mut total = 0usize;
            loop {
                match write(fd, &zeros) {
                    Ok(n) => total += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("filling: {e}")),
                }
            }
            println!("ivc-polltest: channel full after {total} bytes");
            filled_bytes = Some(total);
            let r = poll(fd, libc::POLLOUT, Duration::ZERO).map_err(|e| e.to_string())?;
            expect(r, 0, libc::POLLOUT, "full channel")
        });
    c.check("nonblock_write_eagain_and_no_pollout_when_full", filled);
    c.check(
        "pollout_when_peer_drains",
        poll_woken(fd, libc::POLLOUT, t)
            .and_then(|r| expect(r, libc::POLLOUT, libc::POLLERR, "after drain")),
    );
    let intact = write_all(fd, &[0xff], t)
        .map_err(|e| e.to_string())
        .and_then(|()| read_line(fd, t).map_err(|e| e.to_string()))
        .and_then(|answer| match (answer, &filled_bytes) {
            (Some(a), Some(n)) if a == format!("discarded {n}") => Ok(()),
            (a, n) => Err(format!("peer answered {a:?}, expected 'discarded {n:?}'")),
        })
        .and_then(|()| ping(fd));
    c.check("stream_intact_after_fill", intact);
}

/// The peer leaves: end of file, POLLHUP, EPIPE.
fn peer_leaves(c: &mut Checks, fd: &Fd, t: Duration) {
    let mut b = [0u8; 16];
    let _ = write_all(fd, b"quit\n", t);
    let woken = poll_woken(fd, libc::POLLIN, t);
    let eof = match read(fd, &mut b) {
        Ok(0) => woken.and_then(|r| expect(r, libc::POLLIN, 0, "peer left")),
        Ok(n) => Err(format!("read {n} bytes, expected end of file")),
        Err(e) => Err(format!("read after peer left: {e}")),
    };
    c.check("eof_after_peer_leaves", eof);
    c.check(
        "pollhup_after_peer_leaves",
        poll(fd, libc::POLLIN | libc::POLLOUT, Duration::ZERO)
            .map_err(|e| e.to_string())
            .and_then(|r| expect(r, libc::POLLHUP, 0, "peer gone")),
    );
    c.check(
        "epipe_after_peer_leaves",
        match write(fd, b"x") {
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => Ok(()),
            other => Err(format!("expected EPIPE, got {other:?}")),
        },
    );
}

/// A new peer connects to the same open file and leaves again.
fn peer_returns(c: &mut Checks, fd: &Fd, t: Duration) {
    let mut b = [0u8; 16];
    println!("ivc-polltest: waiting for a new peer");
    let again = wait_connected(fd, Duration::from_secs(240)).and_then(|()| ping(fd));
    c.check("reconnect_after_peer_returns", again);
    let _ = write_all(fd, b"quit\n", t);
    let _ = poll(fd, libc::POLLIN, t);
    c.check(
        "eof_after_second_peer_leaves",
        match read(fd, &mut b) {
            Ok(0) => Ok(()),
            other => Err(format!("expected end of file, got {other:?}")),
        },
    );
}

fn main() -> ExitCode {
    let r = match Cli::parse().role {
        Role::Checker { dev, reconnect } => checker(&dev, reconnect).inspect(|failed| {
            println!("ivc-polltest: {failed} check(s) failed");
        }),
        Role::Peer { dev } => peer(&dev).map(|()| 0),
        Role::Stress {
            dev,
            first,
            seconds,
            deadline_ms,
        } => stress::run(
            &dev,
            first,
            Duration::from_secs(seconds),
            Duration::from_millis(deadline_ms),
        ),
    };
    match r {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ivc-polltest: error: {e}");
            ExitCode::from(2)
        }
    }
}
