//! One connected client as the server sees it: its socket, its eventfds and
//! the messages still to be sent to it.
//!
//! Sends never block the server. A client that does not read fills its
//! socket buffer; what does not fit waits in the peer's outbox until the
//! socket is writable again. Messages in the outbox hold their descriptor by
//! `Arc`, so a peer that leaves while announcements of it are still queued
//! elsewhere does not invalidate them, and the descriptor is closed exactly
//! when the last queued copy is sent or dropped.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::fd_passing::send_with_fds;
use crate::protocol::{encode, PeerId, MESSAGE_SIZE};

/// A descriptor shared between the server's tables and queued messages.
pub(crate) type SharedFd = Arc<OwnedFd>;

/// Upper bound on a peer's outbox. A client this far behind is not reading
/// at all; keeping its messages would let it grow the server without bound.
/// Generous: a newcomer among 1000 peers with 64 vectors needs ~64k messages.
pub(crate) const MAX_OUTBOX: usize = 1 << 17;

#[derive(Debug)]
struct Outgoing {
    bytes: [u8; MESSAGE_SIZE],
    sent: usize,
    fd: Option<SharedFd>,
}

/// A fresh eventfd for one interrupt vector.
///
/// Non-blocking from the start: QEMU sets `O_NONBLOCK` on every eventfd it
/// receives, and that flag lives in the open file description that all
/// holders share, so this keeps the behaviour the same whoever joins.
///
/// The server never signals or reads it, only hands it out, so it is kept
/// as a plain [`OwnedFd`] like every other descriptor in the outbox.
pub(crate) fn new_vector_eventfd() -> io::Result<OwnedFd> {
    let efd = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?;
    // SAFETY: into_raw_fd gives up the EventFd's descriptor, so the OwnedFd
    // is its only owner (vmm-sys-util's EventFd has no `From` for OwnedFd).
    Ok(unsafe { OwnedFd::from_raw_fd(efd.into_raw_fd()) })
}

/// Process id of the other end of a UNIX socket (`SO_PEERCRED`), so the
/// logs can say which VMM got which id.
pub(crate) fn peer_pid(stream: &UnixStream) -> Option<libc::pid_t> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    // reason: size_of::<ucred>() is a constant 12.
    #[allow(clippy::cast_possible_truncation)]
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writing and len holds cred's size.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

/// Result of trying to empty the outbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Everything was sent.
    Done,
    /// The socket is full; wait for it to become writable.
    Blocked,
}

/// The outbox overflowed; the peer must be dropped.
#[derive(Debug)]
pub(crate) struct OutboxFull;

/// What reading from a client's socket showed. Clients never send anything
/// in this protocol, so any readability means the client is to be removed.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// Nothing there (spurious wake-up).
    Nothing,
    /// End of stream: the client closed or half-closed its side.
    HungUp,
    /// The client sent bytes.
    Garbage(usize),
    /// The socket reported an error.
    Error(io::Error),
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub id: PeerId,
    pub stream: UnixStream,
    /// One eventfd per interrupt vector; the peer receives interrupts on them,
    /// everyone else gets copies to send interrupts with.
    pub vectors: Vec<SharedFd>,
    /// Whether the event loop currently waits for this socket to be writable.
    pub wants_writable: bool,
    outbox: VecDeque<Outgoing>,
}

impl Peer {
    pub fn new(id: PeerId, stream: UnixStream, vectors: Vec<SharedFd>) -> Peer {
        Peer {
            id,
            stream,
            vectors,
            wants_writable: false,
            outbox: VecDeque::new(),
        }
    }

    /// Appends a message to the outbox (sent by the next [`Peer::flush`]).
    pub fn queue(&mut self, value: i64, fd: Option<SharedFd>) -> Result<(), OutboxFull> {
        if self.outbox.len() >= MAX_OUTBOX {
            return Err(OutboxFull);
        }
        self.outbox.push_back(Outgoing {
            bytes: encode(value),
            sent: 0,
            fd,
        });
        Ok(())
    }

    /// Number of messages not yet (completely) sent.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Sends as much of the outbox as the socket takes.
    pub fn flush(&mut self) -> io::Result<Flush> {
        while let Some(front) = self.outbox.front_mut() {
            let fds: Vec<_> = front.fd.iter().map(|fd| fd.as_fd()).collect();
            match send_with_fds(self.stream.as_fd(), &front.bytes[front.sent..], &fds) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    front.sent += n;
                    // The descriptor went with the first byte; a short send
                    // (never seen for 8 bytes, but allowed on streams) must
                    // not send it again with the rest.
                    front.fd = None;
                    if front.sent == MESSAGE_SIZE {
                        self.outbox.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) => return Err(e),
            }
        }
        Ok(Flush::Done)
    }

    /// Looks at what the client sent (see [`ReadOutcome`]).
    pub fn read_incoming(&mut self) -> ReadOutcome {
        let mut buf = [0u8; 64];
        loop {
            return match self.stream.read(&mut buf) {
                Ok(0) => ReadOutcome::HungUp,
                Ok(n) => ReadOutcome::Garbage(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Nothing,
                // What a client that exits with messages still unread
                // causes: just another way of hanging up.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => ReadOutcome::HungUp,
                Err(e) => ReadOutcome::Error(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd_passing::recv_with_fds;
    use crate::protocol::decode;
    use std::io::Write;

    #[test]
    fn queued_messages_go_out_in_order_with_their_fds() {
        let (server_side, client_side) = UnixStream::pair().unwrap();
        server_side.set_nonblocking(true).unwrap();
        let mut peer = Peer::new(3, server_side, vec![]);
        let efd = Arc::new(new_vector_eventfd().unwrap());
        peer.queue(0, None).unwrap();
        peer.queue(3, Some(efd.clone())).unwrap();
        peer.queue(-1, None).unwrap();
        assert_eq!(peer.flush().unwrap(), Flush::Done);
        assert_eq!(peer.pending(), 0);
        let mut got = Vec::new();
        for _ in 0..3 {
            let mut buf = [0; 8];
            let r = recv_with_fds(client_side.as_fd(), &mut buf, 0).unwrap();
            assert_eq!(r.len, 8);
            got.push((decode(buf), r.fds.len()));
        }
        assert_eq!(got, vec![(0, 0), (3, 1), (-1, 0)]);
    }

    #[test]
    fn full_socket_blocks_then_resumes() {
        let (server_side, client_side) = UnixStream::pair().unwrap();
        server_side.set_nonblocking(true).unwrap();
        let mut peer = Peer::new(0, server_side, vec![]);
        let total = 100_000;
        for i in 0..total {
            peer.queue(i, None).unwrap();
        }
        assert_eq!(peer.flush().unwrap(), Flush::Blocked);
        assert!(peer.pending() > 0);
        client_side.set_nonblocking(true).unwrap();
        let mut next = 0i64;
        while next < total {
            let mut buf = [0; 8];
            match recv_with_fds(client_side.as_fd(), &mut buf, 0) {
                Ok(r) => {
                    assert_eq!(r.len, 8);
                    assert_eq!(decode(buf), next);
                    next += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    peer.flush().unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(peer.pending(), 0);
    }

    #[test]
    fn peer_pid_is_our_own_for_a_socket_pair() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer_pid(&a), Some(std::process::id() as libc::pid_t));
    }

    #[test]
    fn outbox_is_bounded() {
        let (server_side, _client_side) = UnixStream::pair().unwrap();
        let mut peer = Peer::new(0, server_side, vec![]);
        for _ in 0..MAX_OUTBOX {
            peer.queue(1, None).unwrap();
        }
        assert!(peer.queue(1, None).is_err());
    }

    #[test]
    fn reading_classifies_client_behaviour() {
        let (server_side, mut client_side) = UnixStream::pair().unwrap();
        server_side.set_nonblocking(true).unwrap();
        let mut peer = Peer::new(0, server_side, vec![]);
        assert!(matches!(peer.read_incoming(), ReadOutcome::Nothing));
        client_side.write_all(b"hello").unwrap();
        assert!(matches!(peer.read_incoming(), ReadOutcome::Garbage(5)));
        client_side.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(matches!(peer.read_incoming(), ReadOutcome::HungUp));
    }
}
