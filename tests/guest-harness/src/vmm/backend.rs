//! Where ivc-vmm runs: directly on this host (its `/dev/kvm` has VMX or SVM),
//! or inside a nested host ("L1", a Linux VM under QEMU TCG whose own KVM
//! runs on the emulated SVM CPU). One API, two backends: both run the same
//! `ivc-scenario` program and speak the same [`protocol`](super::protocol).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::artifacts::{default_guest_dir, l1_qemu_binary, GUEST_DIR_ENV};

/// Forces a backend: `direct` or `nested`.
pub const BACKEND_ENV: &str = "IVC_VMM_BACKEND";
/// Where the nested host image is (default `<workspace>/target/nested`).
pub const NESTED_DIR_ENV: &str = "IVC_NESTED_DIR";
/// Overrides the ivc-vmm binary of the direct backend.
pub const VMM_BIN_ENV: &str = "IVC_VMM_BIN";
/// Overrides the ivc-scenario binary of the direct backend.
pub const SCENARIO_BIN_ENV: &str = "IVC_SCENARIO_BIN";
/// With `1`, tier-4 tests fail instead of skipping when no backend can run.
pub const REQUIRE_ENV: &str = "IVC_REQUIRE_TIER4";
/// The oldest QEMU whose multi-threaded TCG runs nested KVM reliably: 7.2
/// livelocks when the L1 kernel live-patches code and does not trap XSETBV
/// for the nested guest (docs/testing.md, "Tier 4").
pub const NESTED_QEMU_MIN_MAJOR: u32 = 10;

/// How ivc-vmm is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmmBackend {
    /// On this host.
    Direct {
        /// ivc-vmm.
        vmm: PathBuf,
        /// ivc-scenario.
        scenario: PathBuf,
        /// Guest kernel (PVH vmlinux).
        kernel: PathBuf,
        /// Guest initramfs.
        initrd: PathBuf,
    },
    /// Inside a nested host under QEMU TCG.
    Nested {
        /// The QEMU binary.
        qemu: PathBuf,
        /// Its version, e.g. `10.0.2`.
        qemu_version: String,
        /// The image directory (`vmlinuz`, `l1.cpio`, `manifest`).
        image: PathBuf,
        /// The L1 kernel package, from the manifest.
        l1_kernel: String,
    },
}

/// What this host's `/dev/kvm` is: `Ok` when it has hardware
/// virtualization, otherwise why Linux guests cannot run under it.
pub fn hardware_virtualization() -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("there is no /dev/kvm".into());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err(
            "/dev/kvm is PVM (kvm_pvm loaded): guest kernel code is emulated and a \
                    Linux guest's SYSCALL never reaches its kernel"
                .into(),
        );
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    if !flags.split_whitespace().any(|f| f == "vmx" || f == "svm") {
        return Err("the CPU shows neither vmx nor svm".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm cannot be opened: {e}"))
}

fn workspace_target() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .join("target")
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A binary built by cargo next to the running test (`target/<profile>/`),
/// else in `target/release`.
fn cargo_bin(name: &str) -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| {
        // Test executables live in target/<profile>/deps.
        let dir = exe.parent()?;
        let dir = if dir.ends_with("deps") {
            dir.parent()?
        } else {
            dir
        };
        Some(dir.join(name))
    });
    match beside {
        Some(p) if p.is_file() => p,
        _ => workspace_target().join("release").join(name),
    }
}

/// `(major, full)` of `qemu --version`.
pub fn qemu_version(qemu: &Path) -> Result<(u32, String), String> {
    let out = Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run '{}': {e}", qemu.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .ok_or_else(|| {
            format!(
                "'{} --version' printed no version: {text:?}",
                qemu.display()
            )
        })?;
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("cannot parse QEMU version {version:?}"))?;
    Ok((major, version.to_string()))
}

impl VmmBackend {
    /// The direct backend, if every piece is there.
    pub fn direct() -> Result<Self, String> {
        hardware_virtualization()?;
        let guest = env_path(GUEST_DIR_ENV).unwrap_or_else(default_guest_dir);
        let b = VmmBackend::Direct {
            vmm: env_path(VMM_BIN_ENV).unwrap_or_else(|| cargo_bin("ivc-vmm")),
            scenario: env_path(SCENARIO_BIN_ENV).unwrap_or_else(|| cargo_bin("ivc-scenario")),
            kernel: guest.join("vmlinux"),
            initrd: guest.join("initramfs.cpio.gz"),
        };
        if let VmmBackend::Direct {
            vmm,
            scenario,
            kernel,
            initrd,
        } = &b
        {
            // The agent runs the servers from next to ivc-vmm.
            let rendezvous = vmm.with_file_name("ivc-rendezvous");
            for (what, p, hint) in [
                ("ivc-vmm", vmm, "cargo build --release -p ivc-vmm"),
                (
                    "ivc-rendezvous",
                    &rendezvous,
                    "cargo build --release -p ivc-rendezvous",
                ),
                (
                    "ivc-scenario",
                    scenario,
                    "cargo build --release -p ivc-guest-harness",
                ),
                ("guest vmlinux", kernel, "scripts/build-guest.sh"),
                ("guest initramfs", initrd, "scripts/build-guest.sh"),
            ] {
                if !p.is_file() {
                    return Err(format!(
                        "{what} not found at {}; build it with {hint}",
                        p.display()
                    ));
                }
            }
        }
        Ok(b)
    }

    /// The nested backend, if QEMU is new enough and the image is built.
    pub fn nested() -> Result<Self, String> {
        let qemu = l1_qemu_binary();
        let (major, qemu_version) = qemu_version(&qemu)?;
        if major < NESTED_QEMU_MIN_MAJOR {
            return Err(format!(
                "nested KVM needs QEMU >= {NESTED_QEMU_MIN_MAJOR}, found {qemu_version} ('{}'): \
                 older multi-threaded TCG livelocks when the L1 kernel patches its code; \
                 scripts/install-prereqs.sh installs it from the backports suite",
                qemu.display()
            ));
        }
        let image = env_path(NESTED_DIR_ENV).unwrap_or_else(|| workspace_target().join("nested"));
        let missing: Vec<&str> = ["vmlinuz", "l1.cpio", "manifest"]
            .into_iter()
            .filter(|f| !image.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "nested host image incomplete in {} (missing {}); build it with scripts/build-nested.sh",
                image.display(),
                missing.join(", ")
            ));
        }
        let manifest = std::fs::read_to_string(image.join("manifest")).unwrap_or_default();
        let l1_kernel = manifest
            .lines()
            .find_map(|l| l.strip_prefix("l1_kernel="))
            .unwrap_or("unknown")
            .to_string();
        Ok(VmmBackend::Nested {
            qemu,
            qemu_version,
            image,
            l1_kernel,
        })
    }

    /// Direct where the hardware allows, nested otherwise; `IVC_VMM_BACKEND`
    /// forces one. The error says what is missing.
    pub fn detect() -> Result<Self, String> {
        match std::env::var(BACKEND_ENV).as_deref() {
            Ok("direct") => Self::direct(),
            Ok("nested") => Self::nested(),
            Ok("") | Err(_) => match hardware_virtualization() {
                Ok(()) => Self::direct(),
                Err(why) => {
                    Self::nested().map_err(|e| format!("{why}, so ivc-vmm runs nested, but: {e}"))
                }
            },
            Ok(other) => Err(format!("{BACKEND_ENV}={other:?}: use 'direct' or 'nested'")),
        }
    }

    /// A label for reports: where the guests ran.
    pub fn describe(&self) -> String {
        match self {
            VmmBackend::Direct { .. } => "ivc-vmm on this host's KVM (hardware virtualization)".into(),
            VmmBackend::Nested {
                qemu_version,
                l1_kernel,
                ..
            } => format!(
                "ivc-vmm in a nested host: L1 Linux {l1_kernel} with kvm-amd under QEMU {qemu_version} TCG (emulated)"
            ),
        }
    }

    /// Whether guests run emulated (figures are not hardware figures).
    pub fn emulated(&self) -> bool {
        matches!(self, VmmBackend::Nested { .. })
    }
}

/// For tier-4 tests: the backend if Linux guests can run in ivc-vmm here,
/// `None` (after printing `skipped <test>: <why>`) if not. With
/// `IVC_REQUIRE_TIER4=1` (set by scripts/test.sh) it panics instead, so a
/// missing piece can never pass as a skip.
#[track_caller]
pub fn require_vmm_env() -> Option<VmmBackend> {
    match VmmBackend::detect() {
        Ok(b) => Some(b),
        Err(reason) => {
            crate::artifacts::skip_unless_required(
                REQUIRE_ENV,
                "Linux guests cannot run in ivc-vmm here",
                &reason,
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_version_parses_and_reports_missing_binaries() {
        let err = qemu_version(Path::new("/nonexistent/qemu")).expect_err("missing");
        assert!(err.contains("/nonexistent/qemu"), "{err}");
        // A stand-in that prints what QEMU prints.
        let dir = std::env::temp_dir().join(format!("ivc-qv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let fake = dir.join("qemu");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)'\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            qemu_version(&fake).expect("parses"),
            (7, "7.2.19".to_string())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
