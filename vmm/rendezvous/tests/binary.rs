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

fn stderr_of(mut child: Child) -> (std::process::ExitStatus, String) {
    let status = child.wait().unwrap();
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    (status, text)
}

fn signal_stops_cleanly(signal: libc::c_int, tag: &str) {
    let socket = socket_path(tag);
    let child = program()
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "--vectors",
            "2",
            "--shm-size",
            "64K",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the socket to appear", || socket.exists());
    let mut a = Client::connect(&socket, 2).unwrap();
    assert_eq!(a.shm_size(), 64 << 10);
    let b = Client::connect(&socket, 2).unwrap();
    assert_eq!(expect_joined(&mut a), b.id());
    drop(b);
    expect_left(&mut a);

    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let (status, stderr) = stderr_of(child);
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
