//! The server runs out of file descriptors: it pauses accepting or turns
//! clients away, keeps running, serves again once descriptors are free, and
//! leaks none. (Its own test binary: it lowers this process's fd limit.)

// Test helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use common::*;
use ivc_rendezvous::Client;

/// The fd limit that leaves exactly `free` descriptor numbers unused (the
/// limit caps descriptor *numbers*, and inherited descriptors leave holes).
fn limit_leaving(free: usize) -> u64 {
    let open: std::collections::BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    (0u64..)
        .filter(|n| !open.contains(n))
        .nth(free - 1)
        .unwrap()
        + 1
}

/// An unconnected Unix stream socket. The test opens its client sockets
/// before it lowers the limit: the server runs in this process, so a socket
/// opened afterwards could be the one that finds the table full.
fn unconnected_socket() -> OwnedFd {
    // SAFETY: socket takes no pointers; a non-negative result is a new fd
    // that nothing else owns.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Connects `sock` to the server at `path` (connect needs no new descriptor).
fn connect(sock: &OwnedFd, path: &Path) {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes and outlives the call.
    let rc = unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast(), len) };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
}

fn set_fd_limit(limit: libc::rlimit) {
    // SAFETY: setrlimit reads one valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

#[test]
fn out_of_descriptors_then_recovered() {
    let before = open_fds();
    let server = start_server("nofds", 4);
    let mut original = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills one valid rlimit struct.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut original) };
    assert_eq!(rc, 0);

    // The 30 client sockets exist before the limit drops; then the process
    // has room for 10 more descriptors, all of which the server's accepts
    // (1 + 4 per client) can take. Only the server can run dry.
    let held: Vec<OwnedFd> = (0..30).map(|_| unconnected_socket()).collect();
    set_fd_limit(libc::rlimit {
        rlim_cur: limit_leaving(10),
        rlim_max: original.rlim_max,
    });
    for sock in &held {
        connect(sock, server.socket_path());
    }
    let starved = wait_for_stats(&server, "the server to run out of descriptors", |s| {
        s.rejected > 0 || s.accept_pauses > 0
    });
    assert!(starved.joined < 30, "{starved:?}");
    drop(held);
    set_fd_limit(original);

    wait_for_stats(&server, "every starved connection to be dealt with", |s| {
        s.connected == 0 && s.joined + s.rejected == 30
    });
    let mut a = Client::connect(server.socket_path(), 4).unwrap();
    let b = Client::connect(server.socket_path(), 4).unwrap();
    assert_eq!(expect_joined(&mut a), b.id());
    b.peer_vectors(a.id()).unwrap()[3].write(1).unwrap();
    assert_eq!(a.own_vectors()[3].read().unwrap(), 1);
    drop((a, b));
    server.stop().unwrap();
    assert_eq!(open_fds(), before, "descriptors leaked");
}
