//! Signals: SIGINT/SIGTERM end the VM; SIGUSR1 logs every vCPU's state; a
//! real-time signal kicks vCPU threads out of KVM_RUN.
//!
//! SIGINT, SIGTERM and SIGUSR1 follow the host programs' one design
//! (`ivc_rendezvous::signals`): blocked before any thread starts and read
//! from a signalfd by the main thread. The kick signal has an empty handler:
//! its only job is to make KVM_RUN return EINTR; the vCPU loop then sees the
//! stop request or the request for a state report.

use std::io;

pub use ivc_rendezvous::signals::{wait_readable, TerminationSignals};

use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

/// Asks ivc-vmm to log each vCPU's state (`cpu::state_report`) and go on.
pub const REPORT_SIGNAL: libc::c_int = libc::SIGUSR1;

pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

pub fn install_kick_handler() -> io::Result<()> {
    register_signal_handler(kick_signal(), kick_handler)
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))
}
