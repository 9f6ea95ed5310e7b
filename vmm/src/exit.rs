//! Why the VM stopped, and the process exit status that reports it.
//!
//! The first reason recorded wins: a guest that writes the debug-exit port
//! and then triple-faults on the way down still exits with its own status.

use std::io;
use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Exit status for VMM-side failures (KVM errors, unexpected exits).
pub const VMM_ERROR_STATUS: i32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest wrote V to port 0xf4.
    DebugExit(u8),
    /// i8042 reset (0xfe to port 0x64) or a KVM system-event reset.
    Reset,
    /// KVM system-event shutdown (guest power-off).
    PowerOff,
    /// KVM_EXIT_SHUTDOWN: a triple fault, which a PC turns into a reset.
    TripleFault,
    /// KVM_EXIT_HLT (only without an in-kernel irqchip): nothing can wake the CPU.
    Halted,
    /// SIGINT or SIGTERM to the VMM.
    Signal(i32),
    /// Something the VMM could not handle.
    Error(String),
}

impl ExitReason {
    /// The process exit status: debug-exit value, 0 for reset/power-off/
    /// triple fault/halt, 128+signal for signals, 1 for VMM errors.
    pub fn exit_status(&self) -> i32 {
        match self {
            ExitReason::DebugExit(v) => i32::from(*v),
            ExitReason::Reset
            | ExitReason::PowerOff
            | ExitReason::TripleFault
            | ExitReason::Halted => 0,
            ExitReason::Signal(s) => 128 + s,
            ExitReason::Error(_) => VMM_ERROR_STATUS,
        }
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::DebugExit(v) => write!(f, "guest wrote {v} to the debug-exit port"),
            ExitReason::Reset => write!(f, "guest reset"),
            ExitReason::PowerOff => write!(f, "guest powered off"),
            ExitReason::TripleFault => write!(f, "guest triple fault (treated as reset)"),
            ExitReason::Halted => write!(f, "guest halted"),
            ExitReason::Signal(s) => write!(f, "terminated by signal {s}"),
            ExitReason::Error(e) => write!(f, "VMM error: {e}"),
        }
    }
}

/// Shared by the vCPU threads (which record a reason) and the main thread
/// (which waits on the eventfd).
pub struct VmExit {
    reason: Mutex<Option<ExitReason>>,
    evt: EventFd,
}

impl VmExit {
    pub fn new() -> io::Result<Self> {
        Ok(VmExit {
            reason: Mutex::new(None),
            evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Records `reason` unless one is already recorded, and wakes the main thread.
    pub fn request(&self, reason: ExitReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        let _ = self.evt.write(1);
    }

    pub fn requested(&self) -> bool {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub fn reason(&self) -> Option<ExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ExitReason::DebugExit(42).exit_status(), 42);
        assert_eq!(ExitReason::DebugExit(255).exit_status(), 255);
        assert_eq!(ExitReason::Reset.exit_status(), 0);
        assert_eq!(ExitReason::TripleFault.exit_status(), 0);
        assert_eq!(ExitReason::Signal(15).exit_status(), 143);
        assert_eq!(ExitReason::Error("x".into()).exit_status(), 1);
    }

    #[test]
    fn first_reason_wins_and_wakes() {
        let e = VmExit::new().unwrap();
        assert!(!e.requested());
        e.request(ExitReason::DebugExit(3));
        e.request(ExitReason::TripleFault);
        assert_eq!(e.reason(), Some(ExitReason::DebugExit(3)));
        assert_eq!(e.eventfd().read().unwrap(), 2);
    }
}
