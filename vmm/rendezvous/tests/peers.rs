//! Well-behaved clients: joining, seeing each other, interrupting each other,
//! leaving; server start-up and shutdown.

// Test helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::*;
use ivc_rendezvous::{
    Client, ClientError, ClientEvent, ClientOptions, IdPolicy, ProtocolError, Server, ServerConfig,
    ServerError, ShmBacking,
};

#[test]
fn two_clients_see_each_other_and_share_eventfds() {
    let server = start_server("pair", 3);
    let mut a = Client::connect(server.socket_path(), 3).unwrap();
    assert_eq!(a.id(), 0, "the first client gets id 0");
    assert_eq!(a.peer_ids().count(), 0);
    assert_eq!(a.own_vectors().len(), 3);
    assert_eq!(a.shm_size(), 1 << 20);

    let b = Client::connect(server.socket_path(), 3).unwrap();
    assert_eq!(b.id(), 1);
    assert_eq!(
        b.peer_ids().collect::<Vec<_>>(),
        vec![0],
        "b learns of a during setup"
    );
    assert_eq!(expect_joined(&mut a), 1, "a is told that b joined");
    assert_eq!(a.peer_ids().collect::<Vec<_>>(), vec![1]);

    // The descriptor a holds for (b, v) is b's own eventfd v, and vice versa.
    for v in 0..3 {
        for (sender, receiver) in [(&a, &b), (&b, &a)] {
            let target = sender.peer_vectors(receiver.id()).unwrap();
            assert_eq!(target.len(), 3);
            for (i, own) in receiver.own_vectors().iter().enumerate() {
                assert!(!is_signalled(own), "vector {i} idle before the doorbell");
            }
            target[v].write(1).unwrap();
            for (i, own) in receiver.own_vectors().iter().enumerate() {
                assert_eq!(is_signalled(own), i == v, "only vector {v} rings");
            }
            assert_eq!(receiver.own_vectors()[v].read().unwrap(), 1);
        }
    }

    // Both map the same memory.
    assert_eq!(
        a.shm().metadata().unwrap().ino(),
        b.shm().metadata().unwrap().ino()
    );
    a.shm().write_all_at(b"hello from a", 4096).unwrap();
    let mut buf = [0u8; 12];
    b.shm().read_exact_at(&mut buf, 4096).unwrap();
    assert_eq!(&buf, b"hello from a");

    // Own eventfds are non-blocking (QEMU makes them so anyway).
    let err = a.own_vectors()[0].read().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);

    drop(b);
    let (gone, vectors) = expect_left(&mut a);
    assert_eq!(gone, 1);
    assert_eq!(
        vectors.len(),
        3,
        "the leaving peer's eventfds are handed back"
    );
    assert_eq!(a.peer_ids().count(), 0);
    expect_quiet(&mut a);
    server.stop().unwrap();
}

#[test]
fn newcomers_learn_existing_peers_and_ids_follow_qemu() {
    let server = start_server("ids", 1);
    let mut a = Client::connect(server.socket_path(), 1).unwrap();
    let b = Client::connect(server.socket_path(), 1).unwrap();
    let mut c = Client::connect(server.socket_path(), 1).unwrap();
    assert_eq!((a.id(), b.id(), c.id()), (0, 1, 2));
    assert_eq!(c.peer_ids().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(expect_joined(&mut a), 1);
    assert_eq!(expect_joined(&mut a), 2);

    drop(b);
    assert_eq!(expect_left(&mut a).0, 1);
    assert_eq!(expect_left(&mut c).0, 1);

    // Like QEMU's ivshmem-server: the next id after the last one handed out.
    let d = Client::connect(server.socket_path(), 1).unwrap();
    assert_eq!(d.id(), 3);
    assert_eq!(d.peer_ids().collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(expect_joined(&mut a), 3);
    assert_eq!(expect_joined(&mut c), 3);
    let stats = server.stats();
    assert_eq!((stats.connected, stats.joined, stats.left), (3, 4, 1));
}

#[test]
fn lowest_free_policy_reuses_ids() {
    let mut config = ServerConfig::new(socket_path("lowest"), 4096, 1);
    config.id_policy = IdPolicy::LowestFree;
    let server = start_server_with(config);
    let mut a = Client::connect(server.socket_path(), 1).unwrap();
    let b = Client::connect(server.socket_path(), 1).unwrap();
    assert_eq!(expect_joined(&mut a), 1);
    drop(b);
    assert_eq!(expect_left(&mut a).0, 1);
    let b_again = Client::connect(server.socket_path(), 1).unwrap();
    assert_eq!(b_again.id(), 1);
}

#[test]
fn stopping_the_server_closes_connections_and_removes_the_socket() {
    let server = start_server("stop", 2);
    let path = server.socket_path().to_path_buf();
    let mut a = Client::connect(&path, 2).unwrap();
    let mut b = Client::connect(&path, 2).unwrap();
    assert_eq!(expect_joined(&mut a), 1);
    server.stop().unwrap();
    assert!(!path.exists(), "socket file removed");
    for client in [&mut a, &mut b] {
        assert!(matches!(next_event(client), ClientEvent::ServerGone));
        assert!(!client.is_connected());
        assert!(client.next_event(Some(Duration::ZERO)).unwrap().is_none());
    }
    // Peers stay usable without the server.
    a.peer_vectors(1).unwrap()[1].write(1).unwrap();
    assert_eq!(b.own_vectors()[1].read().unwrap(), 1);
}

#[test]
fn socket_path_in_use_stale_or_foreign() {
    let server = start_server("inuse", 1);
    let path = server.socket_path().to_path_buf();
    let err = Server::bind(ServerConfig::new(&path, 4096, 1)).unwrap_err();
    assert!(matches!(err, ServerError::SocketInUse(_)), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(server);

    // A socket nobody listens on any more is replaced.
    let stale = socket_path("stale");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let server = Server::bind(ServerConfig::new(&stale, 4096, 1))
        .unwrap()
        .spawn()
        .unwrap();
    Client::connect(&stale, 1).unwrap();
    drop(server);
    assert!(!stale.exists());

    // Anything else is left alone.
    let file = socket_path("file");
    std::fs::write(&file, b"precious").unwrap();
    let err = Server::bind(ServerConfig::new(&file, 4096, 1)).unwrap_err();
    assert!(matches!(err, ServerError::NotASocket(_)), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    std::fs::remove_file(&file).unwrap();

    let long = std::env::temp_dir().join("x".repeat(200));
    let err = Server::bind(ServerConfig::new(&long, 4096, 1)).unwrap_err();
    assert!(matches!(err, ServerError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("limit for UNIX sockets"), "{err}");
    assert!(!long.exists());
}

#[test]
fn bad_server_configurations() {
    for (size, vectors) in [(4096, 0), (4096, 65), (3 << 20, 1), (0, 1)] {
        let path = socket_path("badcfg");
        let err = Server::bind(ServerConfig::new(&path, size, vectors)).unwrap_err();
        assert!(
            matches!(err, ServerError::InvalidConfig(_) | ServerError::Shm(_)),
            "{size} {vectors}: {err}"
        );
        assert!(!path.exists(), "nothing left behind on error");
    }
}

#[test]
fn file_backed_shared_memory_is_shared() {
    let dir = std::env::temp_dir().join(format!("ivc-rdv-shm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shm");
    let mut config = ServerConfig::new(socket_path("fileshm"), 64 << 10, 1);
    config.shm_backing = ShmBacking::File(file.clone());
    let server = start_server_with(config);
    let a = Client::connect(server.socket_path(), 1).unwrap();
    assert_eq!(a.shm_size(), 64 << 10);
    a.shm().write_all_at(b"visible on disk", 0).unwrap();
    assert_eq!(&std::fs::read(&file).unwrap()[..15], b"visible on disk");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vector_count_mismatch_is_reported() {
    let server = start_server("mismatch", 2);
    // Fewer vectors than the server: the extra own eventfd is a violation.
    let mut short = Client::connect(server.socket_path(), 1).unwrap();
    let err = short.next_event(Some(WAIT)).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Protocol(ProtocolError::TooManyVectors { .. })
        ),
        "{err}"
    );

    drop(short);
    wait_for_stats(&server, "the short client to be gone", |s| s.connected == 0);

    // More vectors than the server: alone, setup never completes.
    let mut options = ClientOptions::new(3);
    options.setup_timeout = Duration::from_millis(300);
    let err = Client::connect_with(server.socket_path(), &options).unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err}");
    assert!(err.to_string().contains("vector count"), "{err}");

    // ... and with another peer present the mismatch shows right away.
    let _peer = Client::connect(server.socket_path(), 2).unwrap();
    let err = Client::connect(server.socket_path(), 3).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Protocol(ProtocolError::IncompleteVectors {
                got: 2,
                expected: 3,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn connecting_nowhere_is_a_clear_error() {
    let err = Client::connect(socket_path("nowhere"), 1).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let err = Client::connect(socket_path("nowhere"), 0).unwrap_err();
    assert!(matches!(err, ClientError::InvalidConfig(_)), "{err}");
}

#[test]
fn many_peers_with_many_vectors() {
    let server = start_server("many", 16);
    let mut first = Client::connect(server.socket_path(), 16).unwrap();
    let mut others = Vec::new();
    for i in 1..=12u16 {
        let c = Client::connect(server.socket_path(), 16).unwrap();
        assert_eq!(c.id(), i);
        assert_eq!(c.peer_ids().count(), usize::from(i));
        others.push(c);
        assert_eq!(expect_joined(&mut first), i);
    }
    // The last one can ring everybody on every vector.
    let last = others.last().unwrap();
    for peer in std::iter::once(&first).chain(&others[..others.len() - 1]) {
        for v in 0..16 {
            last.peer_vectors(peer.id()).unwrap()[v].write(1).unwrap();
            assert_eq!(peer.own_vectors()[v].read().unwrap(), 1);
        }
    }
    drop(others);
    let mut left: Vec<u16> = (0..12).map(|_| expect_left(&mut first).0).collect();
    left.sort_unstable();
    assert_eq!(left, (1..=12).collect::<Vec<u16>>());
}

#[test]
fn slow_reader_gets_everything_in_order() {
    let server = start_server("slow", 2);
    // Connected, but reads nothing until 300 peers have come and gone:
    // ~900 messages, more than a socket buffer holds, so most of them wait
    // in the server's outbox for the socket to become writable.
    let slow = std::os::unix::net::UnixStream::connect(server.socket_path()).unwrap();
    wait_for_stats(&server, "the slow client to join", |s| s.joined == 1);
    for _ in 0..300 {
        drop(Client::connect(server.socket_path(), 2).unwrap());
    }
    wait_for_stats(&server, "the churn to end", |s| s.left == 300);
    let mut client = Client::from_stream(slow, &ClientOptions::new(2)).unwrap();
    assert_eq!(client.id(), 0);
    // The server may accept the next client before it notices that the
    // previous one hung up, so joins and leaves can interleave; but ids come
    // in order and every leave follows its join.
    let (mut next_join, mut present, mut left) = (1u16, std::collections::BTreeSet::new(), 0);
    while left < 300 {
        match next_event(&mut client) {
            ClientEvent::PeerJoined(id) => {
                assert_eq!(id, next_join);
                next_join += 1;
                present.insert(id);
            }
            ClientEvent::PeerLeft { id, .. } => {
                assert!(present.remove(&id), "leave of {id} before its join");
                left += 1;
            }
            ClientEvent::ServerGone => panic!("server gone"),
        }
    }
    assert_eq!(next_join, 301);
    expect_quiet(&mut client);
    assert_eq!(server.stats().connected, 1);
}

#[test]
fn socket_appears_ready_and_nothing_else_is_left_behind() {
    let dir = std::env::temp_dir().join(format!("ivc-rdv-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let server = Server::bind(ServerConfig::new(&path, 4096, 1)).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("s.sock")]);
    drop(server);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir(&dir).unwrap();
}
