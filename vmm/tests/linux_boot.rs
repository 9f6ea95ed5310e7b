//! Booting the real guest kernel in ivc-vmm on this host's own /dev/kvm,
//! from both images a kernel build makes: the PVH vmlinux and the bzImage
//! (Linux boot protocol).
//!
//! On this project's hosts /dev/kvm is a paravirtual KVM (PVM) that emulates
//! guest kernel code: Linux boots through PVH entry, MP table, PCI scan and
//! 8250 setup, reaches `Run /init` (~85 s here), and then init's first
//! SYSCALL faults (PVM does not deliver it; see shared DESIGN notes and
//! docs/vmm.md). `linux_boots_to_pci_scan` checks the boot protocol, MP
//! table, initramfs hand-over, PCI and serial IRQ as far as the console shows
//! them (set IVC_LINUX_BOOT_FULL=1 to also wait for `Run /init`).
//! `linux_boots_to_pci_scan_from_bzimage` checks the same from the bzImage:
//! its decompressor is kernel-mode code too, so PVM emulates it, and
//! inflating the kernel takes minutes here before the first console line
//! (measured: ~47 KB of output per second; docs/vmm.md).
//!
//! Linux guests running their userspace in ivc-vmm (tier 4) are
//! `tests/guest-tests/tests/vmm_*.rs`: directly on a host whose /dev/kvm
//! has VMX/SVM, in a nested host under QEMU TCG everywhere else.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// DESIGN.md's command line for this host's PVM, plus console, the INT3
/// self-test skip, cx16 (the emulator cannot execute CMPXCHG16B, which
/// SLUB uses when CPUID advertises it), and `clocksource=jiffies`: PVM
/// emulates kernel code so slowly that one 1 ms tick (HZ=1000) can take
/// over 1 ms of real time (2.2 ms measured with other VMs starting
/// meanwhile), and once the kernel keeps time with a real clock (kvm-clock,
/// from `clocksource_done_booting` on) its periodic tick handler then
/// catches up on missed ticks forever (`tick_handle_periodic`'s loop, with
/// interrupts off). Keeping time by the tick itself lets time run slow
/// instead. docs/vmm.md, "How far a Linux guest gets here".
const PVM_CMDLINE: &str = "console=ttyS0 ivc_no_int3_selftest clocksource=jiffies noxsave lpj=1000000 tsc=reliable \
clearcpuid=cx16,smap,smep,popcnt,pclmulqdq,aes,avx,avx2,sha_ni,vaes,vpclmulqdq,xsave,fma,f16c,bmi1,bmi2,sse4_1,sse4_2,ssse3,movbe,rdrand,rdseed,xsaveopt,xsavec,xsaves";

/// The guest artifacts of scripts/build-guest.sh: $IVC_GUEST_DIR or target/guest.
fn guest_dir() -> PathBuf {
    std::env::var_os("IVC_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/guest"))
}

/// The kernel image `kernel` (`vmlinux` or `bzImage`) and the initramfs of
/// scripts/build-guest.sh, or None after printing why the test skips.
fn guest_artifacts(test: &str, kernel: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = guest_dir();
    let (k, i) = (dir.join(kernel), dir.join("initramfs.cpio.gz"));
    if k.is_file() && i.is_file() {
        Some((k, i))
    } else {
        skip(
            test,
            &format!(
                "{} or {} missing; build them with scripts/build-guest.sh",
                k.display(),
                i.display()
            ),
        );
        None
    }
}

/// `ivc-vmm run` arguments booting the guest kernel with 512 MiB, then
/// `extra`.
fn linux_run_args(
    kernel: &std::path::Path,
    initrd: &std::path::Path,
    cmdline: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--kernel"].map(String::from).to_vec();
    args.push(kernel.to_string_lossy().into_owned());
    args.push("--initrd".into());
    args.push(initrd.to_string_lossy().into_owned());
    args.extend(["--mem", "512M", "--cmdline", cmdline].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs the VMM, feeding console lines to `until` until it returns true,
/// then SIGTERMs it. Returns (lines seen, seconds to the stop line, exit code).
fn boot_until(
    args: &[String],
    timeout: Duration,
    until: impl Fn(&str) -> bool,
) -> (Vec<String>, Option<f64>, Option<i32>) {
    let mut child = Command::new(vmm())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut lines = Vec::new();
    let mut hit = None;
    while start.elapsed() < timeout {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let stop = until(&line);
                lines.push(line);
                if stop {
                    hit = Some(start.elapsed().as_secs_f64());
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let code = child.wait().ok().and_then(|s| s.code());
    (lines, hit, code)
}

#[test]
fn linux_boots_to_pci_scan() {
    boots_to_pci_scan(
        "linux_boots_to_pci_scan",
        "vmlinux",
        Duration::from_secs(300),
    );
}

/// The bzImage's decompressor runs emulated (minutes, see the file's
/// comment) before the kernel prints anything.
#[test]
fn linux_boots_to_pci_scan_from_bzimage() {
    boots_to_pci_scan(
        "linux_boots_to_pci_scan_from_bzimage",
        "bzImage",
        Duration::from_secs(1200),
    );
}

/// Boots `kernel` until its serial driver is set up (with
/// IVC_LINUX_BOOT_FULL, until `Run /init`) and checks what the console
/// shows of the boot protocol, MP table, initramfs hand-over and PCI.
fn boots_to_pci_scan(test: &str, kernel: &str, timeout: Duration) {
    if skip_without_kvm(test) {
        return;
    }
    let Some((kernel, initrd)) = guest_artifacts(test, kernel) else {
        return;
    };
    let full = std::env::var_os("IVC_LINUX_BOOT_FULL").is_some();
    let args = linux_run_args(&kernel, &initrd, PVM_CMDLINE, &[]);
    let stop: &str = if full {
        "Run /init as init process"
    } else {
        "serial8250: ttyS0 I/O:0x3f8 (irq = 4"
    };
    let timeout = if full {
        timeout + Duration::from_secs(300)
    } else {
        timeout
    };
    let (lines, hit, code) = boot_until(&args, timeout, |l| l.contains(stop));
    let log = lines.join("\n");
    let seen = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(hit.is_some(), "never saw {stop:?}; console:\n{log}");
    eprintln!("{test}: {stop:?} after {:.1} s", hit.unwrap_or_default());
    // Our memory map became the e820 map, with our reserved legacy hole.
    assert!(
        seen("BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff]"),
        "{log}"
    );
    // The command line arrived intact.
    assert!(
        seen("Command line: console=ttyS0 ivc_no_int3_selftest"),
        "{log}"
    );
    // PVH module 0 / the zero page's ramdisk became the initramfs.
    assert!(seen("RAMDISK: [mem "), "{log}");
    // The MP table: CPUs and IOAPIC.
    assert!(
        seen("found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]"),
        "{log}"
    );
    assert!(
        seen("IOAPIC[0]: apic_id 1, version 17, address 0xfec00000, GSI 0-23"),
        "{log}"
    );
    // PCI through configuration mechanism #1, host bridge found.
    assert!(
        seen("PCI: Using configuration type 1 for base access"),
        "{log}"
    );
    assert!(
        seen("pci 0000:00:00.0: [8086:1237] type 00 class 0x060000"),
        "{log}"
    );
    assert!(!seen("Kernel panic") || full, "{log}");
    assert_eq!(code, Some(143), "VMM exit status after SIGTERM");
}
