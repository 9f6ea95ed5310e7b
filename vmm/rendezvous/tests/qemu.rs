//! End to end with QEMU's own ivshmem-doorbell device as a peer.
//!
//! Skipped (with a message) when qemu-system-x86_64 is not installed, unless
//! IVC_REQUIRE_QEMU=1, which turns its absence into a failure.

// Test helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ivc_rendezvous::{Client, ClientEvent, PeerId};

const VECTORS: u32 = 2;
/// Generous: TCG start-up on a loaded 2-core machine.
const QEMU_WAIT: Duration = Duration::from_secs(30);

fn qemu_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("qemu-system-x86_64"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("IVC_REQUIRE_QEMU").as_deref() != Ok("1"),
            "qemu-system-x86_64 not found in PATH and IVC_REQUIRE_QEMU=1"
        );
        eprintln!("skipping: qemu-system-x86_64 not found in PATH (scripts/ install it)");
    }
    found
}

/// A QEMU process that is killed when dropped, so a failing test leaves
/// nothing behind.
struct Qemu {
    child: Child,
}

impl Qemu {
    /// Starts QEMU with an ivshmem-doorbell at PCI slot 5 connected to
    /// `socket`; `extra` selects the accelerator and friends.
    fn start(binary: &Path, socket: &Path, extra: &[&str]) -> Qemu {
        Qemu::start_with_vectors(binary, socket, VECTORS, extra)
    }

    fn start_with_vectors(binary: &Path, socket: &Path, vectors: u32, extra: &[&str]) -> Qemu {
        let chardev = format!("socket,path={},id=ivs", socket.display());
        let device = format!("ivshmem-doorbell,chardev=ivs,vectors={vectors},addr=05.0");
        let child = Command::new(binary)
            .args(["-M", "pc", "-nodefaults", "-display", "none", "-m", "64"])
            .args(extra)
            .args(["-chardev", &chardev, "-device", &device])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting qemu-system-x86_64");
        Qemu { child }
    }

    /// Kills QEMU and returns what it printed on stderr.
    fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }

    /// Panics with QEMU's stderr if it has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let stderr = self.kill();
            panic!("QEMU exited ({status}):\n{stderr}");
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for the next event while making sure QEMU is still alive.
fn event_while_qemu_runs(client: &mut Client, qemu: &mut Qemu) -> ClientEvent {
    let deadline = Instant::now() + QEMU_WAIT;
    loop {
        if let Some(event) = client.next_event(Some(Duration::from_millis(100))).unwrap() {
            return event;
        }
        qemu.assert_running();
        assert!(
            Instant::now() < deadline,
            "QEMU did not join within {QEMU_WAIT:?}"
        );
    }
}

fn qemu_joins(client: &mut Client, qemu: &mut Qemu) -> PeerId {
    match event_while_qemu_runs(client, qemu) {
        ClientEvent::PeerJoined(id) => {
            assert_eq!(client.peer_vectors(id).unwrap().len(), VECTORS as usize);
            id
        }
        other => panic!("expected QEMU to join, got {other:?}"),
    }
}

/// Rings QEMU's vector `v` and waits until QEMU has consumed the event:
/// proof that QEMU watches the eventfd it got as its own vector v, i.e. the
/// one we hold for it.
fn ring_qemu_and_see_it_consumed(client: &Client, qemu_id: PeerId, v: usize) {
    let fd = &client.peer_vectors(qemu_id).unwrap()[v];
    fd.write(1).unwrap();
    let deadline = Instant::now() + QEMU_WAIT;
    while is_signalled(fd) {
        assert!(Instant::now() < deadline, "QEMU never read its vector {v}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn qemu_joins_sees_peers_and_leaves() {
    let Some(binary) = qemu_binary() else { return };
    let server = start_server("qemu", VECTORS);
    let mut first = Client::connect(server.socket_path(), VECTORS).unwrap();

    // -S: the CPU never runs; the device connects while it is realized.
    let mut qemu = Qemu::start(&binary, server.socket_path(), &["-accel", "tcg", "-S"]);
    let qemu_id = qemu_joins(&mut first, &mut qemu);
    assert_eq!(qemu_id, 1);
    for v in 0..VECTORS as usize {
        ring_qemu_and_see_it_consumed(&first, qemu_id, v);
    }

    // A client joining later learns of QEMU like of any peer.
    let mut second = Client::connect(server.socket_path(), VECTORS).unwrap();
    assert_eq!(second.peer_ids().collect::<Vec<_>>(), vec![0, qemu_id]);
    assert_eq!(expect_joined(&mut first), second.id());
    ring_qemu_and_see_it_consumed(&second, qemu_id, 1);

    let stderr = qemu.kill();
    for client in [&mut first, &mut second] {
        let (gone, vectors) = expect_left(client);
        assert_eq!(gone, qemu_id);
        assert_eq!(vectors.len(), VECTORS as usize);
    }
    assert!(stderr.trim().is_empty(), "QEMU complained:\n{stderr}");
}

#[test]
fn qemu_with_fewer_vectors_than_the_server_complains() {
    let Some(binary) = qemu_binary() else { return };
    let server = start_server("qemu-vectors", VECTORS);
    let mut client = Client::connect(server.socket_path(), VECTORS).unwrap();
    let mut qemu =
        Qemu::start_with_vectors(&binary, server.socket_path(), 1, &["-accel", "tcg", "-S"]);
    qemu_joins(&mut client, &mut qemu);
    // QEMU reads the rest of its setup asynchronously; give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    let stderr = qemu.kill();
    assert!(
        stderr.contains("Too many eventfd received, device has 1 vectors"),
        "QEMU said:\n{stderr}"
    );
}

/// Client of QEMU's line-based qtest protocol, which does port and MMIO
/// accesses as a guest would without running guest code. It works beside
/// TCG with a stopped CPU (Debian's QEMU has no separate qtest accelerator).
struct Qtest {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qtest {
    fn accept(listener: &UnixListener, qemu: &mut Qemu) -> Qtest {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + QEMU_WAIT;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    qemu.assert_running();
                    assert!(Instant::now() < deadline, "QEMU did not connect to qtest");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(QEMU_WAIT)).unwrap();
        Qtest {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Sends one command, returns the text after "OK".
    fn cmd(&mut self, command: &str) -> String {
        writeln!(self.writer, "{command}").unwrap();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim();
            if line.starts_with("IRQ") {
                continue; // asynchronous notifications
            }
            assert!(
                line.starts_with("OK"),
                "qtest '{command}' answered '{line}'"
            );
            return line[2..].trim().to_string();
        }
    }

    fn number(&mut self, command: &str) -> u64 {
        let text = self.cmd(command);
        u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
    }
}

#[test]
fn qemu_guest_doorbell_reaches_us_and_ours_reaches_qemu() {
    let Some(binary) = qemu_binary() else { return };
    let server = start_server("qtest", VECTORS);
    let mut client = Client::connect(server.socket_path(), VECTORS).unwrap();

    let qtest_path = socket_path("qtest-ctl");
    let listener = UnixListener::bind(&qtest_path).unwrap();
    let _cleanup = RemoveOnDrop(qtest_path.clone());
    let qtest_arg = format!("unix:{}", qtest_path.display());
    let mut qemu = Qemu::start(
        &binary,
        server.socket_path(),
        &[
            "-accel",
            "tcg",
            "-S",
            "-qtest",
            &qtest_arg,
            "-qtest-log",
            "/dev/null",
        ],
    );
    let mut qt = Qtest::accept(&listener, &mut qemu);
    let qemu_id = qemu_joins(&mut client, &mut qemu);

    // PCI config mechanism #1, bus 0, device 5, function 0.
    let config = |reg: u32| format!("outl 0xcf8 {:#x}", 0x8000_0000u32 | (5 << 11) | reg);
    qt.cmd(&config(0x00));
    assert_eq!(qt.number("inl 0xcfc"), 0x1110_1af4, "ivshmem at 00:05.0");
    const BAR0: u64 = 0xe000_0000;
    qt.cmd(&config(0x10));
    qt.cmd(&format!("outl 0xcfc {BAR0:#x}"));
    qt.cmd(&config(0x04));
    qt.cmd("outw 0xcfc 0x6"); // memory space + bus master

    // IVPosition is the id our server gave QEMU.
    assert_eq!(
        qt.number(&format!("readl {:#x}", BAR0 + 8)),
        u64::from(qemu_id)
    );

    // The guest rings us (peer id in bits 16..31, vector in 0..15).
    let our_id = u64::from(client.id());
    for v in 0..VECTORS as usize {
        qt.cmd(&format!(
            "writel {:#x} {:#x}",
            BAR0 + 12,
            (our_id << 16) | v as u64
        ));
        wait_until("the doorbell to reach our own eventfd", || {
            is_signalled(&client.own_vectors()[v])
        });
        for (i, own) in client.own_vectors().iter().enumerate() {
            assert_eq!(is_signalled(own), i == v, "only vector {v} rings");
        }
        assert_eq!(client.own_vectors()[v].read().unwrap(), 1);
    }

    // And we ring QEMU.
    ring_qemu_and_see_it_consumed(&client, qemu_id, 0);

    drop(qt);
    let stderr = qemu.kill();
    assert_eq!(
        expect_left(&mut client).0,
        qemu_id,
        "QEMU stderr:\n{stderr}"
    );
    assert!(stderr.trim().is_empty(), "QEMU complained:\n{stderr}");
}

/// Removes a file when the test ends, passed or failed.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
