//! Child processes for the two-process floors, pinned to a core each.
//!
//! `fork` rather than spawning a helper binary: the child runs a tight loop
//! over memory or fds set up by the parent, and nothing else. After `fork`
//! in a process that may have other threads, the child may only do what is
//! async-signal-safe, so its closure must not allocate, lock or print: it
//! gets everything it needs (buffers, fds, shared memory) from the parent,
//! and ends with `_exit`, never returning into Rust code that could drop
//! the parent's data.

use std::io;
use std::time::{Duration, Instant};

/// The two CPUs a ping-pong runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPair {
    /// The parent's CPU.
    pub a: usize,
    /// The child's CPU.
    pub b: usize,
}

impl CpuPair {
    /// Whether the two sides really run on two cores (false on a machine, or
    /// in a cpuset, with one CPU: then a ping-pong measures context switches).
    pub fn distinct(&self) -> bool {
        self.a != self.b
    }
}

/// The first two CPUs this process may run on.
pub fn cpu_pair() -> CpuPair {
    let allowed = allowed_cpus();
    let a = allowed.first().copied().unwrap_or(0);
    let b = allowed.get(1).copied().unwrap_or(a);
    CpuPair { a, b }
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: passes a valid, writable cpu_set_t of the size given.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: reads a bit of a valid set, index below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`. Async-signal-safe (one system call).
pub(crate) fn pin(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // CPU_SET indexes a bit array; out-of-range CPUs would be ignored, so
    // refuse them plainly instead.
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::other(format!("cpu {cpu} out of range")));
    }
    // SAFETY: sets a bit of a valid set, index checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: passes a valid cpu_set_t of the size given.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins the calling thread to `cpu` until dropped, then restores the CPUs
/// it was allowed before. The parent side of a floor uses this: a runner
/// thread left pinned would pass its single CPU on to everything it starts
/// later (QEMU guests that poll would then share one core).
pub(crate) struct Pinned {
    saved: libc::cpu_set_t,
}

impl Pinned {
    pub(crate) fn to(cpu: usize) -> io::Result<Self> {
        // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid, writable cpu_set_t of the size given.
        let r = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved)
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        pin(cpu)?;
        Ok(Pinned { saved })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: a valid cpu_set_t of the size given (the one saved above).
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.saved) };
    }
}

/// A forked child; killed and reaped on drop unless waited for.
pub(crate) struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

/// Forks a child pinned to `cpu` that runs `body` and exits with its value.
///
/// # Safety
///
/// `body` runs in the forked child of a possibly multi-threaded process: it
/// must only do async-signal-safe things (atomics, `read`/`write` and other
/// plain system calls on memory and fds it borrows) — no allocation, no
/// locks, no printing, no panics.
pub(crate) unsafe fn spawn_pinned<F: FnOnce() -> i32>(cpu: usize, body: F) -> io::Result<Child> {
    // SAFETY: fork has no memory-safety preconditions; the child side is
    // restricted by this function's contract.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: prctl with an integer argument; dies with the parent, so a
        // parent that fails half-way never leaves a spinning child behind.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let code = if pin(cpu).is_ok() { body() } else { 99 };
        // SAFETY: ends the child without running destructors or atexit
        // handlers that belong to the parent's state.
        unsafe { libc::_exit(code) };
    }
    Ok(Child { pid, reaped: false })
}

impl Child {
    /// Waits up to `timeout` for the child; its exit status, or an error
    /// (after killing it) if it did not end in time or died of a signal.
    pub(crate) fn wait(mut self, timeout: Duration) -> io::Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut status = 0;
            // SAFETY: waits for our own child; status is a valid out pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = true;
                if libc::WIFEXITED(status) {
                    return Ok(libc::WEXITSTATUS(status));
                }
                return Err(io::Error::other(format!(
                    "benchmark child ended abnormally (wait status {status:#x})"
                )));
            }
            if r < 0 {
                self.reaped = true;
                return Err(io::Error::last_os_error());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other("benchmark child did not finish in time"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signals and reaps our own, not yet reaped, child, so
            // the pid cannot have been reused by another process.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_exit_status_comes_back() {
        let cpus = cpu_pair();
        // SAFETY: the body only returns a constant.
        let c = unsafe { spawn_pinned(cpus.b, || 7) }.expect("fork");
        assert_eq!(c.wait(Duration::from_secs(10)).expect("wait"), 7);
    }

    #[test]
    fn pinning_is_undone() {
        let before = allowed_cpus();
        {
            let _p = Pinned::to(cpu_pair().a).expect("pin");
            assert_eq!(allowed_cpus().len(), 1);
        }
        assert_eq!(allowed_cpus(), before);
    }

    #[test]
    fn a_stuck_child_is_killed() {
        let cpus = cpu_pair();
        // SAFETY: the body only sleeps (nanosleep is async-signal-safe).
        let c = unsafe {
            spawn_pinned(cpus.b, || {
                libc::sleep(30);
                0
            })
        }
        .expect("fork");
        assert!(c.wait(Duration::from_millis(50)).is_err());
    }
}
