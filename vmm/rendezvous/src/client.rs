//! A client of the rendezvous server — what a VMM process uses to join. It
//! speaks to our server and to QEMU's ivshmem-server alike.
//!
//! The server is not trusted: every value, every descriptor and the order of
//! messages are checked, and anything unexpected is an error (the connection
//! is then closed, as the spec asks), never a panic or a leaked descriptor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::EventFd;

use crate::fd_passing::recv_with_fds;
use crate::protocol::{
    decode, peer_id_from_wire, PeerId, ProtocolError, MAX_VECTORS, MESSAGE_SIZE, PROTOCOL_VERSION,
    SHM_MESSAGE,
};

/// How long [`Client::connect`] waits for the server's setup messages.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Interrupt vectors per peer; must equal the server's.
    pub vectors: u32,
    /// Limit for receiving the whole setup sequence.
    pub setup_timeout: Duration,
}

impl ClientOptions {
    /// `vectors` per peer, the default setup timeout.
    pub fn new(vectors: u32) -> ClientOptions {
        ClientOptions {
            vectors,
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
        }
    }
}

/// Something the server told us after setup.
#[derive(Debug)]
pub enum ClientEvent {
    /// A peer arrived; its eventfds are in [`Client::peer_vectors`].
    PeerJoined(PeerId),
    /// A peer left. Its eventfds are handed over so that whatever was
    /// registered with them (KVM ioeventfds, say) can be unregistered before
    /// they are closed.
    PeerLeft { id: PeerId, vectors: Vec<EventFd> },
    /// The server closed the connection. Known peers stay usable (the spec
    /// allows going on without a server), but no more joins or leaves will
    /// be reported.
    ServerGone,
}

/// Why joining or listening failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The options are out of range.
    #[error("invalid client options: {0}")]
    InvalidConfig(String),
    /// Could not connect to the socket.
    #[error("cannot connect to rendezvous server at {}: {source}", .path.display())]
    Connect { path: PathBuf, source: io::Error },
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: io::Error,
    },
    /// The setup sequence did not arrive in time.
    #[error(
        "timed out waiting for the server's setup messages \
         (does the server use the same vector count?)"
    )]
    Timeout,
    /// The server closed the connection during setup.
    #[error("the server closed the connection during setup")]
    ServerClosed,
    /// The server broke the protocol.
    #[error("protocol violation by the server: {0}")]
    Protocol(#[from] ProtocolError),
}

/// One decoded message.
#[derive(Debug)]
struct Message {
    value: i64,
    fd: Option<OwnedFd>,
}

enum Received {
    Message(Message),
    WouldBlock,
    Eof,
}

/// Reassembles 8-byte messages and the descriptor that came with them.
#[derive(Debug, Default)]
struct Reassembly {
    buf: [u8; MESSAGE_SIZE],
    len: usize,
    fd: Option<OwnedFd>,
}

impl Reassembly {
    fn recv(&mut self, sock: BorrowedFd<'_>, flags: libc::c_int) -> Result<Received, ClientError> {
        loop {
            // Never ask for more than the rest of the current message, so
            // that descriptors cannot be attributed to the wrong message.
            let r = match recv_with_fds(sock, &mut self.buf[self.len..], flags) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Received::WouldBlock)
                }
                Err(e) => {
                    return Err(ClientError::Io {
                        context: "receiving from the rendezvous server",
                        source: e,
                    })
                }
            };
            if r.control_truncated {
                return Err(ProtocolError::ControlTruncated.into());
            }
            let fds = r.fds.len() + usize::from(self.fd.is_some());
            if fds > 1 {
                return Err(ProtocolError::TooManyFds { count: fds }.into());
            }
            if r.len == 0 {
                return Ok(Received::Eof);
            }
            if let Some(fd) = r.fds.into_iter().next() {
                self.fd = Some(fd);
            }
            self.len += r.len;
            if self.len == MESSAGE_SIZE {
                self.len = 0;
                return Ok(Received::Message(Message {
                    value: decode(self.buf),
                    fd: self.fd.take(),
                }));
            }
        }
    }
}

/// Whether `fd` is an eventfd, judged by what /proc says it is. Without
/// /proc we cannot tell; KVM and write(2) reject other descriptors later.
fn check_eventfd(fd: &OwnedFd) -> Result<(), String> {
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(target) if target == Path::new("anon_inode:[eventfd]") => Ok(()),
        Ok(target) => Err(target.display().to_string()),
        Err(_) => Ok(()),
    }
}

fn into_eventfd(fd: OwnedFd) -> EventFd {
    // SAFETY: into_raw_fd hands over sole ownership of a valid descriptor,
    // which the EventFd then owns and closes.
    unsafe { EventFd::from_raw_fd(fd.into_raw_fd()) }
}

/// A joined client: its id, the shared memory, its own eventfds and those of
/// every other peer.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    id: PeerId,
    vectors: u32,
    shm: File,
    shm_size: u64,
    own: Vec<EventFd>,
    peers: BTreeMap<PeerId, Vec<EventFd>>,
    /// A peer whose eventfds are arriving (one message per vector).
    incoming: Option<(PeerId, Vec<EventFd>)>,
    rx: Reassembly,
    connected: bool,
}

impl Client {
    /// Connects to the server at `path` and receives the setup sequence.
    pub fn connect(path: impl AsRef<Path>, vectors: u32) -> Result<Client, ClientError> {
        Client::connect_with(path, &ClientOptions::new(vectors))
    }

    /// [`Client::connect`] with all options.
    pub fn connect_with(
        path: impl AsRef<Path>,
        options: &ClientOptions,
    ) -> Result<Client, ClientError> {
        check_options(options)?;
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Client::handshake(stream, options)
    }

    /// Runs the setup sequence on an already connected socket.
    pub fn from_stream(stream: UnixStream, options: &ClientOptions) -> Result<Client, ClientError> {
        check_options(options)?;
        Client::handshake(stream, options)
    }

    fn handshake(stream: UnixStream, options: &ClientOptions) -> Result<Client, ClientError> {
        // Setup relies on blocking reads with a timeout.
        stream
            .set_nonblocking(false)
            .map_err(|source| ClientError::Io {
                context: "making the socket blocking",
                source,
            })?;
        let deadline = Instant::now() + options.setup_timeout;
        let mut rx = Reassembly::default();
        let version = recv_setup_message(&stream, &mut rx, deadline)?;
        if version.value != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version.value).into());
        }
        if version.fd.is_some() {
            return Err(ProtocolError::UnexpectedFd {
                message: "version",
                value: version.value,
            }
            .into());
        }

        let id = recv_setup_message(&stream, &mut rx, deadline)?;
        if id.fd.is_some() {
            return Err(ProtocolError::UnexpectedFd {
                message: "id",
                value: id.value,
            }
            .into());
        }
        let id_value = id.value;
        let id = peer_id_from_wire(id_value).ok_or(ProtocolError::InvalidOwnId(id_value))?;

        let shm = recv_setup_message(&stream, &mut rx, deadline)?;
        if shm.value != SHM_MESSAGE {
            return Err(ProtocolError::ExpectedSharedMemory { value: shm.value }.into());
        }
        let shm = File::from(shm.fd.ok_or(ProtocolError::MissingFd {
            message: "shared-memory",
            value: SHM_MESSAGE,
        })?);
        let meta = shm.metadata().map_err(|source| ClientError::Io {
            context: "fstat on the shared memory",
            source,
        })?;
        if !meta.file_type().is_file() {
            return Err(ProtocolError::BadSharedMemory("not a regular file".into()).into());
        }
        if meta.len() == 0 {
            return Err(ProtocolError::BadSharedMemory("size 0".into()).into());
        }

        let mut client = Client {
            stream,
            id,
            vectors: options.vectors,
            shm,
            shm_size: meta.len(),
            own: Vec::with_capacity(options.vectors as usize),
            peers: BTreeMap::new(),
            incoming: None,
            rx,
            connected: true,
        };
        // Existing peers, then our own vectors, which end the setup.
        while client.own.len() < options.vectors as usize {
            let message = recv_setup_message(&client.stream, &mut client.rx, deadline)?;
            client.handle(message)?;
        }
        client
            .stream
            .set_read_timeout(None)
            .map_err(|source| ClientError::Io {
                context: "clearing the socket timeout",
                source,
            })?;
        Ok(client)
    }

    /// Applies one message to our view of the peers.
    fn handle(&mut self, message: Message) -> Result<Option<ClientEvent>, ProtocolError> {
        if message.value == SHM_MESSAGE {
            return Err(ProtocolError::DuplicateSharedMemory);
        }
        let peer = peer_id_from_wire(message.value).ok_or(ProtocolError::InvalidValue {
            value: message.value,
        })?;
        match message.fd {
            Some(fd) => self.add_vector(peer, fd),
            None => self.remove_peer(peer),
        }
    }

    fn own_incomplete(&self) -> bool {
        !self.own.is_empty() && self.own.len() < self.vectors as usize
    }

    /// Fails if a peer's (or our own) run of vector messages was cut short.
    fn check_nothing_incomplete(&self, next_peer: Option<PeerId>) -> Result<(), ProtocolError> {
        if let Some((p, v)) = &self.incoming {
            if Some(*p) != next_peer {
                // reason: a run in `incoming` is shorter than `self.vectors`
                // (a u32): add_vector moves it out when it reaches that length.
                #[allow(clippy::cast_possible_truncation)]
                let got = v.len() as u32;
                return Err(ProtocolError::IncompleteVectors {
                    peer: *p,
                    got,
                    expected: self.vectors,
                });
            }
        }
        if self.own_incomplete() && next_peer != Some(self.id) {
            // reason: own_incomplete() means own.len() < self.vectors (a u32).
            #[allow(clippy::cast_possible_truncation)]
            let got = self.own.len() as u32;
            return Err(ProtocolError::IncompleteVectors {
                peer: self.id,
                got,
                expected: self.vectors,
            });
        }
        Ok(())
    }

    fn add_vector(
        &mut self,
        peer: PeerId,
        fd: OwnedFd,
    ) -> Result<Option<ClientEvent>, ProtocolError> {
        check_eventfd(&fd).map_err(|target| ProtocolError::NotAnEventFd { peer, target })?;
        let fd = into_eventfd(fd);
        self.check_nothing_incomplete(Some(peer))?;
        let too_many = ProtocolError::TooManyVectors {
            peer,
            vectors: self.vectors,
        };
        if peer == self.id {
            if self.own.len() >= self.vectors as usize {
                return Err(too_many);
            }
            self.own.push(fd);
            return Ok(None);
        }
        if self.peers.contains_key(&peer) {
            return Err(too_many);
        }
        let mut vectors = match self.incoming.take() {
            Some((_, v)) => v, // same peer: checked above
            None => Vec::with_capacity(self.vectors as usize),
        };
        vectors.push(fd);
        if vectors.len() < self.vectors as usize {
            self.incoming = Some((peer, vectors));
            return Ok(None);
        }
        self.peers.insert(peer, vectors);
        Ok(Some(ClientEvent::PeerJoined(peer)))
    }

    fn remove_peer(&mut self, peer: PeerId) -> Result<Option<ClientEvent>, ProtocolError> {
        self.check_nothing_incomplete(None)?;
        if peer == self.id {
            return Err(ProtocolError::OwnIdLeft(peer));
        }
        let vectors = self
            .peers
            .remove(&peer)
            .ok_or(ProtocolError::UnknownPeerLeft(peer))?;
        Ok(Some(ClientEvent::PeerLeft { id: peer, vectors }))
    }

    fn disconnect(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.connected = false;
        self.incoming = None;
        self.rx = Reassembly::default();
    }

    /// Handles what the server has sent so far, without blocking, and
    /// returns the first resulting event, if any. Call it when the socket
    /// ([`AsRawFd`]) is readable, until it returns `Ok(None)`.
    ///
    /// After an error or [`ClientEvent::ServerGone`] the connection is
    /// closed and this returns `Ok(None)`; known peers stay as they are.
    pub fn try_next_event(&mut self) -> Result<Option<ClientEvent>, ClientError> {
        while self.connected {
            let outcome = match self.rx.recv(self.stream.as_fd(), libc::MSG_DONTWAIT) {
                Ok(Received::WouldBlock) => return Ok(None),
                Ok(Received::Eof) => {
                    self.disconnect();
                    return Ok(Some(ClientEvent::ServerGone));
                }
                Ok(Received::Message(m)) => self.handle(m).map_err(ClientError::from),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => {}
                Err(e) => {
                    self.disconnect();
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Waits up to `timeout` (`None`: without limit) for the next event.
    /// `Ok(None)` means the time ran out or the connection is closed.
    pub fn next_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<ClientEvent>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(event) = self.try_next_event()? {
                return Ok(Some(event));
            }
            if !self.connected {
                return Ok(None);
            }
            let wait_ms = match deadline {
                None => -1,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Round up so that we never spin on a sub-millisecond rest.
                    i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
                }
            };
            let mut pfd = libc::pollfd {
                fd: self.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is one valid pollfd that outlives the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(ClientError::Io {
                        context: "poll",
                        source: e,
                    });
                }
            }
        }
    }

    /// Our peer id (the value of IVPosition).
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// Vectors per peer.
    pub fn vectors(&self) -> u32 {
        self.vectors
    }

    /// The shared memory, open read-write; map it with `MAP_SHARED`.
    pub fn shm(&self) -> &File {
        &self.shm
    }

    /// Size of the shared memory, from `fstat`.
    pub fn shm_size(&self) -> u64 {
        self.shm_size
    }

    /// Our own eventfds, one per vector: peers signal them to interrupt us.
    pub fn own_vectors(&self) -> &[EventFd] {
        &self.own
    }

    /// The eventfds that interrupt `peer`, one per vector.
    pub fn peer_vectors(&self, peer: PeerId) -> Option<&[EventFd]> {
        self.peers.get(&peer).map(Vec::as_slice)
    }

    /// Ids of all other peers we know, ascending.
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// Whether the connection to the server is still open.
    pub fn is_connected(&self) -> bool {
        self.connected
    }
}

/// Blocking receive of one setup message, within the setup deadline.
fn recv_setup_message(
    stream: &UnixStream,
    rx: &mut Reassembly,
    deadline: Instant,
) -> Result<Message, ClientError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ClientError::Timeout);
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|source| ClientError::Io {
            context: "setting the socket timeout",
            source,
        })?;
    match rx.recv(stream.as_fd(), 0)? {
        Received::Message(m) => Ok(m),
        Received::WouldBlock => Err(ClientError::Timeout),
        Received::Eof => Err(ClientError::ServerClosed),
    }
}

fn check_options(options: &ClientOptions) -> Result<(), ClientError> {
    if options.vectors == 0 || options.vectors > MAX_VECTORS {
        return Err(ClientError::InvalidConfig(format!(
            "{} vectors; must be 1..={MAX_VECTORS}",
            options.vectors
        )));
    }
    if options.setup_timeout.is_zero() {
        return Err(ClientError::InvalidConfig("setup timeout is zero".into()));
    }
    Ok(())
}

impl AsFd for Client {
    /// The server connection; readable when [`Client::try_next_event`] has
    /// something to do.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}
