//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ivc_rendezvous::{
    Client, ClientEvent, PeerId, Server, ServerConfig, ServerStats, ServerThread,
};
use vmm_sys_util::eventfd::EventFd;

pub const WAIT: Duration = Duration::from_secs(10);

/// A fresh socket path (short: sun_path holds 108 bytes).
pub fn socket_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("ivc-rdv-{}-{tag}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

pub fn start_server(tag: &str, vectors: u32) -> ServerThread {
    start_server_with(ServerConfig::new(socket_path(tag), 1 << 20, vectors))
}

pub fn start_server_with(config: ServerConfig) -> ServerThread {
    Server::bind(config).expect("bind").spawn().expect("spawn")
}

/// Number of descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Tests that count descriptors must not run concurrently with other tests
/// of the same binary that open some.
pub fn fd_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn next_event(client: &mut Client) -> ClientEvent {
    client
        .next_event(Some(WAIT))
        .expect("client error")
        .expect("no event within the time limit")
}

pub fn expect_joined(client: &mut Client) -> PeerId {
    match next_event(client) {
        ClientEvent::PeerJoined(id) => id,
        other => panic!("expected a join, got {other:?}"),
    }
}

pub fn expect_left(client: &mut Client) -> (PeerId, Vec<EventFd>) {
    match next_event(client) {
        ClientEvent::PeerLeft { id, vectors } => (id, vectors),
        other => panic!("expected a leave, got {other:?}"),
    }
}

/// Asserts that nothing more arrives for a short while.
pub fn expect_quiet(client: &mut Client) {
    if let Some(event) = client
        .next_event(Some(Duration::from_millis(100)))
        .expect("client error")
    {
        panic!("unexpected event {event:?}");
    }
}

/// Whether an eventfd's counter is non-zero, without consuming it.
pub fn is_signalled(fd: &EventFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc == 1 && pfd.revents & libc::POLLIN != 0
}

/// Polls `cond` until it holds or WAIT passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_for_stats(
    server: &ServerThread,
    what: &str,
    cond: impl Fn(&ServerStats) -> bool,
) -> ServerStats {
    wait_until(what, || cond(&server.stats()));
    server.stats()
}
