//! The emulator's memory order, as the channel needs it: a guest `mfence`
//! must keep the guest's store ahead of its next load as another CPU sees
//! them. The wake-up protocol stands on exactly that (the waiter stores its
//! request, fences, re-checks the producer index; the producer publishes,
//! fences, reads the request: docs/protocol.md), and QEMU's TCG with a
//! single possible vCPU translates guest code without the barriers (QEMU
//! before 8.1 drops them unless a guest can have more than one CPU).
//!
//! The test guest (`test=sb-litmus`) and this process play the
//! store-buffering litmus test over an ivshmem-plain device's memory: each
//! round, the guest stores X, fences, loads Y; we store Y, fence, load X,
//! after a delay that varies from round to round so the two sequences
//! overlap in every way. Both loads missing the other side's store is the
//! outcome fences forbid. The guest runs the way the QEMU guests of our
//! tests run (`-smp 1,sockets=2,maxcpus=2`, see
//! `tests/guest-harness/src/qemu.rs`), and the test asserts that no
//! round shows it.
//!
//! Knobs, for finding out what an emulator does: `IVC_QEMU` (the QEMU
//! binary, default `qemu-system-x86_64` from PATH), `IVC_LITMUS_SMP` (the
//! `-smp` value, default `1,sockets=2,maxcpus=2`; `1` is the setting our
//! harness forbids), `IVC_LITMUS_ROUNDS` (default 200000). Skipped, with a
//! message, without QEMU (unless `IVC_REQUIRE_QEMU=1`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vm_memory::{FileOffset, MmapRegion};

use common::{skip, temp_path, test_guest};

const GO: usize = 0x000;
const X: usize = 0x040;
const Y: usize = 0x080;
const DONE: usize = 0x0c0;
const R1: usize = 0x100;
const READY: usize = 0x140;
const READY_MAGIC: u32 = u32::from_le_bytes(*b"SBLT");
const SHM_SIZE: usize = 1 << 20;

fn qemu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IVC_QEMU").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("qemu-system-x86_64"))
            .find(|p| p.is_file())
    });
    assert!(
        found.is_some() || std::env::var("IVC_REQUIRE_QEMU").as_deref() != Ok("1"),
        "qemu-system-x86_64 not found in PATH and IVC_REQUIRE_QEMU=1"
    );
    found
}

/// The shared file, mapped here.
struct Shared {
    // vm-memory's MmapRegion owns the mapping and unmaps it on drop.
    region: MmapRegion,
    path: PathBuf,
}

impl Shared {
    fn new(name: &str) -> Shared {
        let path = temp_path(name);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create the shared file");
        f.set_len(SHM_SIZE as u64).expect("size the shared file");
        let region = MmapRegion::build(
            Some(FileOffset::new(f, 0)),
            SHM_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .expect("mmap of the shared file");
        Shared { region, path }
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= SHM_SIZE);
        // SAFETY: in the mapping (checked), 4-byte aligned (the mapping is
        // page aligned), and only ever accessed atomically by this process
        // (the guest's accesses are another process's).
        unsafe { &*self.region.as_ptr().add(off).cast::<AtomicU32>() }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits until `cond`, failing after `limit` with `what`.
fn spin_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut n = 0u32;
    while !cond() {
        n = n.wrapping_add(1);
        if n % 4096 == 0 && start.elapsed() > limit {
            panic!("timed out waiting for {what}");
        }
        std::hint::spin_loop();
    }
}

/// Plays `rounds` rounds against the guest; returns the rounds in which
/// both loads missed the other side's store.
fn litmus(qemu: &PathBuf, smp: &str, rounds: u32) -> u64 {
    let shm = Shared::new(&format!("litmus-{}", smp.replace(',', "-")));
    let vm = Command::new(qemu)
        .args(["-M", "pc", "-accel", "tcg", "-m", "128M", "-smp", smp])
        .args([
            "-display", "none", "-monitor", "none", "-nic", "none", "-vga", "none",
        ])
        .args(["-no-reboot", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .arg("-object")
        .arg(format!(
            "memory-backend-file,id=shm,mem-path={},size={SHM_SIZE},share=on",
            shm.path.display()
        ))
        .args(["-device", "ivshmem-plain,memdev=shm"])
        .arg("-kernel")
        .arg(test_guest())
        .arg("-append")
        .arg(format!("test=sb-litmus rounds={rounds}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start QEMU");
    let limit = Duration::from_secs(60);
    spin_until(limit, "the guest's READY", || {
        shm.word(READY).load(Ordering::Acquire) == READY_MAGIC
    });
    let mut both_missed = 0u64;
    for k in 1..=rounds {
        spin_until(limit, "the guest's DONE", || {
            shm.word(DONE).load(Ordering::Acquire) == k - 1
        });
        shm.word(GO).store(k, Ordering::Release);
        // 0..255 spins: the guest's reaction to GO lands anywhere around
        // our store, round after round.
        for _ in 0..(k.wrapping_mul(2_654_435_761) >> 24) {
            std::hint::spin_loop();
        }
        shm.word(Y).store(k, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let r2 = shm.word(X).load(Ordering::Relaxed);
        spin_until(limit, "the guest's DONE", || {
            shm.word(DONE).load(Ordering::Acquire) == k
        });
        let r1 = shm.word(R1).load(Ordering::Relaxed);
        if r1 < k && r2 < k {
            both_missed += 1;
        }
    }
    let out = vm.wait_with_output().expect("QEMU output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // isa-debug-exit: status (V << 1) | 1; the guest writes 0 on success.
    assert_eq!(
        out.status.code(),
        Some(1),
        "the guest failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sb-litmus-done"), "{stdout}");
    both_missed
}

#[test]
fn guest_fences_order_a_store_before_a_load_across_processes() {
    let test = "guest_fences_order_a_store_before_a_load_across_processes";
    let Some(qemu) = qemu() else {
        skip(test, "qemu-system-x86_64 not found in PATH");
        return;
    };
    let smp = std::env::var("IVC_LITMUS_SMP").unwrap_or_else(|_| "1,sockets=2,maxcpus=2".into());
    let rounds = std::env::var("IVC_LITMUS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let start = Instant::now();
    let missed = litmus(&qemu, &smp, rounds);
    eprintln!(
        "sb-litmus: {} -smp {smp}: {missed} of {rounds} rounds with both loads missing the other store ({:.1} s)",
        qemu.display(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(
        missed, 0,
        "-smp {smp}: the guest's mfence did not order its store before its load in {missed} of {rounds} rounds"
    );
}
