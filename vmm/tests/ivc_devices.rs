//! The ivc devices end to end: a rendezvous server (ivc-rendezvous's, in a
//! thread of the test) and two `ivc-vmm` processes under /dev/kvm, each running the bare-metal test
//! guest (vmm/test-guest), for every variant:
//!
//! * 1 MiB (or more) in both directions at once, every byte checked at its
//!   position in the receiver and FNV checksums compared across the VMs;
//! * `shm-irq`: doorbell interrupts counted in the guests;
//! * SIGKILL of one VMM mid-transfer: the other VMM and the server keep
//!   running and the surviving guest sees the peer gone;
//! * hostile input: garbage at every offset and width of every BAR, and a
//!   peer that corrupts the shared channel.
//!
//! The tests of this file run one at a time (they each use both cores).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use ivc_abi::pci_ids::{
    IVC_PIO_DEVICE_ID, IVC_PIO_VENDOR_ID, IVSHMEM_DEVICE_ID, IVSHMEM_VENDOR_ID,
};

/// One heavy test at a time: two VMs already use both CPUs of a CI runner,
/// and the guests' no-progress timeouts are wall-clock based.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const T: Duration = Duration::from_secs(240);

/// A running child whose stdout/stderr are collected by threads.
struct Proc {
    name: String,
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(r: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

impl Proc {
    fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(vmm());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), err.clone()),
        ];
        Proc {
            name: name.into(),
            child,
            out,
            err,
            readers,
        }
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn dump(&self) -> String {
        format!(
            "--- {} stdout:\n{}--- {} stderr:\n{}",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// Waits until stdout contains `needle`.
    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stdout().contains(needle) {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({s}) before printing {needle:?}\n{}",
                    self.name,
                    self.dump()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} within {timeout:?}\n{}",
                self.name,
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit status (killing the process after `timeout`).
    fn finish(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not finish within {timeout:?}\n{}",
                    self.name,
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status.code()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rendezvous server (`ivc_rendezvous::Server`, the code of the
/// `ivc-rendezvous` program) on a fresh socket, served by a thread of this
/// test; the VMMs under test are separate processes, as in production.
struct Server {
    socket: PathBuf,
    thread: Option<ivc_rendezvous::ServerThread>,
}

impl Server {
    fn start(name: &str, shm: &str, vectors: u32) -> Server {
        let socket = temp_path(&format!("{name}.sock"));
        let size = ivc_kit::size::parse_size(shm).unwrap();
        let config = ivc_rendezvous::ServerConfig::new(&socket, size, vectors);
        let thread = ivc_rendezvous::Server::bind(config)
            .unwrap()
            .spawn()
            .unwrap();
        Server {
            socket,
            thread: Some(thread),
        }
    }

    fn path(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    /// Stops the server: how its loop ended (a panic is
    /// `ServerError::Panicked`).
    fn stop(&mut self) -> Result<(), String> {
        match self.thread.take() {
            Some(t) => t.stop().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn guest() -> String {
    test_guest().to_string_lossy().into_owned()
}

fn vm(name: &str, ivc: &str, cmdline: &str) -> Proc {
    vm_with(name, ivc, cmdline, &[])
}

/// [`vm`] with further `ivc-vmm run` options.
fn vm_with(name: &str, ivc: &str, cmdline: &str, extra: &[&str]) -> Proc {
    let guest = guest();
    let mut args = vec![
        "run",
        "--kernel",
        &guest,
        "--mem",
        "64M",
        "--ivc",
        ivc,
        "--cmdline",
        cmdline,
    ];
    args.extend_from_slice(extra);
    Proc::spawn(name, &args, &[("IVC_VMM_LOG", "info")])
}

/// `key=value` from the guest line starting with `prefix`.
fn field(out: &str, prefix: &str, key: &str) -> Option<String> {
    let line = out
        .lines()
        .filter_map(|l| l.strip_prefix("ivc-test-guest: "))
        .find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

fn num(out: &str, prefix: &str, key: &str) -> u64 {
    field(out, prefix, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= on a {prefix} line:\n{out}"))
}

/// Runs the two-VM duplex transfer for `ivc` and checks both sides.
fn duplex(ivc: &str, test: &str, result: &str, bytes: u64, extra: &str) -> (Proc, Proc) {
    let mut a = vm(
        "A",
        ivc,
        &format!("test={test} tx={bytes} rx={bytes} seed=11 peer_seed=22 {extra}"),
    );
    let mut b = vm(
        "B",
        ivc,
        &format!("test={test} tx={bytes} rx={bytes} seed=22 peer_seed=11 {extra}"),
    );
    let (sa, sb) = (a.finish(T), b.finish(T));
    assert_eq!((sa, sb), (Some(0), Some(0)), "\n{}\n{}", a.dump(), b.dump());
    let (oa, ob) = (a.stdout(), b.stdout());
    for (o, p) in [(&oa, &a), (&ob, &b)] {
        assert_eq!(
            field(o, result, "outcome").as_deref(),
            Some("complete"),
            "{}",
            p.dump()
        );
        assert_eq!(num(o, result, "sent"), bytes);
        assert_eq!(num(o, result, "received"), bytes);
        assert!(o.contains("done status=0"));
    }
    // What one side sent is what the other received, byte for byte.
    assert_eq!(field(&oa, result, "tx_fnv"), field(&ob, result, "rx_fnv"));
    assert_eq!(field(&ob, result, "tx_fnv"), field(&oa, result, "rx_fnv"));
    for p in [&a, &b] {
        assert!(!p.stderr().contains("panicked"), "{}", p.dump());
    }
    (a, b)
}

#[test]
fn shm_poll_moves_1mib_each_way() {
    if skip_without_kvm("shm_poll_moves_1mib_each_way") {
        return;
    }
    let _g = serial();
    let server = Server::start("poll", "1M", 1);
    let ivc = format!("shm-poll,socket={}", server.path());
    let (a, _b) = duplex(&ivc, "chan-duplex", "chan-result", 4 << 20, "");
    assert!(a.stderr().contains("shm-poll: joined"), "{}", a.dump());
}

#[test]
fn shm_poll_over_a_plain_file_needs_no_server() {
    if skip_without_kvm("shm_poll_over_a_plain_file_needs_no_server") {
        return;
    }
    let _g = serial();
    let file = temp_path("plain.shm");
    let _ = std::fs::remove_file(&file);
    // Created beforehand, as a user would (a VMM also creates a missing or
    // empty file with size=).
    std::fs::write(&file, []).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let ivc = format!("shm-poll,path={},size=1M", file.display());
    duplex(&ivc, "chan-duplex", "chan-result", 1 << 20, "");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn shm_irq_moves_data_with_doorbell_interrupts() {
    if skip_without_kvm("shm_irq_moves_data_with_doorbell_interrupts") {
        return;
    }
    let _g = serial();
    let server = Server::start("irq", "1M", 2);
    let ivc = format!("shm-irq,socket={},vectors=2", server.path());
    let (a, b) = duplex(&ivc, "chan-duplex", "chan-result", 4 << 20, "irq=1");
    let (oa, ob) = (a.stdout(), b.stdout());
    let irqs = num(&oa, "chan-result", "interrupts") + num(&ob, "chan-result", "interrupts");
    let rings = num(&oa, "chan-result", "rings") + num(&ob, "chan-result", "rings");
    eprintln!("shm-irq: rings={rings} interrupts={irqs}");
    assert!(
        irqs > 0,
        "no doorbell interrupt arrived\n{}\n{}",
        a.dump(),
        b.dump()
    );
    assert!(rings > 0);
}

#[test]
fn shm_irq_ping_pong_wakes_halted_vcpus() {
    if skip_without_kvm("shm_irq_ping_pong_wakes_halted_vcpus") {
        return;
    }
    let _g = serial();
    let server = Server::start("halt", "1M", 2);
    let ivc = format!("shm-irq,socket={},vectors=2", server.path());
    // Each side that finds nothing to read halts its vCPU (HLT at CPL0
    // through the ud2 service call) until the peer's doorbell arrives: a
    // lost doorbell would leave it halted until the timeout.
    let common = "test=shm-pingpong proto=ring size=64 iters=100 warmup=10 irq=1 wait=hlt";
    // With KVM's halt polling as configured, and off (the vCPU threads
    // sleep at once: ivc-vmm --halt-poll-ns 0, KVM_CAP_HALT_POLL).
    for extra in [&[][..], &["--halt-poll-ns", "0"][..]] {
        let mut b = vm_with("B", &ivc, &format!("{common} role=b"), extra);
        let mut a = vm_with("A", &ivc, &format!("{common} role=a"), extra);
        let (sa, sb) = (a.finish(T), b.finish(T));
        assert_eq!((sa, sb), (Some(0), Some(0)), "\n{}\n{}", a.dump(), b.dump());
        let (oa, ob) = (a.stdout(), b.stdout());
        assert_eq!(num(&oa, "pingpong-result", "samples"), 100, "{}", a.dump());
        assert_eq!(num(&ob, "pingpong-result", "echoed"), 110, "{}", b.dump());
        for (o, p) in [(&oa, &a), (&ob, &b)] {
            // Each side halted and was woken by doorbell interrupts. How
            // many round trips halted depends on scheduling (on a loaded
            // host the reply is often there before a side looks), so only
            // "some" is asserted; a halt ends only when the interrupt
            // count moves, so interrupts >= waits.
            let waits = num(o, "pingpong-result", "waits");
            let irqs = num(o, "pingpong-result", "interrupts");
            assert!(
                waits >= 1 && irqs >= waits,
                "{extra:?}: waits={waits} interrupts={irqs}\n{}",
                p.dump()
            );
        }
    }
}

/// `shm-pingpong proto=interleaved`: flag-line and ring blocks alternating
/// in the same two VMs complete, and A's report parses: a ratio line per
/// repetition, the ratios' spread, and both figures (not their values:
/// timing is the benchmark's business). A peer with another plan is
/// refused with an error, not a hang.
#[test]
fn shm_poll_interleaved_blocks_report_a_ratio_per_pair() {
    if skip_without_kvm("shm_poll_interleaved_blocks_report_a_ratio_per_pair") {
        return;
    }
    let _g = serial();
    let server = Server::start("inter", "1M", 1);
    let ivc = format!("shm-poll,socket={}", server.path());
    let common = "test=shm-pingpong proto=interleaved size=64 blocks=4 iters=50 batch=8 warmup=20 tsc_khz=2000000";
    let mut b = vm("B", &ivc, &format!("{common} role=b"));
    let mut a = vm("A", &ivc, &format!("{common} role=a"));
    let (sa, sb) = (a.finish(T), b.finish(T));
    assert_eq!((sa, sb), (Some(0), Some(0)), "\n{}\n{}", a.dump(), b.dump());
    let (oa, ob) = (a.stdout(), b.stdout());
    // 4 repetitions x 2 blocks x (20 + 50 x 8) round trips, all echoed.
    assert_eq!(
        num(&ob, "pingpong-result", "echoed"),
        4 * 2 * 420,
        "{}",
        b.dump()
    );
    let pairs: Vec<&str> = oa
        .lines()
        .filter_map(|l| l.strip_prefix("ivc-test-guest: interleaved-pair "))
        .collect();
    assert_eq!(pairs.len(), 4, "{}", a.dump());
    for (rep, line) in pairs.iter().enumerate() {
        let out = format!("ivc-test-guest: interleaved-pair {line}");
        assert_eq!(num(&out, "interleaved-pair", "rep"), rep as u64);
        let (l, r) = (
            num(&out, "interleaved-pair", "line_cycles"),
            num(&out, "interleaved-pair", "ring_cycles"),
        );
        assert!(l > 0 && r > 0, "{line}");
        assert!(num(&out, "interleaved-pair", "ratio_milli") > 0, "{line}");
        num(&out, "interleaved-pair", "ring_ns");
    }
    for l in oa.lines().filter(|l| l.contains("interleaved-")) {
        eprintln!("{l}");
    }
    assert_eq!(num(&oa, "interleaved-ratio", "pairs"), 4, "{}", a.dump());
    let r = |k| num(&oa, "interleaved-ratio", k);
    assert!(
        r("min_milli") <= r("p10_milli")
            && r("p10_milli") <= r("median_milli")
            && r("median_milli") <= r("p90_milli")
            && r("p90_milli") <= r("max_milli"),
        "{}",
        a.dump()
    );
    for fig in ["line", "ring"] {
        let res = format!("interleaved-result figure={fig}");
        assert_eq!(num(&oa, &res, "samples"), 4 * 50, "{}", a.dump());
        assert_eq!(num(&oa, &res, "batch"), 8, "{}", a.dump());
        let ns = format!("interleaved-ns figure={fig}");
        let (min, med, p99) = (
            num(&oa, &ns, "min_ns"),
            num(&oa, &ns, "median_ns"),
            num(&oa, &ns, "p99_ns"),
        );
        assert!(min <= med && med <= p99, "{fig}: {}", a.dump());
    }

    // Different plans (B expects more repetitions): both refuse.
    let server = Server::start("inter2", "1M", 1);
    let ivc = format!("shm-poll,socket={}", server.path());
    let mut b = vm("B", &ivc, &format!("{common} role=b blocks=5"));
    let mut a = vm("A", &ivc, &format!("{common} role=a"));
    let (sa, sb) = (a.finish(T), b.finish(T));
    assert_eq!((sa, sb), (Some(1), Some(1)), "\n{}\n{}", a.dump(), b.dump());
    assert!(a.stdout().contains("the peer's plan"), "{}", a.dump());
}

#[test]
fn shm_irq_doorbell_to_self_and_between_vms() {
    if skip_without_kvm("shm_irq_doorbell_to_self_and_between_vms") {
        return;
    }
    let _g = serial();
    let server = Server::start("db", "64K", 2);
    let ivc = format!("shm-irq,socket={},vectors=2", server.path());
    let mut w = vm("waiter", &ivc, "test=doorbell mode=wait vector=1 count=3");
    w.wait_for("doorbell 00:01.0 ivposition=", Duration::from_secs(30));
    let id = field(&w.stdout(), "doorbell 00:01.0", "ivposition").unwrap();
    let mut r = vm(
        "ringer",
        &ivc,
        &format!("test=doorbell mode=ring peer={id} vector=1 count=3 gap_us=20000"),
    );
    assert_eq!(r.finish(T), Some(0), "{}", r.dump());
    assert_eq!(w.finish(T), Some(0), "{}", w.dump());
    assert!(num(&w.stdout(), "doorbell-result", "received") >= 3);
    // To ourselves, through both doorbell registers (BAR0 MMIO and the
    // BAR4 I/O-port extension), also after the guest moved every BAR (the
    // ioeventfds must follow).
    for via in ["mmio", "io"] {
        for assign in ["", "assign=all"] {
            let mut s = vm(
                "self",
                &ivc,
                &format!("test=doorbell mode=self count=5 via={via} {assign}"),
            );
            assert_eq!(s.finish(T), Some(0), "{}", s.dump());
            let out = s.stdout();
            assert_eq!(num(&out, "doorbell-result", "received"), 5, "{}", s.dump());
            eprintln!(
                "doorbell via={via} {assign}: write {} cycles, to handler {} cycles",
                num(&out, "doorbell-result", "write_cycles_avg"),
                num(&out, "doorbell-result", "latency_cycles_avg")
            );
            // Every ring matched an ioeventfd: none reached the VMM.
            assert!(!s.stderr().contains("doorbell"), "{}", s.dump());
        }
    }
}

#[test]
fn pio_moves_1mib_each_way_with_string_io() {
    if skip_without_kvm("pio_moves_1mib_each_way_with_string_io") {
        return;
    }
    let _g = serial();
    let server = Server::start("pio", "1M", 1);
    let ivc = format!("pio,socket={}", server.path());
    let start = Instant::now();
    duplex(&ivc, "pio-duplex", "pio-result", 1 << 20, "");
    eprintln!("pio: 1 MiB each way in {:?}", start.elapsed());
    // The same with the string instructions issued at CPL3 (each exit
    // ~5x dearer here, and `rep insb` batched far less): a smaller amount.
    let start = Instant::now();
    duplex(&ivc, "pio-duplex", "pio-result", 64 << 10, "cpl0_io=0");
    eprintln!("pio: 64 KiB each way from CPL3 in {:?}", start.elapsed());
}

/// Descriptor mode (ivc-pio v3): the same checked duplex streams, each
/// chunk (4 KiB, then 64 KiB) moved by one `IN` from `TX_GO`/`RX_GO` over a
/// descriptor in guest RAM; before the transfer each guest hands its device
/// hostile descriptors (outside RAM, over MMIO, wrapping, too long), which
/// must fail with their codes and leave the device working.
#[test]
fn pio_moves_4mib_each_way_with_descriptors() {
    if skip_without_kvm("pio_moves_4mib_each_way_with_descriptors") {
        return;
    }
    let _g = serial();
    let server = Server::start("pio-desc", "1M", 1);
    let ivc = format!("pio,socket={}", server.path());
    for chunk in ["4096", "64k"] {
        let start = Instant::now();
        let (a, b) = duplex(
            &ivc,
            "pio-duplex",
            "pio-result",
            4 << 20,
            &format!("desc=1 chunk={chunk}"),
        );
        eprintln!(
            "pio descriptors: 4 MiB each way in {chunk} chunks in {:?}",
            start.elapsed()
        );
        for p in [&a, &b] {
            let out = p.stdout();
            assert!(out.contains("pio-desc-hostile ok cases=6"), "{}", p.dump());
            // One exit per chunk moved: at most one per 4 KiB, and fewer
            // with 64 KiB chunks (the ring may hand out less than a chunk).
            let ops = num(&out, "pio-result", "string_ops");
            // Layout version 2: every write is a record with a header, so
            // the ring's room is not a whole number of chunks and a few GOs
            // move less than one.
            assert!(
                ops > 0 && ops <= 2 * (4 << 20) / 4096 + 64,
                "{ops} GOs\n{}",
                p.dump()
            );
        }
    }
}

/// Starts an endless transfer between A and B, kills A's VMM once data
/// flows, and checks that B ends with the peer-gone state while B's VMM
/// and the server keep running.
fn kill_mid_transfer(ivc: &str, test: &str, result: &str, extra: &str) {
    let huge = 1u64 << 40;
    let mut a = vm(
        "victim",
        ivc,
        &format!("test={test} tx={huge} rx={huge} seed=1 peer_seed=2 {extra}"),
    );
    let mut b = vm(
        "survivor",
        ivc,
        &format!("test={test} tx={huge} rx={huge} seed=2 peer_seed=1 expect_gone=1 {extra}"),
    );
    let connected = if test == "pio-duplex" {
        "pio-connected"
    } else {
        "chan-connected"
    };
    a.wait_for(connected, Duration::from_secs(30));
    b.wait_for(connected, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(700));
    a.child.kill().unwrap();
    let _ = a.finish(Duration::from_secs(10));
    let status = b.finish(Duration::from_secs(60));
    let out = b.stdout();
    assert_eq!(status, Some(0), "{}\n{}", a.dump(), b.dump());
    assert_eq!(
        field(&out, result, "outcome").as_deref(),
        Some("peer-gone"),
        "{}",
        b.dump()
    );
    assert!(num(&out, result, "received") > 0, "{}", b.dump());
    assert!(b.stderr().contains("left; channel slot"), "{}", b.dump());
}

#[test]
fn killing_a_vmm_mid_transfer_is_seen_as_peer_gone() {
    if skip_without_kvm("killing_a_vmm_mid_transfer_is_seen_as_peer_gone") {
        return;
    }
    let _g = serial();
    for (name, kind, test, result, extra) in [
        ("shm-poll", "shm-poll", "chan-duplex", "chan-result", ""),
        ("shm-irq", "shm-irq", "chan-duplex", "chan-result", "irq=1"),
        ("pio", "pio", "pio-duplex", "pio-result", ""),
        (
            "pio-desc",
            "pio",
            "pio-duplex",
            "pio-result",
            "desc=1 chunk=64k",
        ),
    ] {
        let server = Server::start(&format!("kill-{name}"), "1M", 1);
        let ivc = format!("{kind},socket={}", server.path());
        kill_mid_transfer(&ivc, test, result, extra);
        // The server did not die with the VMM: a newcomer joins.
        let c = ivc_rendezvous::Client::connect(server.path(), 1).unwrap();
        assert!(c.id() >= 2);
        eprintln!("{name}: survivor saw the peer gone; server alive");
    }
}

#[test]
fn garbage_at_every_offset_and_width_of_every_bar() {
    if skip_without_kvm("garbage_at_every_offset_and_width_of_every_bar") {
        return;
    }
    let _g = serial();
    let server = Server::start("garbage", "64K", 2);
    let ivshmem = format!("{IVSHMEM_VENDOR_ID:04x}:{IVSHMEM_DEVICE_ID:04x}");
    let pio = format!("{IVC_PIO_VENDOR_ID:04x}:{IVC_PIO_DEVICE_ID:04x}");
    for (ivc, dev) in [
        (
            format!("shm-irq,socket={},vectors=2", server.path()),
            &ivshmem,
        ),
        (
            format!("shm-poll,socket={},vectors=2", server.path()),
            &ivshmem,
        ),
        (format!("pio,socket={},vectors=2", server.path()), &pio),
    ] {
        let mut g = vm("garbage", &ivc, &format!("test=garbage dev={dev}"));
        let status = g.finish(T);
        assert_eq!(status, Some(0), "{}", g.dump());
        let (out, err) = (g.stdout(), g.stderr());
        assert_eq!(
            field(&out, "garbage-result", "device_ok").as_deref(),
            Some("1")
        );
        assert!(!err.contains("panicked"), "{}", g.dump());
        assert!(
            err.contains("ignored") || err.contains("ivc-pio:"),
            "no error logged\n{}",
            g.dump()
        );
        eprintln!(
            "{ivc}: {} warnings",
            err.lines().filter(|l| l.contains("warn")).count()
        );
    }
}

/// A host-side peer that joins the server, attaches to the channel in the
/// shared memory, and then scribbles over its indices and the header.
/// With `expect_heartbeat`, it first checks that the other side (ivc-pio's
/// VMM endpoint) bumps its heartbeat.
fn corrupting_peer(socket: &Path, expect_heartbeat: bool) -> std::thread::JoinHandle<()> {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        use ivc_abi::layout::{ring_ctrl, HDR_MAGIC, RING_PROD};
        use ivc_abi::{AttachOptions, Endpoint, SharedMemory};
        let client = ivc_rendezvous::Client::connect(&socket, 1).unwrap();
        let map = ivc_vmm::devices::shm_mapping::ShmMapping::new(client.shm(), client.shm_size())
            .unwrap();
        let mem = map.mem();
        let opts = AttachOptions {
            doorbell_id: Some(client.id()),
            ..AttachOptions::default()
        };
        let mut ep = loop {
            match Endpoint::attach_any(mem, &opts) {
                Ok(ep) => break ep,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ep.peer_state() != Ok(ivc_abi::PeerState::Connected) {
            assert!(Instant::now() < deadline, "guest side never connected");
            std::thread::sleep(Duration::from_millis(5));
        }
        let hb = ep.peer_heartbeat().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        if expect_heartbeat {
            let now = ep.peer_heartbeat().unwrap();
            assert!(now.wrapping_sub(hb) >= 1, "heartbeat stuck at {hb}");
        }
        // Our producer index jumps far beyond the ring (found by the other
        // side's readable counts and wake-ups: ivc-pio's status refresh).
        mem.store_u32_release(ring_ctrl(ep.slot()) + RING_PROD, 0x7654_3210)
            .unwrap();
        // And every record header of our ring claims more than a ring: the
        // data path polls headers (layout version 2), so a reader that only
        // reads (the test guest's chan-duplex) finds this.
        let ring = ep.layout().rings[ep.slot() as usize];
        for off in (0..ring.size as usize).step_by(8) {
            mem.store_u32_release(ring.offset + off, 0x7fff_fff0)
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(1500));
        // And then the header.
        mem.store_u32_release(HDR_MAGIC, 0xdead_beef).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        drop(client);
    })
}

#[test]
fn a_peer_corrupting_the_channel_is_reported_not_fatal() {
    if skip_without_kvm("a_peer_corrupting_the_channel_is_reported_not_fatal") {
        return;
    }
    let _g = serial();
    for (kind, test, result) in [
        ("pio", "pio-duplex", "pio-result"),
        ("shm-poll", "chan-duplex", "chan-result"),
    ] {
        let server = Server::start(&format!("corrupt-{kind}"), "1M", 1);
        let ivc = format!("{kind},socket={}", server.path());
        let mut g = vm(
            "victim",
            &ivc,
            &format!("test={test} tx=1g rx=1g seed=1 peer_seed=2"),
        );
        let peer = corrupting_peer(&server.socket, kind == "pio");
        let status = g.finish(T);
        peer.join().unwrap();
        let (out, err) = (g.stdout(), g.stderr());
        // The guest stopped on the error (status 1), the VMM did not crash.
        assert_eq!(status, Some(1), "{}", g.dump());
        assert_eq!(
            field(&out, result, "outcome").as_deref(),
            Some("error"),
            "{}",
            g.dump()
        );
        assert!(!err.contains("panicked"), "{}", g.dump());
        if kind == "pio" {
            assert!(out.contains("has ERROR"), "{}", g.dump());
        } else {
            assert!(
                out.contains("violated the channel protocol"),
                "{}",
                g.dump()
            );
        }
        let mut server = server;
        assert_eq!(server.stop(), Ok(()));
    }
}

#[test]
fn a_missing_server_is_a_clear_startup_error() {
    if skip_without_kvm("a_missing_server_is_a_clear_startup_error") {
        return;
    }
    let socket = temp_path("nobody-listens.sock");
    let ivc = format!("shm-irq,socket={}", socket.display());
    let mut g = vm("lonely", &ivc, "test=pci-enum");
    assert_eq!(g.finish(T), Some(1), "{}", g.dump());
    let err = g.stderr();
    assert!(err.contains("--ivc shm-irq,socket="), "{err}");
    assert!(err.contains("nobody-listens.sock"), "{err}");
    // A vector count that differs from the server's is refused too.
    let _g = serial();
    let server = Server::start("vectors", "64K", 2);
    let mut g = vm(
        "mismatch",
        &format!("pio,socket={}", server.path()),
        "test=pci-enum",
    );
    assert_eq!(g.finish(T), Some(1), "{}", g.dump());
    assert!(g.stderr().contains("--ivc pio,socket="), "{}", g.dump());
}
