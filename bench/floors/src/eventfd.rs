//! eventfd ping-pong between two processes: the floor of `shm-irq` latency.
//!
//! A doorbell in `shm-irq` is an ioeventfd signalled by KVM and an irqfd
//! that injects the interrupt: one eventfd hop (signal, wake a blocked
//! waiter on another core) each way. Two processes each blocked in `read`
//! on their own eventfd and answering through the other's measure that hop,
//! twice per round trip, with the scheduler's wake-up included.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::fork::{spawn_pinned, CpuPair, Pinned};
use crate::model::{ns, Latency};

/// Value that tells the child to exit (an eventfd read returns the sum of
/// the writes since the last read, and a ping is 1, so this is unambiguous).
const STOP: u64 = 1 << 40;

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one counter value; async-signal-safe.
fn efd_read(fd: libc::c_int) -> io::Result<u64> {
    let mut v = 0u64;
    loop {
        // SAFETY: reads 8 bytes into a valid u64.
        let r = unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
        if r == 8 {
            return Ok(v);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Adds `v` to the counter; async-signal-safe.
fn efd_write(fd: libc::c_int, v: u64) -> io::Result<()> {
    // SAFETY: writes 8 bytes from a valid u64.
    let r = unsafe { libc::write(fd, (&raw const v).cast(), 8) };
    if r == 8 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Measures for about `budget` (at least `min_samples` round trips).
pub fn measure(cpus: CpuPair, budget: Duration, min_samples: usize) -> io::Result<Latency> {
    let (ping, pong) = (eventfd()?, eventfd()?);
    let (ping_fd, pong_fd) = (ping.as_raw_fd(), pong.as_raw_fd());
    // SAFETY: the child only reads and writes eventfds (async-signal-safe).
    let child = unsafe {
        spawn_pinned(cpus.b, || loop {
            match efd_read(ping_fd) {
                Ok(STOP) => return 0,
                Ok(_) => {
                    if efd_write(pong_fd, 1).is_err() {
                        return 2;
                    }
                }
                Err(_) => return 1,
            }
        })
    }?;
    let _pinned = Pinned::to(cpus.a)?;
    let mut samples = Vec::new();
    let start = Instant::now();
    for i in 0.. {
        if i >= 10 + min_samples && start.elapsed() >= budget {
            break;
        }
        let t0 = Instant::now();
        efd_write(ping_fd, 1)?;
        efd_read(pong_fd)?;
        if i >= 10 {
            samples.push(ns(t0.elapsed()));
        }
    }
    efd_write(ping_fd, STOP)?;
    child.wait(Duration::from_secs(5))?;
    Latency::from_samples(8, 1, &mut samples).ok_or_else(|| io::Error::other("no samples"))
}
