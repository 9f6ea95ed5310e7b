//! ivc-guest-harness: boots Linux guests under QEMU TCG for tier-3 tests.
//!
//! A test describes each guest with a [`GuestSpec`] (a shell command, the
//! [`Device`]s it gets, memory, vCPUs, a timeout), boots it with
//! [`Guest::spawn`] or several at once with [`run_guests`], and asserts on the
//! [`GuestOutcome`]: the command's exit status, the serial output, whether it
//! timed out, and any kernel oops on the console.
//!
//! The guest side is the contract in docs/architecture.md: the kernel and
//! initramfs from `scripts/build-guest.sh`, whose init runs the base64 command
//! in `ivc_cmd=` and prints `IVC_EXIT=<status>` before `reboot -f`.
//!
//! ```no_run
//! use ivc_guest_harness::*;
//!
//! # fn main() -> Result<()> {
//! let Some(artifacts) = require_guest_env() else { return Ok(()) };
//! let scratch = ScratchDir::new()?;
//! let shm = Device::IvshmemPlain { mem_path: scratch.join("shm"), size: 1 << 20 };
//! let outcomes = run_guests(
//!     &artifacts,
//!     [
//!         GuestSpec::new("a", "insmod /lib/ivc/ivc.ko && echo hi > /dev/ivc0").device(shm.clone()),
//!         GuestSpec::new("b", "insmod /lib/ivc/ivc.ko && head -c 3 /dev/ivc0").device(shm),
//!     ],
//! )?;
//! for o in &outcomes {
//!     o.assert_success();
//! }
//! assert!(outcomes[1].serial_contains("hi"));
//! # Ok(())
//! # }
//! ```
//!
//! Output: every serial line is echoed as `[name] line` through the test's
//! output capture, so `cargo test` shows it for failing tests only (and live
//! with `--nocapture`); `IVC_HARNESS_VERBOSE=1` streams it to stderr always.
//! Failure messages quote the last lines of the serial output.
//!
//! QEMU never outlives a test: dropping a [`Guest`] kills it, and QEMU also
//! dies with the test process (parent-death signal).

mod artifacts;
mod base64;
mod device;
mod error;
mod guest;
mod lines;
mod outcome;
mod qemu;
mod scratch;
mod shm;
mod spec;
pub mod vmm;

pub use artifacts::{
    default_guest_dir, qemu_available, report_skip, require_guest_env, GuestArtifacts,
    DEFAULT_QEMU, GUEST_DIR_ENV, INITRAMFS_FILE, KERNEL_FILE, QEMU_ENV,
};
pub use device::Device;
pub use error::{HarnessError, Result};
pub use guest::{run_guests, Guest, EXIT_MARKER, VERBOSE_ENV};
pub use outcome::{GuestOutcome, TAIL_LINES};
pub use qemu::qemu_args;
pub use scratch::ScratchDir;
pub use shm::HostMapping;
pub use spec::{GuestSpec, BASE_KERNEL_ARGS, CMDLINE_MAX, CMD_PARAM};
pub use vmm::{require_vmm_env, run_scenario, KernelImage, Scenario, ScenarioOutcome, VmmBackend};
