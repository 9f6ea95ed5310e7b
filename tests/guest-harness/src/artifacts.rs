//! Where the guest kernel, the initramfs and QEMU are.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{HarnessError, Result};

/// Kernel image file name (docs/architecture.md, "Guest artifacts").
pub const KERNEL_FILE: &str = "bzImage";
/// Initramfs file name (docs/architecture.md, "Guest artifacts").
pub const INITRAMFS_FILE: &str = "initramfs.cpio.gz";
/// Overrides the artifact directory.
pub const GUEST_DIR_ENV: &str = "IVC_GUEST_DIR";
/// Overrides the QEMU binary (a path or a name looked up in `PATH`).
pub const QEMU_ENV: &str = "IVC_QEMU";
/// Overrides the QEMU the nested host's L1 runs under (tier 4); falls back
/// to [`QEMU_ENV`]. `scripts/build-qemu.sh` builds the one the scripts set:
/// QEMU with our fix for a lost interrupt request (docs/testing.md).
pub const L1_QEMU_ENV: &str = "IVC_L1_QEMU";
/// The QEMU binary used when [`QEMU_ENV`] is not set.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// Everything needed to boot a guest: kernel, initramfs and the QEMU binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestArtifacts {
    dir: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
    qemu: PathBuf,
}

impl GuestArtifacts {
    /// Finds the artifacts built by `scripts/build-guest.sh`: in `$IVC_GUEST_DIR`
    /// if set, else in `<workspace>/target/guest`. The QEMU binary is
    /// `$IVC_QEMU` if set, else `qemu-system-x86_64` from `PATH`.
    pub fn locate() -> Result<Self> {
        let dir = match std::env::var_os(GUEST_DIR_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => default_guest_dir(),
        };
        Ok(Self::from_dir(dir)?.with_qemu(qemu_binary()))
    }

    /// Uses the artifacts in `dir`, ignoring the environment. Fails, naming
    /// every missing file, unless both the kernel and the initramfs are there.
    pub fn from_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let kernel = dir.join(KERNEL_FILE);
        let initramfs = dir.join(INITRAMFS_FILE);
        let missing: Vec<String> = [&kernel, &initramfs]
            .iter()
            .filter(|p| !p.is_file())
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if !missing.is_empty() {
            return Err(HarnessError::ArtifactsMissing { dir, missing });
        }
        Ok(GuestArtifacts {
            dir,
            kernel,
            initramfs,
            qemu: PathBuf::from(DEFAULT_QEMU),
        })
    }

    /// Replaces the QEMU binary. Tests of the harness itself point this at a
    /// stand-in script; it is also the way to run QEMU through a wrapper.
    pub fn with_qemu(mut self, qemu: impl Into<PathBuf>) -> Self {
        self.qemu = qemu.into();
        self
    }

    /// The artifact directory (holds `ivc.ko` too, when the build made one).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel image passed to QEMU's `-kernel`.
    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    /// The initramfs passed to QEMU's `-initrd`.
    pub fn initramfs(&self) -> &Path {
        &self.initramfs
    }

    /// The QEMU binary.
    pub fn qemu(&self) -> &Path {
        &self.qemu
    }
}

/// `<workspace root>/target/guest`. The root is fixed at compile time from this
/// crate's manifest directory (`tests/guest-harness`, two levels down), so
/// it does not depend on the directory a test happens to run in.
pub fn default_guest_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().and_then(Path::parent).unwrap_or(manifest);
    root.join("target").join("guest")
}

/// The QEMU binary: `$IVC_QEMU` if set, else `qemu-system-x86_64` from `PATH`.
pub(crate) fn qemu_binary() -> PathBuf {
    std::env::var_os(QEMU_ENV)
        .filter(|q| !q.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_QEMU), PathBuf::from)
}

/// The QEMU for the nested host's L1: `$IVC_L1_QEMU` if set, else
/// [`qemu_binary`].
pub(crate) fn l1_qemu_binary() -> PathBuf {
    std::env::var_os(L1_QEMU_ENV)
        .filter(|q| !q.is_empty())
        .map_or_else(qemu_binary, PathBuf::from)
}

/// Checks that the QEMU binary (`$IVC_QEMU` or `qemu-system-x86_64`) runs.
/// The error explains how to install it.
pub fn qemu_available() -> std::result::Result<(), String> {
    check_qemu(&qemu_binary())
}

pub(crate) fn check_qemu(qemu: &Path) -> std::result::Result<(), String> {
    let hint = "install the Debian package qemu-system-x86 (scripts/install-prereqs.sh does) \
                or point IVC_QEMU at a qemu-system-x86_64 binary";
    match Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "'{} --version' failed ({s}); {hint}",
            qemu.display()
        )),
        Err(e) => Err(format!("cannot run '{}': {e}; {hint}", qemu.display())),
    }
}

/// For tests that boot guests: the artifacts if guests can run here, `None`
/// (after printing `skipped <test>: <why>`) if they cannot.
///
/// With `IVC_REQUIRE_GUEST=1` (set by the project's test script and CI) it
/// panics instead of skipping, so a missing build can never pass silently.
///
/// ```no_run
/// # use ivc_guest_harness::*;
/// let Some(artifacts) = require_guest_env() else { return };
/// ```
#[track_caller]
pub fn require_guest_env() -> Option<GuestArtifacts> {
    let reason = match GuestArtifacts::locate() {
        Ok(a) => match check_qemu(a.qemu()) {
            Ok(()) => return Some(a),
            Err(e) => e,
        },
        Err(e) => e.to_string(),
    };
    skip_unless_required("IVC_REQUIRE_GUEST", "guests cannot run", &reason);
    None
}

/// A test cannot run here for `reason`: with `require_var=1` in the
/// environment (the project's test script and CI) that is a failure (panic);
/// otherwise the test is skipped, saying so as `skipped <test>: <reason>`.
#[track_caller]
pub(crate) fn skip_unless_required(require_var: &str, what: &str, reason: &str) {
    if std::env::var(require_var).is_ok_and(|v| v == "1") {
        panic!("{require_var}=1 but {what}: {reason}");
    }
    report_skip(reason);
}

/// Says that the calling test is skipped and why, as `skipped <test>:
/// <reason>` (`scripts/test.sh` counts and lists these lines as skips).
pub fn report_skip(reason: &str) {
    // Straight to the process's stderr rather than eprintln!: the test harness
    // captures eprintln! of passing tests, and a skip must stay visible.
    use std::io::Write;
    // libtest names each test's thread after the test.
    let current = std::thread::current();
    let test = current.name().unwrap_or("test");
    let _ = writeln!(std::io::stderr(), "skipped {test}: {reason}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_dir_names_every_missing_file_and_the_build_command() {
        let dir = std::env::temp_dir().join("ivc-harness-no-such-dir");
        let err = GuestArtifacts::from_dir(&dir).expect_err("empty dir");
        let msg = err.to_string();
        assert!(msg.contains("bzImage"), "{msg}");
        assert!(msg.contains("initramfs.cpio.gz"), "{msg}");
        assert!(msg.contains("scripts/build-guest.sh"), "{msg}");
        assert!(msg.contains("IVC_GUEST_DIR"), "{msg}");
    }

    #[test]
    fn default_dir_is_the_workspace_target_guest() {
        let dir = default_guest_dir();
        assert!(dir.ends_with("target/guest"));
        // The workspace root is the directory holding the workspace manifest.
        let root = dir.parent().and_then(Path::parent).expect("two levels");
        assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
        assert!(root.join("tests/guest-harness").is_dir());
    }

    #[test]
    fn check_qemu_reports_a_missing_binary() {
        let err = check_qemu(Path::new("/nonexistent/qemu")).expect_err("missing");
        assert!(err.contains("qemu-system-x86"), "{err}");
    }
}
