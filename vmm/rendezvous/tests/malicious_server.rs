//! The client against a server that lies: every violation is an error (not a
//! panic), and no descriptor the server sent is leaked.
//!
//! The fake server writes its whole message stream into a socket pair up
//! front; the client end then joins through `Client::from_stream`.

// Test helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{fd_lock, open_fds};
use ivc_kit::stream::Rng;
use ivc_rendezvous::fd_passing::send_with_fds;
use ivc_rendezvous::{
    Client, ClientError, ClientEvent, ClientOptions, ProtocolError, SharedMemory, ShmBacking,
};
use vmm_sys_util::eventfd::EventFd;

struct FakeServer {
    sock: UnixStream,
    shm: OwnedFd,
}

impl FakeServer {
    fn send(&self, value: i64, fds: &[BorrowedFd<'_>]) {
        send_with_fds(self.sock.as_fd(), &value.to_le_bytes(), fds).unwrap();
    }

    fn send_plain(&self, value: i64) {
        self.send(value, &[]);
    }

    fn send_eventfd(&self, value: i64) {
        let efd = eventfd();
        self.send(value, &[efd.as_fd()]);
    }

    /// Version, id, shared memory: the correct opening.
    fn open(&self, id: i64) {
        self.send_plain(0);
        self.send_plain(id);
        self.send(-1, &[self.shm.as_fd()]);
    }

    /// A peer announced with `n` eventfds.
    fn announce(&self, id: i64, n: u32) {
        for _ in 0..n {
            self.send_eventfd(id);
        }
    }
}

fn eventfd() -> OwnedFd {
    let efd = EventFd::new(libc::EFD_CLOEXEC | libc::EFD_NONBLOCK).unwrap();
    // SAFETY: into_raw_fd hands over sole ownership of a valid descriptor.
    unsafe { OwnedFd::from_raw_fd(efd.into_raw_fd()) }
}

fn shm() -> OwnedFd {
    SharedMemory::create(4096, &ShmBacking::Memfd)
        .unwrap()
        .into_fd()
}

fn socket_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = UnixStream::pair().unwrap();
    (a.into(), b.into())
}

fn options(vectors: u32) -> ClientOptions {
    let mut o = ClientOptions::new(vectors);
    o.setup_timeout = Duration::from_millis(300);
    o
}

/// Runs `script` against a fake server, then lets a client with `vectors`
/// join; hands the result to `check`. Asserts that no descriptor leaks.
fn scenario(
    vectors: u32,
    script: impl FnOnce(&FakeServer),
    check: impl FnOnce(Result<Client, ClientError>),
) {
    let _lock = fd_lock();
    let before = open_fds();
    {
        let (server_end, client_end) = UnixStream::pair().unwrap();
        let server = FakeServer {
            sock: server_end,
            shm: shm(),
        };
        script(&server);
        check(Client::from_stream(client_end, &options(vectors)));
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
}

fn setup_error(vectors: u32, script: impl FnOnce(&FakeServer)) -> ClientError {
    let mut error = None;
    scenario(vectors, script, |r| {
        error = Some(r.expect_err("setup should fail"))
    });
    error.unwrap()
}

fn protocol_error(vectors: u32, script: impl FnOnce(&FakeServer)) -> ProtocolError {
    match setup_error(vectors, script) {
        ClientError::Protocol(e) => e,
        other => panic!("expected a protocol error, got {other}"),
    }
}

/// Joins successfully, then feeds `later` and returns the first error.
fn later_error(
    vectors: u32,
    script: impl FnOnce(&FakeServer),
    later: impl FnOnce(&FakeServer),
) -> ProtocolError {
    let _lock = fd_lock();
    let before = open_fds();
    let error;
    {
        let (server_end, client_end) = UnixStream::pair().unwrap();
        let server = FakeServer {
            sock: server_end,
            shm: shm(),
        };
        script(&server);
        let mut client = Client::from_stream(client_end, &options(vectors)).unwrap();
        later(&server);
        error = loop {
            match client.next_event(Some(Duration::from_secs(5))) {
                Ok(Some(ClientEvent::ServerGone)) | Ok(None) => panic!("no error reported"),
                Ok(Some(_)) => continue,
                Err(ClientError::Protocol(e)) => break e,
                Err(e) => panic!("expected a protocol error, got {e}"),
            }
        };
        assert!(!client.is_connected(), "the client hangs up on a violation");
        assert!(client.try_next_event().unwrap().is_none());
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
    error
}

#[test]
fn a_correct_server_is_accepted() {
    scenario(
        2,
        |s| {
            s.open(4);
            s.announce(1, 2);
            s.announce(9, 2);
            s.announce(4, 2);
        },
        |r| {
            let c = r.unwrap();
            assert_eq!(c.id(), 4);
            assert_eq!(c.peer_ids().collect::<Vec<_>>(), vec![1, 9]);
            assert_eq!(c.own_vectors().len(), 2);
            assert_eq!(c.shm_size(), 4096);
        },
    );
}

#[test]
fn messages_split_into_single_bytes_are_reassembled() {
    scenario(
        1,
        |s| {
            let bytes = |v: i64| v.to_le_bytes();
            let efd = eventfd();
            let messages: [(i64, Option<BorrowedFd<'_>>); 4] = [
                (0, None),
                (7, None),
                (-1, Some(s.shm.as_fd())),
                (7, Some(efd.as_fd())),
            ];
            for (value, fd) in messages {
                for (i, byte) in bytes(value).iter().enumerate() {
                    let fds: Vec<BorrowedFd<'_>> = if i == 0 {
                        fd.into_iter().collect()
                    } else {
                        vec![]
                    };
                    send_with_fds(s.sock.as_fd(), &[*byte], &fds).unwrap();
                }
            }
        },
        |r| assert_eq!(r.unwrap().id(), 7),
    );
}

#[test]
fn wrong_version() {
    assert_eq!(
        protocol_error(1, |s| s.send_plain(1)),
        ProtocolError::UnsupportedVersion(1)
    );
    assert_eq!(
        protocol_error(1, |s| s.send_plain(-1)),
        ProtocolError::UnsupportedVersion(-1)
    );
    let e = protocol_error(1, |s| s.send_eventfd(0));
    assert!(
        matches!(
            e,
            ProtocolError::UnexpectedFd {
                message: "version",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bad_own_id() {
    for bad in [65536, -1, -2, i64::MIN, i64::MAX] {
        let e = protocol_error(1, |s| {
            s.send_plain(0);
            s.send_plain(bad);
        });
        assert_eq!(e, ProtocolError::InvalidOwnId(bad));
    }
    let e = protocol_error(1, |s| {
        s.send_plain(0);
        s.send_eventfd(3);
    });
    assert!(
        matches!(e, ProtocolError::UnexpectedFd { message: "id", .. }),
        "{e}"
    );
}

#[test]
fn bad_shared_memory_message() {
    let e = protocol_error(1, |s| {
        s.send_plain(0);
        s.send_plain(0);
        s.send_eventfd(0);
    });
    assert_eq!(e, ProtocolError::ExpectedSharedMemory { value: 0 });

    let e = protocol_error(1, |s| {
        s.send_plain(0);
        s.send_plain(0);
        s.send_plain(-1);
    });
    assert!(matches!(e, ProtocolError::MissingFd { .. }), "{e}");

    let not_memory: [fn() -> OwnedFd; 2] = [
        || socket_pair().0,
        || std::fs::File::open(std::env::temp_dir()).unwrap().into(),
    ];
    for make in not_memory {
        let e = protocol_error(1, |s| {
            s.send_plain(0);
            s.send_plain(0);
            let fd = make();
            s.send(-1, &[fd.as_fd()]);
        });
        assert!(matches!(e, ProtocolError::BadSharedMemory(_)), "{e}");
    }

    let e = protocol_error(1, |s| {
        s.send_plain(0);
        s.send_plain(0);
        // Our memfds are sealed against shrinking; an unlinked file is not.
        let dir = ShmBacking::Directory(std::env::temp_dir());
        let file = std::fs::File::from(SharedMemory::create(4096, &dir).unwrap().into_fd());
        file.set_len(0).unwrap();
        s.send(-1, &[file.as_fd()]);
    });
    assert!(matches!(e, ProtocolError::BadSharedMemory(_)), "{e}");

    let e = protocol_error(1, |s| {
        s.open(0);
        s.send(-1, &[s.shm.as_fd()]);
    });
    assert_eq!(e, ProtocolError::DuplicateSharedMemory);
}

#[test]
fn several_descriptors_in_one_message() {
    let e = protocol_error(1, |s| {
        s.open(0);
        let (a, b) = (eventfd(), eventfd());
        s.send(0, &[a.as_fd(), b.as_fd()]);
    });
    assert_eq!(e, ProtocolError::TooManyFds { count: 2 });
}

#[test]
fn vector_that_is_not_an_eventfd() {
    let e = protocol_error(1, |s| {
        s.open(0);
        let (p, _q) = socket_pair();
        s.send(0, &[p.as_fd()]);
    });
    assert!(
        matches!(e, ProtocolError::NotAnEventFd { peer: 0, .. }),
        "{e}"
    );
    let e = protocol_error(1, |s| {
        s.open(0);
        s.send(3, &[s.shm.as_fd()]);
    });
    assert!(
        matches!(e, ProtocolError::NotAnEventFd { peer: 3, .. }),
        "{e}"
    );
}

#[test]
fn out_of_range_values() {
    for bad in [65536, -2, i64::MIN, i64::MAX] {
        let e = protocol_error(1, |s| {
            s.open(0);
            s.send_eventfd(bad);
        });
        assert_eq!(e, ProtocolError::InvalidValue { value: bad });
    }
}

#[test]
fn vector_runs_cut_short() {
    // Peer 5 gets one of two eventfds, then our own arrive.
    let e = protocol_error(2, |s| {
        s.open(0);
        s.announce(5, 1);
        s.announce(0, 2);
    });
    assert_eq!(
        e,
        ProtocolError::IncompleteVectors {
            peer: 5,
            got: 1,
            expected: 2
        }
    );
    // Our own run interrupted by another peer.
    let e = protocol_error(3, |s| {
        s.open(2);
        s.announce(2, 1);
        s.announce(5, 3);
    });
    assert_eq!(
        e,
        ProtocolError::IncompleteVectors {
            peer: 2,
            got: 1,
            expected: 3
        }
    );
    // A peer's run interrupted by a leave.
    let e = protocol_error(2, |s| {
        s.open(0);
        s.announce(1, 2);
        s.announce(5, 1);
        s.send_plain(1);
    });
    assert!(
        matches!(e, ProtocolError::IncompleteVectors { peer: 5, .. }),
        "{e}"
    );
}

#[test]
fn server_closing_or_going_silent_during_setup() {
    let e = setup_error(1, |_| {});
    assert!(matches!(e, ClientError::Timeout), "{e}");

    // Close after half a message.
    let mut error = None;
    scenario(
        1,
        |_| {},
        |_| {
            let (server_end, client_end) = UnixStream::pair().unwrap();
            send_with_fds(server_end.as_fd(), &[0, 0, 0, 0], &[]).unwrap();
            drop(server_end);
            error = Client::from_stream(client_end, &options(1)).err();
        },
    );
    assert!(
        matches!(error, Some(ClientError::ServerClosed)),
        "{error:?}"
    );

    // Close before the own vectors.
    let mut error = None;
    scenario(
        2,
        |_| {},
        |_| {
            let (server_end, client_end) = UnixStream::pair().unwrap();
            let s = FakeServer {
                sock: server_end,
                shm: shm(),
            };
            s.open(0);
            s.announce(0, 1);
            drop(s);
            error = Client::from_stream(client_end, &options(2)).err();
        },
    );
    assert!(
        matches!(error, Some(ClientError::ServerClosed)),
        "{error:?}"
    );
}

#[test]
fn violations_after_setup() {
    let joined = |s: &FakeServer| {
        s.open(0);
        s.announce(0, 2);
    };
    assert_eq!(
        later_error(2, joined, |s| s.send_plain(7)),
        ProtocolError::UnknownPeerLeft(7)
    );
    assert_eq!(
        later_error(2, joined, |s| s.send_plain(0)),
        ProtocolError::OwnIdLeft(0)
    );
    assert_eq!(
        later_error(2, joined, |s| s.announce(0, 1)),
        ProtocolError::TooManyVectors {
            peer: 0,
            vectors: 2
        }
    );
    assert_eq!(
        later_error(2, joined, |s| s.announce(3, 3)),
        ProtocolError::TooManyVectors {
            peer: 3,
            vectors: 2
        }
    );
    assert_eq!(
        later_error(2, joined, |s| s.send(-1, &[s.shm.as_fd()])),
        ProtocolError::DuplicateSharedMemory
    );
    assert_eq!(
        later_error(2, joined, |s| {
            s.announce(3, 2);
            s.send_plain(3);
            s.send_plain(3);
        }),
        ProtocolError::UnknownPeerLeft(3)
    );
}

#[test]
fn events_after_setup() {
    scenario(
        1,
        |s| {
            s.open(1);
            s.announce(0, 1);
            s.announce(1, 1);
            s.announce(2, 1);
            s.send_plain(0);
        },
        |r| {
            let mut c = r.unwrap();
            assert_eq!(c.peer_ids().collect::<Vec<_>>(), vec![0]);
            assert!(matches!(
                c.try_next_event().unwrap(),
                Some(ClientEvent::PeerJoined(2))
            ));
            match c.try_next_event().unwrap() {
                Some(ClientEvent::PeerLeft { id: 0, vectors }) => assert_eq!(vectors.len(), 1),
                other => panic!("{other:?}"),
            }
            assert!(
                c.try_next_event().unwrap().is_none(),
                "nothing more, server still there"
            );
            assert!(c.is_connected());
        },
    );
}

/// Random message streams, some starting with a valid opening: the client
/// must end in `Ok` or `Err`, never panic, and never leak a descriptor.
#[test]
fn random_streams_never_panic_or_leak() {
    let _lock = fd_lock();
    let before = open_fds();
    let mut rng = Rng::new(0x1bad_5eed_0f1c);
    let mut outcomes = [0usize; 2];
    for _ in 0..400 {
        let vectors = 1 + rng.below(3) as u32;
        let (server_end, client_end) = UnixStream::pair().unwrap();
        let s = FakeServer {
            sock: server_end,
            shm: shm(),
        };
        if rng.below(2) == 0 {
            s.open(rng.below(4) as i64);
        }
        for _ in 0..rng.below(24) {
            let value = match rng.below(8) {
                0 => -1,
                1 => 65535,
                2 => 65536,
                3 => rng.next_u64() as i64,
                _ => rng.below(4) as i64,
            };
            match rng.below(6) {
                0 | 1 => s.send_plain(value),
                2 | 3 => s.send_eventfd(value),
                4 => s.send(value, &[s.shm.as_fd()]),
                _ => {
                    let (a, b) = socket_pair();
                    s.send(value, &[a.as_fd(), b.as_fd()]);
                }
            }
        }
        if rng.below(4) == 0 {
            send_with_fds(s.sock.as_fd(), &[1, 2, 3], &[]).unwrap();
        }
        drop(s); // end of stream instead of a timeout keeps this fast
        match Client::from_stream(client_end, &options(vectors)) {
            Ok(mut client) => {
                outcomes[0] += 1;
                while let Ok(Some(_)) = client.try_next_event() {}
            }
            Err(_) => outcomes[1] += 1,
        }
    }
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "both outcomes exercised: {outcomes:?}"
    );
    assert_eq!(open_fds(), before, "descriptors leaked");
}
