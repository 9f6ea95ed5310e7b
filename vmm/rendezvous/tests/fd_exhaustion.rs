//! The server runs out of file descriptors: it pauses accepting or turns
//! clients away, keeps running, serves again once descriptors are free, and
//! leaks none. (Its own test binary: it lowers this process's fd limit.)

// Test helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixStream;

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

    // Room for 40 more descriptors in the whole process. Each connection
    // costs 1 here and 1 + 4 in the server, so the server runs dry first.
    set_fd_limit(libc::rlimit {
        rlim_cur: limit_leaving(40),
        rlim_max: original.rlim_max,
    });
    let held: Vec<UnixStream> = (0..30)
        .map(|_| UnixStream::connect(server.socket_path()).unwrap())
        .collect();
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
