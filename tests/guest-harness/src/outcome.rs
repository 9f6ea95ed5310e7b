//! What a finished guest run produced, and assertions on it.

use std::process::ExitStatus;
use std::time::Duration;

/// Lines of serial output quoted in failure messages.
pub const TAIL_LINES: usize = 60;

/// How the kernel starts the report of trouble (mm/, kernel/panic.c,
/// lib/bug.c, arch/x86/kernel/traps.c, the sanitizers, the lockup, hung-task
/// and RCU-stall detectors). Matched at the start of a console message, after
/// the printk timestamp, so that a test's own output such as `DEBUG: x` or
/// `no BUG: here` is not taken for a kernel report.
const KERNEL_ERROR_MARKERS: &[&str] = &[
    "Kernel panic",
    "BUG:",
    "kernel BUG at",
    "Oops:",
    "Oops -",
    "WARNING:",
    "general protection fault",
    "Unable to handle kernel",
    "UBSAN:",
    "KASAN:",
    "rcu: INFO:",
    "INFO: task ",
    "INFO: rcu_",
    "watchdog: BUG:",
];

/// Whether a console line is the start of a kernel trouble report.
pub(crate) fn is_kernel_error(line: &str) -> bool {
    let message = strip_timestamp(line);
    KERNEL_ERROR_MARKERS.iter().any(|m| message.starts_with(m))
}

/// The message without its `[    1.234567] ` printk timestamp, if it has one.
fn strip_timestamp(line: &str) -> &str {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            if rest[..end]
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == ' ')
            {
                return rest[end + 1..].trim_start();
            }
        }
    }
    trimmed
}

/// The result of one guest run.
#[derive(Debug, Clone)]
pub struct GuestOutcome {
    /// The spec's name.
    pub name: String,
    /// The command's exit status, from the init's `IVC_EXIT=<status>` line;
    /// `None` if the guest never printed it (timeout, kernel panic, boot
    /// failure, QEMU error).
    pub exit_status: Option<i32>,
    /// Everything the guest printed on its console, lines joined by `\n`
    /// (carriage returns removed).
    pub serial: String,
    /// Whether the spec's timeout expired and the harness killed QEMU.
    pub timed_out: bool,
    /// How the VM process ended: QEMU (success after the guest's `reboot -f`;
    /// killed by a signal after a timeout or [`Guest::kill`](crate::Guest::kill)),
    /// or ivc-vmm for guests run through [`run_scenario`](crate::run_scenario)
    /// (status 0 after `reboot -f`, SIGKILL after a timeout or kill rule).
    pub vm_status: ExitStatus,
    /// What the VM process printed on its stderr (its own errors and warnings).
    pub vm_stderr: String,
    /// Wall-clock time from spawn to the VM process's exit.
    pub elapsed: Duration,
}

impl GuestOutcome {
    /// Whether the serial output contains `needle` anywhere.
    pub fn serial_contains(&self, needle: &str) -> bool {
        self.serial.contains(needle)
    }

    /// Console lines that report kernel trouble (oops, BUG, WARNING, panic,
    /// sanitizer reports, stalls), in order.
    pub fn kernel_errors(&self) -> Vec<&str> {
        self.serial.lines().filter(|l| is_kernel_error(l)).collect()
    }

    /// Panics, with a report ending in the serial tail, unless the command
    /// exited with status 0 in time and the kernel reported no trouble.
    #[track_caller]
    pub fn assert_success(&self) {
        let mut problems = Vec::new();
        if self.timed_out {
            problems.push(format!(
                "timed out after {:.1?} and was killed",
                self.elapsed
            ));
        }
        match self.exit_status {
            Some(0) => {}
            Some(s) => problems.push(format!("the command exited with status {s}")),
            None if self.timed_out => {}
            None => problems.push(format!(
                "no IVC_EXIT line: the guest did not finish its command (VM process {})",
                self.vm_status
            )),
        }
        let oopses = self.kernel_errors();
        if !oopses.is_empty() {
            problems.push(format!("the kernel reported: {}", oopses.join(" | ")));
        }
        if !problems.is_empty() {
            panic!(
                "guest '{}' failed: {}\n{}",
                self.name,
                problems.join("; "),
                self.report()
            );
        }
    }

    /// The serial tail and QEMU's stderr, formatted for failure messages.
    pub fn report(&self) -> String {
        let lines: Vec<&str> = self.serial.lines().collect();
        format_tail(&self.name, &lines, &self.vm_stderr)
    }
}

/// The last [`TAIL_LINES`] lines, framed so they stand out in test output,
/// then the VM process's stderr if it said anything.
pub(crate) fn format_tail<S: AsRef<str>>(name: &str, lines: &[S], vm_stderr: &str) -> String {
    let skip = lines.len().saturating_sub(TAIL_LINES);
    let mut out = format!(
        "---- serial of '{name}' (last {} of {} lines) ----\n",
        lines.len() - skip,
        lines.len()
    );
    for l in &lines[skip..] {
        out.push_str(l.as_ref());
        out.push('\n');
    }
    if !vm_stderr.trim().is_empty() {
        out.push_str(&format!("---- VM process stderr of '{name}' ----\n"));
        out.push_str(vm_stderr.trim_end());
        out.push('\n');
    }
    out.push_str("----");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn outcome(exit: Option<i32>, serial: &str) -> GuestOutcome {
        GuestOutcome {
            name: "g".into(),
            exit_status: exit,
            serial: serial.into(),
            timed_out: false,
            vm_status: ExitStatus::from_raw(0),
            vm_stderr: String::new(),
            elapsed: Duration::from_secs(1),
        }
    }

    #[test]
    fn success() {
        let o = outcome(Some(0), "hello\nIVC_EXIT=0");
        o.assert_success();
        assert!(o.serial_contains("hello"));
        assert!(o.kernel_errors().is_empty());
    }

    #[test]
    #[should_panic(expected = "exited with status 3")]
    fn non_zero_exit_fails() {
        outcome(Some(3), "IVC_EXIT=3").assert_success();
    }

    #[test]
    #[should_panic(expected = "no IVC_EXIT line")]
    fn missing_exit_fails() {
        outcome(None, "Kernel panic - not syncing").assert_success();
    }

    #[test]
    fn oops_fails_even_with_exit_zero() {
        let o = outcome(
            Some(0),
            "[    2.1] BUG: kernel NULL pointer dereference, address: 0\n\
             [    2.1] Oops: 0002 [#1] SMP\nIVC_EXIT=0",
        );
        assert_eq!(o.kernel_errors().len(), 2);
        let msg = std::panic::catch_unwind(|| o.assert_success())
            .expect_err("must fail")
            .downcast::<String>()
            .expect("formatted panic");
        assert!(msg.contains("NULL pointer dereference"), "{msg}");
        assert!(msg.contains("---- serial of 'g'"), "{msg}");
    }

    #[test]
    fn kernel_errors_are_recognised_at_the_start_of_a_message() {
        let o = outcome(
            Some(0),
            "[    1.000000] WARNING: CPU: 0 PID: 1 at drivers/ivc/ring.rs:10 f+0x1/0x2\n\
             [    1.000001] Kernel panic - not syncing: Fatal exception\n\
             general protection fault, probably for non-canonical address\n\
             DEBUG: ring state\n\
             ivc-cat: no BUG: here\n\
             [    1.000002] ivc: channel broken: index out of range",
        );
        assert_eq!(
            o.kernel_errors(),
            [
                "[    1.000000] WARNING: CPU: 0 PID: 1 at drivers/ivc/ring.rs:10 f+0x1/0x2",
                "[    1.000001] Kernel panic - not syncing: Fatal exception",
                "general protection fault, probably for non-canonical address",
            ]
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        let t = format_tail("g", &lines, "qemu: warning");
        assert!(t.contains("last 60 of 100 lines"));
        assert!(!t.contains("line 39\n"));
        assert!(t.contains("line 40\n") && t.contains("line 99\n"));
        assert!(t.contains("VM process stderr of 'g'") && t.contains("qemu: warning"));
    }
}
