//! What a test asks for: one guest, its command, devices and limits.

use std::time::Duration;

use crate::base64;
use crate::device::Device;
use crate::error::{HarnessError, Result};

/// The longest kernel command line x86 accepts: `COMMAND_LINE_SIZE` (2048)
/// less the terminating NUL.
pub const CMDLINE_MAX: usize = 2047;

/// Kernel parameters every guest gets, before the spec's own.
///
/// - `console=ttyS0`: the serial port is the harness's only view of the guest.
/// - `panic=-1`: a panic reboots at once, which with QEMU's `-no-reboot` ends
///   the run (the outcome then has no exit status) instead of hanging until
///   the timeout.
/// - `loglevel=5`: the console shows warnings and worse (every `WARNING:`,
///   `BUG:`, `Oops:`, panic) but not the ~200 info lines of a normal boot, which
///   would bury the test's output. Add `loglevel=8` to see everything.
/// - `no_timer_check`: skip the boot check that the timer interrupt arrives
///   through the IO-APIC within a few ticks. An emulated CPU on a busy host
///   can miss that window, and the kernel then panics with "IO-APIC + timer
///   doesn't work!" (seen in 2 of 16 boots with two CPU hogs running).
/// - no `oops=panic`: after an oops the kernel keeps running, so the guest
///   still reports its exit status and the console keeps the oops text for
///   [`GuestOutcome::kernel_errors`](crate::GuestOutcome::kernel_errors);
///   add it for tests that want an oops to end the guest.
pub const BASE_KERNEL_ARGS: &[&str] =
    &["console=ttyS0", "panic=-1", "loglevel=5", "no_timer_check"];

/// The kernel parameter carrying the command (docs/architecture.md, "Guest init").
pub const CMD_PARAM: &str = "ivc_cmd";

/// One guest to boot: built with [`GuestSpec::new`] and the setters.
///
/// ```
/// # use ivc_guest_harness::*;
/// # use std::time::Duration;
/// let spec = GuestSpec::new("a", "insmod /lib/ivc/ivc.ko && ivc-cat /dev/ivc0")
///     .device(Device::IvshmemPlain { mem_path: "/dev/shm/ring".into(), size: 1 << 20 })
///     .cpus(2)
///     .timeout(Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSpec {
    pub(crate) name: String,
    pub(crate) command: String,
    pub(crate) devices: Vec<Device>,
    pub(crate) memory_mib: u32,
    pub(crate) cpus: u32,
    pub(crate) timeout: Duration,
    pub(crate) kernel_args: Vec<String>,
}

impl GuestSpec {
    /// Default guest RAM: the kernel plus a busybox initramfs need ~64 MiB;
    /// the rest is room for test data in tmpfs.
    pub const DEFAULT_MEMORY_MIB: u32 = 256;
    /// Default number of vCPUs. One keeps TCG cheap on small hosts (a guest
    /// that polls shared memory keeps one host core busy per polling vCPU);
    /// tests of concurrency inside a guest ask for more.
    pub const DEFAULT_CPUS: u32 = 1;
    /// Default limit on the guest's whole run, boot included.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// A guest called `name` (used in log prefixes and messages) that runs the
    /// shell command `command` after boot. The command runs under busybox `sh`;
    /// its exit status becomes [`GuestOutcome::exit_status`](crate::GuestOutcome::exit_status).
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Self {
        GuestSpec {
            name: name.into(),
            command: command.into(),
            devices: Vec::new(),
            memory_mib: Self::DEFAULT_MEMORY_MIB,
            cpus: Self::DEFAULT_CPUS,
            timeout: Self::DEFAULT_TIMEOUT,
            kernel_args: Vec::new(),
        }
    }

    /// Adds a device (PCI devices appear in the guest in the order added).
    pub fn device(mut self, device: Device) -> Self {
        self.devices.push(device);
        self
    }

    /// Sets the guest RAM in MiB.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Sets the number of vCPUs.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Sets the limit on the whole run; when it passes, QEMU is killed and the
    /// outcome says `timed_out`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Appends a kernel command line parameter (e.g. `ivc.debug=1`,
    /// `loglevel=8`, `oops=panic`). Later parameters override earlier ones, so
    /// these can override [`BASE_KERNEL_ARGS`].
    pub fn kernel_arg(mut self, arg: impl Into<String>) -> Self {
        self.kernel_args.push(arg.into());
        self
    }

    /// The guest's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full kernel command line: [`BASE_KERNEL_ARGS`], the spec's own
    /// parameters, and last `ivc_cmd=<base64 of the command>`.
    pub fn kernel_cmdline(&self) -> Result<String> {
        let mut parts: Vec<String> = BASE_KERNEL_ARGS.iter().map(|s| s.to_string()).collect();
        for arg in &self.kernel_args {
            if arg.starts_with(&format!("{CMD_PARAM}=")) {
                return Err(self.invalid("set the command with GuestSpec::new, not kernel_arg"));
            }
            if arg.trim() == "--" {
                return Err(self.invalid(
                    "kernel_arg(\"--\") would pass ivc_cmd to init as an argument, not in its environment",
                ));
            }
            parts.push(arg.clone());
        }
        parts.push(format!(
            "{CMD_PARAM}={}",
            base64::encode(self.command.as_bytes())
        ));
        let cmdline = parts.join(" ");
        if cmdline.len() > CMDLINE_MAX {
            return Err(HarnessError::CmdlineTooLong {
                guest: self.name.clone(),
                len: cmdline.len(),
                limit: CMDLINE_MAX,
            });
        }
        Ok(cmdline)
    }

    /// Checks what QEMU would otherwise reject less clearly.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(self.invalid("the name is empty"));
        }
        if self.name.chars().any(char::is_control) {
            return Err(self.invalid("the name contains control characters"));
        }
        if self.cpus == 0 {
            return Err(self.invalid("cpus must be at least 1"));
        }
        if self.memory_mib < 32 {
            return Err(self.invalid("memory below 32 MiB cannot boot the guest"));
        }
        if self.timeout.is_zero() {
            return Err(self.invalid("the timeout is zero"));
        }
        Ok(())
    }

    pub(crate) fn invalid(&self, reason: impl Into<String>) -> HarnessError {
        HarnessError::InvalidSpec {
            guest: self.name.clone(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = GuestSpec::new("g", "true");
        assert_eq!(s.memory_mib, 256);
        assert_eq!(s.cpus, 1);
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert!(s.devices.is_empty());
        s.validate().expect("defaults are valid");
    }

    #[test]
    fn cmdline_has_base_args_then_spec_args_then_the_encoded_command() {
        let s = GuestSpec::new("g", "echo hello; exit 3").kernel_arg("ivc.debug=1");
        assert_eq!(
            s.kernel_cmdline().expect("short"),
            "console=ttyS0 panic=-1 loglevel=5 no_timer_check ivc.debug=1 ivc_cmd=ZWNobyBoZWxsbzsgZXhpdCAz"
        );
    }

    #[test]
    fn cmdline_survives_quotes_newlines_and_non_ascii() {
        let cmd = "printf '%s\\n' \"a b\" && echo 'é' | cat\nexit 0";
        let line = GuestSpec::new("g", cmd).kernel_cmdline().expect("short");
        let encoded = line.rsplit("ivc_cmd=").next().expect("param");
        assert!(!encoded.contains([' ', '"', '\'', '\n']));
        assert_eq!(encoded, base64::encode(cmd.as_bytes()));
    }

    #[test]
    fn cmdline_length_limit() {
        let fixed = "console=ttyS0 panic=-1 loglevel=5 no_timer_check ivc_cmd=".len();
        // Largest command (a multiple of 3 bytes, so no padding) that fits.
        let fits = (CMDLINE_MAX - fixed) / 4 * 3;
        let ok = GuestSpec::new("g", "x".repeat(fits)).kernel_cmdline();
        assert!(ok.expect("fits").len() <= CMDLINE_MAX);
        let err = GuestSpec::new("g", "x".repeat(fits + 3))
            .kernel_cmdline()
            .expect_err("too long");
        let msg = err.to_string();
        assert!(msg.contains("2047"), "{msg}");
        assert!(matches!(err, HarnessError::CmdlineTooLong { .. }));
    }

    #[test]
    fn command_cannot_be_smuggled_through_kernel_arg() {
        let s = GuestSpec::new("g", "true").kernel_arg("ivc_cmd=ZWNobw==");
        assert!(s.kernel_cmdline().is_err());
    }

    #[test]
    fn double_dash_is_refused() {
        let s = GuestSpec::new("g", "true").kernel_arg("--");
        assert!(s.kernel_cmdline().is_err());
    }

    #[test]
    fn validation() {
        assert!(GuestSpec::new("", "true").validate().is_err());
        assert!(GuestSpec::new("a\0b", "true").validate().is_err());
        assert!(GuestSpec::new("g", "true").cpus(0).validate().is_err());
        assert!(GuestSpec::new("g", "true")
            .memory_mib(8)
            .validate()
            .is_err());
        assert!(GuestSpec::new("g", "true")
            .timeout(Duration::ZERO)
            .validate()
            .is_err());
    }
}
