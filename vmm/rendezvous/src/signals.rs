//! SIGINT/SIGTERM end a host program cleanly: one design for both host
//! programs, ivc-vmm (which stops its VM) and ivc-rendezvous (which removes
//! its socket).
//!
//! The two signals are blocked before any thread starts (threads inherit the
//! mask) and read from a signalfd, so no asynchronous handler runs and no
//! code has to be async-signal-safe. ivc-vmm's main thread polls the
//! signalfd next to its other fds; the server's epoll loop watches it like
//! its shutdown eventfd (`Server::stop_when_readable`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn signal_set(signals: &[libc::c_int]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initializes it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    let mut ok = unsafe { libc::sigemptyset(&mut set) == 0 };
    for &sig in signals {
        // SAFETY: as above.
        ok = ok && unsafe { libc::sigaddset(&mut set, sig) == 0 };
    }
    if ok {
        Ok(set)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGINT/SIGTERM as a readable fd. Create it on the main thread before
/// spawning threads.
pub struct TerminationSignals {
    fd: OwnedFd,
}

impl TerminationSignals {
    pub fn new() -> io::Result<Self> {
        Self::including(&[])
    }

    /// SIGINT/SIGTERM and `extra` signals, all read from the one fd; the
    /// caller tells them apart by the number [`TerminationSignals::read`]
    /// returns (ivc-vmm reads SIGUSR1 there: log the vCPUs' state).
    pub fn including(extra: &[libc::c_int]) -> io::Result<Self> {
        let mut signals = vec![libc::SIGINT, libc::SIGTERM];
        signals.extend_from_slice(extra);
        let set = signal_set(&signals)?;
        // SAFETY: `set` is initialized; a null old-set pointer is allowed.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // SAFETY: -1 asks for a new signalfd; `set` is initialized.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(TerminationSignals { fd })
    }

    /// The pending signal number, if any.
    pub fn read(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reading at most `size` bytes into `info`, which is `size` bytes long.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        (n == size as isize).then_some(info.ssi_signo as i32)
    }
}

impl AsRawFd for TerminationSignals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable (or `timeout_ms` passes, -1 = never).
/// Returns the indices of the readable ones.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<usize>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![]);
        }
        return Err(e);
    }
    Ok(pfds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect())
}
