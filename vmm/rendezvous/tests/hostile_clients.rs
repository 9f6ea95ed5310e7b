//! Clients that crash, send garbage, half-close or flood: the server keeps
//! serving everyone else and leaks no descriptors.
//!
//! Every test here counts this process's open descriptors, so they take a
//! common lock and never overlap.

// Test helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use common::*;
use ivc_rendezvous::fd_passing::send_with_fds;
use ivc_rendezvous::{Client, ServerThread};

const VECTORS: u32 = 2;

/// Starts a server with one well-behaved observer, runs `abuse`, waits until
/// the server has dealt with every abusive connection, then checks that the
/// observer saw exactly that many joins and leaves, that a newcomer is still
/// served properly, and that no descriptor leaked — neither while the server
/// runs nor after it stopped.
fn survive(tag: &str, connections: u64, abuse: impl FnOnce(&ServerThread)) {
    let _lock = fd_lock();
    let before = open_fds();
    let server = start_server(tag, VECTORS);
    let mut observer = Client::connect(server.socket_path(), VECTORS).unwrap();
    let steady = open_fds();

    abuse(&server);

    let stats = wait_for_stats(&server, "the server to drop the abusive clients", |s| {
        s.joined == 1 + connections && s.connected == 1
    });
    assert_eq!(stats.left, connections);
    assert_eq!(stats.rejected, 0);
    let (mut joins, mut leaves) = (0, 0);
    while leaves < connections {
        match next_event(&mut observer) {
            ivc_rendezvous::ClientEvent::PeerJoined(_) => joins += 1,
            ivc_rendezvous::ClientEvent::PeerLeft { .. } => leaves += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(joins, connections);
    expect_quiet(&mut observer);
    assert_eq!(observer.peer_ids().count(), 0);
    assert_eq!(
        open_fds(),
        steady,
        "descriptors leaked while the server runs"
    );

    // Still fully working.
    let newcomer = Client::connect(server.socket_path(), VECTORS).unwrap();
    let id = expect_joined(&mut observer);
    assert_eq!(id, newcomer.id());
    observer.peer_vectors(id).unwrap()[1].write(1).unwrap();
    assert_eq!(newcomer.own_vectors()[1].read().unwrap(), 1);
    newcomer.peer_vectors(observer.id()).unwrap()[0]
        .write(1)
        .unwrap();
    assert_eq!(observer.own_vectors()[0].read().unwrap(), 1);

    drop(newcomer);
    drop(observer);
    server.stop().unwrap();
    assert_eq!(
        open_fds(),
        before,
        "descriptors leaked after the server stopped"
    );
}

#[test]
fn client_sending_garbage_is_dropped() {
    survive("garbage", 3, |server| {
        for payload in [&b"hello"[..], &[0xff; 8], &[0; 4096]] {
            let mut s = UnixStream::connect(server.socket_path()).unwrap();
            s.write_all(payload).unwrap();
            // Keep the socket open: the server must drop it, not us.
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).unwrap_or_default();
        }
    });
}

#[test]
fn client_sending_descriptors_is_dropped_and_they_are_not_leaked() {
    survive("sendfds", 2, |server| {
        for _ in 0..2 {
            let s = UnixStream::connect(server.socket_path()).unwrap();
            let (x, y) = UnixStream::pair().unwrap();
            send_with_fds(s.as_fd(), b"surprise", &[x.as_fd(), y.as_fd()]).unwrap();
            let mut sink = Vec::new();
            (&s).read_to_end(&mut sink).unwrap_or_default();
        }
    });
}

#[test]
fn client_closing_immediately() {
    survive("close", 20, |server| {
        for _ in 0..20 {
            drop(UnixStream::connect(server.socket_path()).unwrap());
        }
    });
}

#[test]
fn client_closing_in_the_middle_of_setup() {
    survive("midsetup", 5, |server| {
        for _ in 0..5 {
            let mut s = UnixStream::connect(server.socket_path()).unwrap();
            let mut first = [0u8; 8];
            s.read_exact(&mut first).unwrap();
            assert_eq!(first, [0; 8], "version 0 comes first");
        }
    });
}

#[test]
fn client_half_closing() {
    survive("halfclose", 3, |server| {
        for _ in 0..3 {
            let mut s = UnixStream::connect(server.socket_path()).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            // The server treats end-of-stream as leaving and closes its side.
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).unwrap_or_default();
        }
    });
}

#[test]
fn flood_of_connections_that_never_read() {
    survive("flood", 200, |server| {
        let held: Vec<UnixStream> = (0..200)
            .map(|_| UnixStream::connect(server.socket_path()).unwrap())
            .collect();
        wait_for_stats(server, "all flood connections accepted", |s| {
            s.joined == 201
        });
        drop(held);
    });
}

/// Not a test on its own: when IVC_CHILD_SOCKET is set, this process is the
/// child of `killed_client_process`, joins as a real client and waits to be
/// killed.
#[test]
fn child_client_helper() {
    let Some(path) = std::env::var_os("IVC_CHILD_SOCKET") else {
        return;
    };
    let _client = Client::connect(path, VECTORS).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn killed_client_process() {
    let _lock = fd_lock();
    let server = start_server("crash", VECTORS);
    let mut observer = Client::connect(server.socket_path(), VECTORS).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_client_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IVC_CHILD_SOCKET", server.socket_path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = expect_joined(&mut observer);
    // SIGKILL: no destructor runs; the kernel closes the child's socket.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(expect_left(&mut observer).0, id);
    assert_eq!(server.stats().connected, 1);
}
