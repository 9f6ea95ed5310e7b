//! `ivc-polltest stress`: a long ping-pong that looks for lost wake-ups.
//!
//! Round `r` moves `size(r)` bytes (1..=4096, the same sequence on both
//! sides, so no framing is needed) from the first side to the other and
//! back. Each side waits for the bytes it expects alternately with poll(2)
//! (non-blocking reads, even rounds) and with a blocking read (odd rounds).
//! A poll that returns only at its deadline was not woken by the data: that
//! is the lost wake-up this looks for. Blocking reads are rescued by the
//! driver's own timeout, which its `irq_wait_timeouts` counter records.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{open, poll, read, set_nonblock, write_all, Fd};

/// The message size of round `r`: spread over 1..=4096 bytes.
fn size(r: u64) -> usize {
    1 + (r.wrapping_mul(2_654_435_761) % 4096) as usize
}

/// The byte at offset `i` of round `r`'s message.
fn byte(r: u64, i: usize) -> u8 {
    (r as u8) ^ (i as u8).wrapping_mul(7)
}

#[derive(Default)]
struct Tally {
    rounds: u64,
    poll_waits: u64,
    poll_deadline: u64,
    blocking_reads: u64,
    max_wait: Duration,
}

impl Tally {
    fn print(&self, who: &str) {
        println!(
            "IVC_STRESS side={who} rounds={} poll_waits={} poll_deadline={} blocking_reads={} max_wait_us={}",
            self.rounds,
            self.poll_waits,
            self.poll_deadline,
            self.blocking_reads,
            self.max_wait.as_micros()
        );
    }
}

/// Reads exactly `buf.len()` bytes, waiting by poll or by blocking read.
/// `Ok(false)` on end of file before the first byte.
fn read_exact(
    fd: &Fd,
    buf: &mut [u8],
    by_poll: bool,
    deadline: Duration,
    t: &mut Tally,
) -> io::Result<bool> {
    set_nonblock(fd, by_poll)?;
    let mut got = 0;
    while got < buf.len() {
        let start = Instant::now();
        match read(fd, &mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of file inside a message",
                ))
            }
            Ok(n) => {
                got += n;
                if !by_poll {
                    t.blocking_reads += 1;
                    t.max_wait = t.max_wait.max(start.elapsed());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                t.poll_waits += 1;
                let r = poll(fd, libc::POLLIN, deadline)?;
                let waited = start.elapsed();
                t.max_wait = t.max_wait.max(waited);
                if waited >= deadline {
                    t.poll_deadline += 1;
                    eprintln!(
                        "ivc-polltest: round {}: poll returned only at its {deadline:?} deadline (revents {r:#x})",
                        t.rounds
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn check(r: u64, buf: &[u8]) -> io::Result<()> {
    match buf.iter().enumerate().find(|&(i, &b)| b != byte(r, i)) {
        None => Ok(()),
        Some((i, &b)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("round {r}: byte {i} is {b:#x}, not {:#x}", byte(r, i)),
        )),
    }
}

/// Runs one side; `Ok(1)` when a wake-up was lost (`Ok(0)` otherwise).
pub fn run(
    dev: &Path,
    first: bool,
    seconds: Duration,
    deadline: Duration,
) -> Result<usize, String> {
    let fd = open(dev, true).map_err(|e| format!("open {}: {e}", dev.display()))?;
    let mut t = Tally::default();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let fail = |e: io::Error, t: &Tally| format!("round {}: {e}", t.rounds);
    loop {
        let r = t.rounds;
        let msg = &mut buf[..size(r)];
        let by_poll = r % 2 == 0;
        if first {
            if started.elapsed() >= seconds {
                break;
            }
            for (i, b) in msg.iter_mut().enumerate() {
                *b = byte(r, i);
            }
            set_nonblock(&fd, true).map_err(|e| fail(e, &t))?;
            write_all(&fd, msg, deadline).map_err(|e| fail(e, &t))?;
            if !read_exact(&fd, msg, by_poll, deadline, &mut t).map_err(|e| fail(e, &t))? {
                return Err(format!("round {r}: the echo side left"));
            }
            check(r, msg).map_err(|e| fail(e, &t))?;
        } else {
            if !read_exact(&fd, msg, by_poll, deadline, &mut t).map_err(|e| fail(e, &t))? {
                break; // the first side is done
            }
            check(r, msg).map_err(|e| fail(e, &t))?;
            set_nonblock(&fd, true).map_err(|e| fail(e, &t))?;
            write_all(&fd, msg, deadline).map_err(|e| fail(e, &t))?;
        }
        t.rounds += 1;
    }
    t.print(if first { "first" } else { "echo" });
    Ok(usize::from(t.poll_deadline > 0))
}
