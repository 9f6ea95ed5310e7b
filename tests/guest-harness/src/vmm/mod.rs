//! Linux guests in ivc-vmm (tier 4): the same kernel, initramfs and commands
//! as the QEMU guests of tier 3, but each guest in its own ivc-vmm process
//! with ivc devices joined through rendezvous servers.
//!
//! A test describes a [`Scenario`] (servers, guests made from
//! [`GuestSpec`](crate::GuestSpec)s with [`Device::Ivc`](crate::Device::Ivc)
//! devices, host commands, kill rules), gets a [`VmmBackend`] from
//! [`require_vmm_env`] and calls [`run_scenario`]:
//!
//! ```no_run
//! use ivc_guest_harness::*;
//! # fn main() -> Result<()> {
//! let Some(backend) = require_vmm_env() else { return Ok(()) };
//! let scenario = Scenario::new()
//!     .server("s0", 4 << 20, 1)
//!     .guest(GuestSpec::new("a", "insmod /lib/ivc/ivc.ko && echo hi > /dev/ivc0").device(Device::ivc_pio("s0")))?
//!     .guest(GuestSpec::new("b", "insmod /lib/ivc/ivc.ko && head -c 3 /dev/ivc0").device(Device::ivc_pio("s0")))?;
//! let outcome = run_scenario(&backend, &scenario)?;
//! outcome.assert_ran();
//! outcome.guest("a").assert_success();
//! assert!(outcome.guest("b").serial_contains("hi"));
//! # Ok(())
//! # }
//! ```
//!
//! Where the host's `/dev/kvm` has VMX or SVM, `ivc-scenario` runs on it
//! directly; elsewhere (these machines: a paravirtual KVM that cannot run
//! Linux) it runs inside a nested host, a Linux VM under QEMU TCG whose
//! kvm-amd runs on the emulated SVM CPU (`scripts/build-nested.sh`).

pub mod agent;
mod backend;
mod monitor;
pub mod protocol;
mod run;
mod scenario;

pub use backend::{
    hardware_virtualization, qemu_version, require_vmm_env, VmmBackend, BACKEND_ENV,
    NESTED_DIR_ENV, NESTED_QEMU_MIN_MAJOR, REQUIRE_ENV, SCENARIO_BIN_ENV, VMM_BIN_ENV,
};
pub use run::{run_scenario, HostOutcome, L1Report, ScenarioOutcome};
pub use scenario::{HostCommand, IvcDevice, KernelImage, KillRule, Scenario, ServerSpec, VmmGuest};
