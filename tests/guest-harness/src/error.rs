//! The one error type of the harness.
//!
//! Every variant that concerns a running guest carries the tail of its serial
//! output, so a failing test shows what the guest was doing without re-running
//! it with extra logging.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why the harness could not do what a test asked.
///
/// A guest that boots and then fails (non-zero exit, timeout, kernel oops) is
/// *not* an error: that is a [`GuestOutcome`](crate::GuestOutcome) for the test
/// to assert on. Errors are for the harness itself failing.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The guest kernel or initramfs is not where the contract says.
    #[error(
        "guest artifacts missing in {}: {}; build them with scripts/build-guest.sh \
         (or point IVC_GUEST_DIR at a directory holding them)",
        dir.display(),
        missing.join(", ")
    )]
    ArtifactsMissing {
        /// The directory that was searched.
        dir: PathBuf,
        /// The file names that were not found there.
        missing: Vec<String>,
    },

    /// QEMU cannot be run.
    #[error("{0}")]
    QemuUnavailable(String),

    /// The spec asks for something that cannot work (caught before QEMU starts,
    /// because QEMU's own message would be less clear).
    #[error("invalid guest spec for '{guest}': {reason}")]
    InvalidSpec {
        /// The guest's name.
        guest: String,
        /// What is wrong.
        reason: String,
    },

    /// The kernel command line would exceed the x86 boot protocol limit.
    #[error(
        "kernel command line for '{guest}' is {len} bytes, the x86 limit is {limit}: \
         the base64-encoded command takes 4/3 of its length; move long scripts into a \
         file (e.g. a shared-memory file or the initramfs) and run that instead"
    )]
    CmdlineTooLong {
        /// The guest's name.
        guest: String,
        /// The length of the command line that was built.
        len: usize,
        /// The largest length the kernel accepts.
        limit: usize,
    },

    /// Starting QEMU failed.
    #[error("starting '{}' for guest '{guest}' failed: {source}", program.display())]
    Spawn {
        /// The guest's name.
        guest: String,
        /// The QEMU binary that was run.
        program: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The guest ended while a test was still waiting for a line from it.
    #[error("guest '{guest}' ended before printing a line containing {pattern:?}\n{context}")]
    GuestEnded {
        /// The guest's name.
        guest: String,
        /// What was being waited for.
        pattern: String,
        /// Serial tail and QEMU's messages.
        context: String,
    },

    /// A wait for a line of output timed out.
    #[error(
        "guest '{guest}' printed no line containing {pattern:?} within {timeout:?}\n{context}"
    )]
    LineTimeout {
        /// The guest's name.
        guest: String,
        /// What was being waited for.
        pattern: String,
        /// How long the test waited.
        timeout: Duration,
        /// Serial tail and QEMU's messages.
        context: String,
    },

    /// Any other I/O failure (temporary files, signalling QEMU, ...).
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        HarnessError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Result type of the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
