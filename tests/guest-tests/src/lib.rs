//! Shared pieces of the tier-3 and tier-4 tests: the shell snippets that run inside the
//! guests and the parsers for the lines they print.
//!
//! The tests themselves live in `tests/`; each boots real Linux guests with
//! `ivc.ko` under QEMU TCG through `ivc-guest-harness`.

pub mod channel_env;
pub mod guest_sh;
pub mod host_peer;
pub mod polltest;
pub mod report;
pub mod transfer;
pub mod vmm_channel;
