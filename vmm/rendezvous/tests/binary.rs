//! The standalone `ivc-rendezvous` program: arguments, logging, signals.

// Test helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};

use common::*;
use ivc_rendezvous::Client;

fn program() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ivc-rendezvous"))
}

/// The server process; killed if a test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child, which is not reaped yet.
        assert_eq!(unsafe { libc::kill(self.0.id() as libc::pid_t, signal) }, 0);
    }

    fn wait_with_stderr(mut self) -> (std::process::ExitStatus, String) {
        let status = self.0.wait().unwrap();
        let mut text = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        (status, text)
    }
}

fn signal_stops_cleanly(signal: libc::c_int, tag: &str) {
    let socket = socket_path(tag);
    let server = Running(
        program()
            .args(["--socket", socket.to_str().unwrap()])
            .args(["--vectors", "2", "--shm-size", "64K"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Once the socket file exists it accepts connections: no retry needed.
    wait_until("the socket to appear", || socket.exists());
    let mut a = Client::connect(&socket, 2).unwrap();
    assert_eq!(a.shm_size(), 64 << 10);
    let b = Client::connect(&socket, 2).unwrap();
    assert_eq!(expect_joined(&mut a), b.id());
    drop(b);
    expect_left(&mut a);

    server.signal(signal);
    let (status, stderr) = server.wait_with_stderr();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!socket.exists(), "socket removed on exit");
    assert!(stderr.contains("peer 1 joined"), "{stderr}");
    assert!(stderr.contains("peer 1 left"), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn sigterm_stops_cleanly() {
    signal_stops_cleanly(libc::SIGTERM, "sigterm");
}

#[test]
fn sigint_stops_cleanly() {
    signal_stops_cleanly(libc::SIGINT, "sigint");
}

#[test]
fn usage_errors_exit_2_runtime_errors_exit_1() {
    let out = program().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--socket"));

    let out = program()
        .args(["--socket", "/tmp/x", "--shm-size", "5M"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("power of two"));

    let out = program()
        .args(["--socket", "/nonexistent-dir/x.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen on /nonexistent-dir/x.sock"),
        "{stderr}"
    );

    let out = program().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ivshmem-doorbell"));
}
