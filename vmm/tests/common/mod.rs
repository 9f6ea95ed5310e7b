//! Shared helpers for the integration tests: finding /dev/kvm, the test
//! guest and the binary; running the VMM with a deadline.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The ivc-vmm under test: the one cargo built with these tests, or
/// `$IVC_VMM_BIN` (the nested host runs these tests with its own copy).
pub fn vmm() -> &'static str {
    static VMM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::env::var("IVC_VMM_BIN")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ivc-vmm").to_string())
    });
    VMM.as_str()
}

/// Err(reason) when /dev/kvm cannot be used here.
pub fn kvm_available() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm not available: {e}"))
}

/// Says that `test` is skipped and why, as `skipped <test>: <reason>`,
/// straight to the process's stderr: the test harness captures `eprintln!`
/// of passing tests, and a skip must stay visible (scripts/test.sh counts
/// these lines as skips, not passes).
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped {test}: {reason}");
}

/// Prints why the test is skipped and returns true when KVM is missing.
/// With `IVC_REQUIRE_KVM=1` (scripts/test.sh sets it where /dev/kvm
/// exists) a missing KVM fails the test instead.
pub fn skip_without_kvm(test: &str) -> bool {
    match kvm_available() {
        Ok(()) => false,
        Err(reason) if std::env::var("IVC_REQUIRE_KVM").as_deref() == Ok("1") => {
            panic!("{test}: IVC_REQUIRE_KVM=1 but {reason}")
        }
        Err(reason) => {
            skip(test, &reason);
            true
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("vmm/ has a parent")
        .to_path_buf()
}

/// The bare-metal test guest: $IVC_TEST_GUEST or the default build output.
pub fn test_guest() -> PathBuf {
    let path = std::env::var_os("IVC_TEST_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_root().join("vmm/test-guest/target/x86_64-unknown-none/release/ivc-test-guest")
        });
    assert!(
        path.is_file(),
        "test guest {} not found: build it with scripts/build-test-guest.sh (or set IVC_TEST_GUEST)",
        path.display()
    );
    path
}

/// A file in the temp dir named after this process and `name`.
pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ivc-vmm-it-{}-{name}", std::process::id()))
}

/// Writes a PVH ELF around 32-bit `code` loaded at 1 MiB.
pub fn guest_elf(name: &str, code: &[u8]) -> PathBuf {
    let p = temp_path(&format!("{name}.elf"));
    std::fs::write(&p, ivc_vmm::boot::elf_image::build(code, 0x10_0000, true))
        .expect("write guest ELF");
    p
}

pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

pub fn spawn(args: &[&str]) -> Child {
    Command::new(vmm())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ivc-vmm")
}

/// Runs `ivc-vmm ARGS`; kills it and fails the test after `timeout`.
pub fn run_vmm(args: &[&str], timeout: Duration) -> Outcome {
    let child = spawn(args);
    wait(child, timeout)
}

pub fn wait(mut child: Child, timeout: Duration) -> Outcome {
    let out = read_all(child.stdout.take().expect("stdout piped"));
    let err = read_all(child.stderr.take().expect("stderr piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ivc-vmm {:?} did not finish within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
