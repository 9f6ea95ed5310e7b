//! SIGINT/SIGTERM stop the server cleanly (so that it removes its socket).
//!
//! The handler only writes to the server's shutdown eventfd — `write(2)` is
//! async-signal-safe — and the event loop does the rest.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::server::ShutdownHandle;

/// The eventfd the handler writes to, or -1 while no server listens.
static SHUTDOWN_FD: AtomicI32 = AtomicI32::new(-1);

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

extern "C" fn on_signal(_signal: libc::c_int) {
    let fd = SHUTDOWN_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    // SAFETY: __errno_location returns this thread's errno slot, valid for
    // the thread's lifetime; it is saved and restored so that the code we
    // interrupted does not see write()'s errno.
    let errno = unsafe { *libc::__errno_location() };
    let one: u64 = 1;
    // SAFETY: write(2) is async-signal-safe; `one` is 8 valid bytes on the
    // stack; a stale or closed fd only makes write fail.
    unsafe { libc::write(fd, (&one as *const u64).cast(), mem::size_of::<u64>()) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// While alive, SIGINT and SIGTERM shut the server down; dropping it puts the
/// previous dispositions back.
pub struct SignalGuard {
    previous: Vec<(libc::c_int, libc::sigaction)>,
    // Keeps the eventfd open for as long as the handler may write to it.
    _handle: ShutdownHandle,
}

/// Installs the handlers for `handle`'s server.
pub fn stop_on_signals(handle: &ShutdownHandle) -> io::Result<SignalGuard> {
    SHUTDOWN_FD.store(handle.as_raw_fd(), Ordering::SeqCst);
    let mut guard = SignalGuard {
        previous: Vec::new(),
        _handle: handle.clone(),
    };
    for signal in SIGNALS {
        // SAFETY: sigaction is a plain C struct for which zero is valid.
        let mut action: libc::sigaction = unsafe { mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: sa_mask is a valid sigset_t inside `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: both pointers refer to live sigaction structs; the handler
        // is an extern "C" fn that only does async-signal-safe work.
        if unsafe { libc::sigaction(signal, &action, &mut previous) } < 0 {
            return Err(io::Error::last_os_error()); // guard restores the rest
        }
        guard.previous.push((signal, previous));
    }
    Ok(guard)
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (signal, previous) in self.previous.drain(..) {
            // SAFETY: restores a disposition that sigaction gave us earlier.
            unsafe { libc::sigaction(signal, &previous, std::ptr::null_mut()) };
        }
        SHUTDOWN_FD.store(-1, Ordering::SeqCst);
    }
}
