//! The rendezvous server: listens on a UNIX socket, gives every client an
//! id, the shared memory and its eventfds, and tells everybody who comes and
//! who goes — the ivshmem-server protocol.
//!
//! One thread, one epoll loop, no blocking calls: a client that stops reading
//! gets its messages queued (bounded), a client that sends anything or hangs
//! up is removed and announced as gone, and every descriptor belonging to a
//! removed client is closed when it is removed (or, for eventfds still
//! referenced by queued announcements, when those are sent or dropped).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::peer::{new_vector_eventfd, peer_pid, Flush, Peer, ReadOutcome, SharedFd};
use crate::peer_ids::{IdAllocator, IdPolicy};
use crate::protocol::{
    join_announcement, leave_announcement, setup_sequence, FdSource, PeerId, PlannedMessage,
    MAX_VECTORS,
};
use crate::shm::{SharedMemory, ShmBacking, ShmError};

/// epoll tokens; client connections get tokens from FIRST_PEER_TOKEN up and
/// never reuse one, so an event for a connection removed earlier in the same
/// batch cannot be mistaken for a newer connection.
const LISTENER: u64 = 0;
const SHUTDOWN: u64 = 1;
const FIRST_PEER_TOKEN: u64 = 2;

/// Connections accepted per wake-up before other work gets a turn.
const ACCEPT_BATCH: usize = 64;

/// How long to stop accepting when out of descriptors or memory (a level-
/// triggered listener would otherwise spin at 100 % CPU).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Longest socket path: `sun_path` holds 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 107;

/// What a client socket is watched for when nothing is queued for it.
fn read_events() -> EventSet {
    EventSet::IN | EventSet::READ_HANG_UP
}

/// Everything needed to start a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the UNIX socket is created.
    pub socket_path: PathBuf,
    /// Size of the shared memory in bytes (a power of two, >= 4096).
    pub shm_size: u64,
    /// Interrupt vectors per peer (1..=64); must equal every client's
    /// (QEMU: `ivshmem-doorbell,vectors=N`).
    pub vectors: u32,
    /// Where the shared memory lives.
    pub shm_backing: ShmBacking,
    /// How ids are handed out.
    pub id_policy: IdPolicy,
}

impl ServerConfig {
    /// A memfd-backed server with QEMU's id policy.
    pub fn new(socket_path: impl Into<PathBuf>, shm_size: u64, vectors: u32) -> ServerConfig {
        ServerConfig {
            socket_path: socket_path.into(),
            shm_size,
            vectors,
            shm_backing: ShmBacking::Memfd,
            id_policy: IdPolicy::NextFree,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Another server is listening on the socket path.
    #[error(
        "{} is in use by a running server (stop it, or pick another path)",
        .0.display()
    )]
    SocketInUse(PathBuf),
    /// The socket path exists and is not a socket (we never delete it).
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    /// Creating the socket failed.
    #[error("cannot listen on {}: {source}", .path.display())]
    Bind { path: PathBuf, source: io::Error },
    /// Creating the shared memory failed.
    #[error("shared memory: {0}")]
    Shm(#[source] ShmError),
    /// A system call the event loop depends on failed.
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: io::Error,
    },
    /// The server thread panicked.
    #[error("the server thread panicked")]
    Panicked,
}

fn io_error(context: &'static str) -> impl FnOnce(io::Error) -> ServerError {
    move |source| ServerError::Io { context, source }
}

/// Stops a running server from any thread (or a signal handler, through
/// [`ShutdownHandle::as_raw_fd`]).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<EventFd>);

impl ShutdownHandle {
    /// Asks the server loop to return. Idempotent.
    pub fn shutdown(&self) {
        // Can only fail if the counter would overflow, i.e. after 2^64-1
        // requests; the loop wakes up either way.
        let _ = self.0.write(1);
    }
}

impl AsRawFd for ShutdownHandle {
    /// The eventfd the loop watches; writing an 8-byte non-zero value to it
    /// stops the server. `write(2)` is async-signal-safe, so a signal handler
    /// may do that.
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

#[derive(Debug, Default)]
struct Counters {
    connected: AtomicUsize,
    joined: AtomicU64,
    left: AtomicU64,
    rejected: AtomicU64,
    accept_pauses: AtomicU64,
}

/// A snapshot of what the server has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Peers connected now.
    pub connected: usize,
    /// Peers that were given an id, in total.
    pub joined: u64,
    /// Peers removed, in total (hang-up, garbage, send failure).
    pub left: u64,
    /// Connections closed before they got an id (no ids or descriptors left).
    pub rejected: u64,
    /// Times accepting was paused for lack of descriptors or memory.
    pub accept_pauses: u64,
}

impl Counters {
    fn snapshot(&self) -> ServerStats {
        ServerStats {
            connected: self.connected.load(Ordering::SeqCst),
            joined: self.joined.load(Ordering::SeqCst),
            left: self.left.load(Ordering::SeqCst),
            rejected: self.rejected.load(Ordering::SeqCst),
            accept_pauses: self.accept_pauses.load(Ordering::SeqCst),
        }
    }
}

/// The socket file we created; removed on drop if it is still ours (someone
/// may have replaced it since, and their socket is not ours to delete).
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds and listens under a temporary name in the same directory, then
/// renames the socket into place, so that the moment `path` exists it accepts
/// connections (a plain bind+listen leaves a window in which the file exists
/// but connecting is refused, which breaks anyone who waits for the file).
/// Falls back to binding `path` directly if the temporary name cannot be
/// bound (e.g. it would exceed the 108-byte limit of socket paths).
fn bind_then_publish(path: &Path) -> io::Result<UnixListener> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temporary = path.with_file_name(format!(
        ".ivc-rdv.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    match UnixListener::bind(&temporary) {
        Ok(listener) => match std::fs::rename(&temporary, path) {
            Ok(()) => Ok(listener),
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                Err(e)
            }
        },
        Err(_) => UnixListener::bind(path),
    }
}

/// Creates the listening socket, replacing a stale socket file but never a
/// live one or something that is not a socket.
fn bind_socket(path: &Path) -> Result<(UnixListener, SocketFile), ServerError> {
    let bind_error = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    // Checked up front because bind_then_publish renames, which works for
    // any length, while clients could not connect to a longer path.
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(bind_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the path is longer than {MAX_SOCKET_PATH} bytes, the limit for UNIX sockets"),
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ServerError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => match UnixStream::connect(path) {
            // Probing connects like a client would; a live server sees a
            // peer that joins and leaves at once, which is harmless.
            Ok(_) => return Err(ServerError::SocketInUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                info!("removing stale socket {}", path.display());
                std::fs::remove_file(path).map_err(bind_error)?;
            }
            Err(e) => return Err(bind_error(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    let listener = bind_then_publish(path).map_err(bind_error)?;
    let meta = std::fs::symlink_metadata(path).map_err(bind_error)?;
    Ok((
        listener,
        SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        },
    ))
}

/// The server. Create it with [`Server::bind`], then [`Server::run`] it (or
/// [`Server::spawn`] it on a thread).
#[derive(Debug)]
pub struct Server {
    vectors: u32,
    shm_size: u64,
    shm_fd: SharedFd,
    epoll: Epoll,
    listener: UnixListener,
    shutdown: ShutdownHandle,
    /// Connected peers by epoll token; token order is join order, which is
    /// the order existing peers are announced to a newcomer.
    peers: BTreeMap<u64, Peer>,
    tokens_by_id: HashMap<PeerId, u64>,
    ids: IdAllocator,
    next_token: u64,
    accept_paused_until: Option<Instant>,
    counters: Arc<Counters>,
    // Last, so the socket file disappears after everything else is closed.
    socket_file: SocketFile,
}

impl Server {
    /// Creates the shared memory and starts listening (clients can connect
    /// from now on; they are served once [`Server::run`] runs).
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        if config.vectors == 0 || config.vectors > MAX_VECTORS {
            return Err(ServerError::InvalidConfig(format!(
                "{} vectors; must be 1..={MAX_VECTORS}",
                config.vectors
            )));
        }
        let shm =
            SharedMemory::create(config.shm_size, &config.shm_backing).map_err(ServerError::Shm)?;
        let shm_description = shm.description().to_string();
        let (listener, socket_file) = bind_socket(&config.socket_path)?;
        listener
            .set_nonblocking(true)
            .map_err(io_error("making the listener non-blocking"))?;
        let epoll = Epoll::new().map_err(io_error("epoll_create"))?;
        let shutdown =
            EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(io_error("eventfd"))?;
        epoll
            .ctl(
                ControlOperation::Add,
                listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN, LISTENER),
            )
            .map_err(io_error("epoll_ctl (listener)"))?;
        epoll
            .ctl(
                ControlOperation::Add,
                shutdown.as_raw_fd(),
                EpollEvent::new(EventSet::IN, SHUTDOWN),
            )
            .map_err(io_error("epoll_ctl (shutdown)"))?;
        info!(
            "listening on {} (shared memory: {} bytes in a {shm_description}; vectors per peer: {})",
            config.socket_path.display(),
            config.shm_size,
            config.vectors
        );
        Ok(Server {
            vectors: config.vectors,
            shm_size: config.shm_size,
            shm_fd: Arc::new(shm.into_fd()),
            epoll,
            listener,
            shutdown: ShutdownHandle(Arc::new(shutdown)),
            peers: BTreeMap::new(),
            tokens_by_id: HashMap::new(),
            ids: IdAllocator::new(config.id_policy),
            next_token: FIRST_PEER_TOKEN,
            accept_paused_until: None,
            counters: Arc::new(Counters::default()),
            socket_file,
        })
    }

    /// The socket path clients connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_file.path
    }

    /// Size of the shared memory.
    pub fn shm_size(&self) -> u64 {
        self.shm_size
    }

    /// Vectors per peer.
    pub fn vectors(&self) -> u32 {
        self.vectors
    }

    /// A handle that stops [`Server::run`] from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Makes [`Server::run`] stop as soon as `fd` is readable, the way the
    /// shutdown eventfd stops it (the program's SIGINT/SIGTERM signalfd).
    /// `fd` must stay open while the server runs.
    pub fn stop_when_readable(&self, fd: &impl AsRawFd) -> Result<(), ServerError> {
        self.epoll
            .ctl(
                ControlOperation::Add,
                fd.as_raw_fd(),
                EpollEvent::new(EventSet::IN, SHUTDOWN),
            )
            .map_err(io_error("epoll_ctl (stop fd)"))
    }

    /// What the server has done so far.
    pub fn stats(&self) -> ServerStats {
        self.counters.snapshot()
    }

    /// Runs the server on a new thread.
    pub fn spawn(self) -> io::Result<ServerThread> {
        let shutdown = self.shutdown_handle();
        let counters = Arc::clone(&self.counters);
        let socket_path = self.socket_path().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("ivc-rendezvous".into())
            .spawn(move || self.run())?;
        Ok(ServerThread {
            shutdown,
            thread: Some(thread),
            counters,
            socket_path,
        })
    }

    /// Serves clients until shut down. On return every client connection is
    /// closed and the socket file removed. Clients are *not* told that their
    /// peers left: the peers are still there and, as the spec allows, can go
    /// on using the eventfds they have; only new joins become impossible.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = vec![EpollEvent::default(); 64];
        loop {
            self.resume_accepting_if_due()?;
            let timeout = match self.accept_paused_until {
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1)
                }
                None => -1,
            };
            let count = match self.epoll.wait(timeout, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ServerError::Io {
                        context: "epoll_wait",
                        source: e,
                    })
                }
            };
            for event in &events[..count] {
                match event.data() {
                    SHUTDOWN => {
                        info!(
                            "shutting down; closing {} connection(s) and {}",
                            self.peers.len(),
                            self.socket_path().display()
                        );
                        return Ok(());
                    }
                    LISTENER => self.accept_ready()?,
                    token => self.connection_ready(token, event.event_set()),
                }
            }
        }
    }

    fn accept_ready(&mut self) -> Result<(), ServerError> {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    warn!("cannot accept connections for now: {e}");
                    self.pause_accepting()?;
                    break;
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => debug!("accept: {e}"),
            }
        }
        Ok(())
    }

    fn pause_accepting(&mut self) -> Result<(), ServerError> {
        self.epoll
            .ctl(
                ControlOperation::Modify,
                self.listener.as_raw_fd(),
                EpollEvent::new(EventSet::empty(), LISTENER),
            )
            .map_err(io_error("epoll_ctl (pause listener)"))?;
        self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
        self.counters.accept_pauses.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn resume_accepting_if_due(&mut self) -> Result<(), ServerError> {
        match self.accept_paused_until {
            Some(until) if Instant::now() >= until => {
                self.epoll
                    .ctl(
                        ControlOperation::Modify,
                        self.listener.as_raw_fd(),
                        EpollEvent::new(EventSet::IN, LISTENER),
                    )
                    .map_err(io_error("epoll_ctl (resume listener)"))?;
                self.accept_paused_until = None;
            }
            _ => {}
        }
        Ok(())
    }

    fn reject(&self, why: fmt::Arguments<'_>) {
        warn!("rejecting a client: {why}");
        self.counters.rejected.fetch_add(1, Ordering::SeqCst);
    }

    /// Gives a new connection an id and eventfds, sends it the setup
    /// sequence and announces it to everyone else.
    fn admit(&mut self, stream: UnixStream) {
        if let Err(e) = stream.set_nonblocking(true) {
            return self.reject(format_args!("cannot make its socket non-blocking: {e}"));
        }
        let tokens_by_id = &self.tokens_by_id;
        let Some(id) = self.ids.allocate(|id| tokens_by_id.contains_key(&id)) else {
            return self.reject(format_args!("all 65536 peer ids are in use"));
        };
        let vectors: io::Result<Vec<SharedFd>> = (0..self.vectors)
            .map(|_| new_vector_eventfd().map(Arc::new))
            .collect();
        let vectors = match vectors {
            Ok(v) => v,
            Err(e) => return self.reject(format_args!("cannot create its eventfds: {e}")),
        };
        let token = self.next_token;
        if let Err(e) = self.epoll.ctl(
            ControlOperation::Add,
            stream.as_raw_fd(),
            EpollEvent::new(read_events(), token),
        ) {
            return self.reject(format_args!("epoll_ctl: {e}"));
        }
        self.next_token += 1;

        let pid = peer_pid(&stream).map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let existing: Vec<PeerId> = self.peers.values().map(|p| p.id).collect();
        self.peers.insert(token, Peer::new(id, stream, vectors));
        self.tokens_by_id.insert(id, token);
        self.counters.joined.fetch_add(1, Ordering::SeqCst);
        self.counters
            .connected
            .store(self.peers.len(), Ordering::SeqCst);
        info!(
            "peer {id} joined (pid {pid}); {} connected",
            self.peers.len()
        );

        let mut doomed = Vec::new();
        // The newcomer: version, id, shm, every existing peer, itself. And
        // everyone else: the newcomer's id once per vector, with its eventfds.
        let setup = self.resolve_all(setup_sequence(id, &existing, self.vectors));
        let join = self.resolve_all(join_announcement(id, self.vectors));
        let (Some(setup), Some(join)) = (setup, join) else {
            // Cannot happen: every peer in the tables has all its vectors.
            warn!("internal error: a descriptor to send to peer {id} is missing");
            return self.remove(vec![(token, "internal error".to_string())]);
        };
        for (&t, peer) in self.peers.iter_mut() {
            let messages = if t == token { &setup } else { &join };
            if messages
                .iter()
                .any(|(value, fd)| peer.queue(*value, fd.clone()).is_err())
            {
                doomed.push((t, "it does not read its messages".to_string()));
            }
        }
        let tokens: Vec<u64> = self.peers.keys().copied().collect();
        for t in tokens {
            if let Some(reason) = self.flush(t) {
                doomed.push((t, reason));
            }
        }
        self.remove(doomed);
    }

    /// Turns planned messages into values and the descriptors they carry;
    /// `None` if a descriptor is missing. A message must never go out
    /// without its descriptor: "id without fd" means "that peer left".
    fn resolve_all(
        &self,
        plan: impl IntoIterator<Item = PlannedMessage>,
    ) -> Option<Vec<(i64, Option<SharedFd>)>> {
        plan.into_iter()
            .map(|m| match m.fd {
                FdSource::None => Some((m.value, None)),
                FdSource::SharedMemory => Some((m.value, Some(Arc::clone(&self.shm_fd)))),
                FdSource::Vector { peer, vector } => {
                    let token = self.tokens_by_id.get(&peer)?;
                    let fd = self.peers.get(token)?.vectors.get(vector as usize)?;
                    Some((m.value, Some(Arc::clone(fd))))
                }
            })
            .collect()
    }

    /// Sends what is queued for a peer and adjusts whether we wait for its
    /// socket to become writable. Returns why the peer must go, if it must.
    fn flush(&mut self, token: u64) -> Option<String> {
        let peer = self.peers.get_mut(&token)?;
        let want_writable = match peer.flush() {
            Ok(Flush::Done) => false,
            Ok(Flush::Blocked) => true,
            Err(e) => return Some(format!("sending to it failed: {e}")),
        };
        if want_writable != peer.wants_writable {
            let events = if want_writable {
                read_events() | EventSet::OUT
            } else {
                read_events()
            };
            if let Err(e) = self.epoll.ctl(
                ControlOperation::Modify,
                peer.stream.as_raw_fd(),
                EpollEvent::new(events, token),
            ) {
                return Some(format!("epoll_ctl: {e}"));
            }
            peer.wants_writable = want_writable;
        }
        None
    }

    fn connection_ready(&mut self, token: u64, events: EventSet) {
        let Some(peer) = self.peers.get_mut(&token) else {
            return; // removed earlier in this batch
        };
        if events
            .intersects(EventSet::IN | EventSet::READ_HANG_UP | EventSet::HANG_UP | EventSet::ERROR)
        {
            let reason = match peer.read_incoming() {
                ReadOutcome::Nothing if events.intersects(EventSet::HANG_UP | EventSet::ERROR) => {
                    Some("connection error".to_string())
                }
                ReadOutcome::Nothing => None,
                ReadOutcome::HungUp => Some("disconnected".to_string()),
                ReadOutcome::Garbage(n) => Some(format!(
                    "it sent {n} bytes, but clients never send anything in this protocol"
                )),
                ReadOutcome::Error(e) => Some(format!("socket error: {e}")),
            };
            if let Some(reason) = reason {
                return self.remove(vec![(token, reason)]);
            }
        }
        if events.contains(EventSet::OUT) {
            if let Some(reason) = self.flush(token) {
                self.remove(vec![(token, reason)]);
            }
        }
    }

    /// Removes peers, announces each removal to the rest, and removes in
    /// turn whoever cannot take that announcement.
    fn remove(&mut self, doomed: Vec<(u64, String)>) {
        let mut work: VecDeque<(u64, String)> = doomed.into();
        while let Some((token, reason)) = work.pop_front() {
            let Some(peer) = self.peers.remove(&token) else {
                continue; // already removed
            };
            self.tokens_by_id.remove(&peer.id);
            // Closing the socket would deregister it too, but only if no
            // duplicate exists; be explicit.
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                peer.stream.as_raw_fd(),
                EpollEvent::default(),
            );
            let id = peer.id;
            // Closes the socket and our references to its eventfds.
            drop(peer);
            self.counters.left.fetch_add(1, Ordering::SeqCst);
            self.counters
                .connected
                .store(self.peers.len(), Ordering::SeqCst);
            info!("peer {id} left ({reason}); {} connected", self.peers.len());

            let leave = leave_announcement(id);
            let tokens: Vec<u64> = self.peers.keys().copied().collect();
            for t in tokens {
                let queued = match self.peers.get_mut(&t) {
                    Some(other) => other.queue(leave.value, None).is_ok(),
                    None => continue,
                };
                if !queued {
                    work.push_back((t, "it does not read its messages".to_string()));
                } else if let Some(reason) = self.flush(t) {
                    work.push_back((t, reason));
                }
            }
        }
    }
}

/// A server running on its own thread. Dropping it stops the server and
/// waits for the thread.
#[derive(Debug)]
pub struct ServerThread {
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
    counters: Arc<Counters>,
    socket_path: PathBuf,
}

impl ServerThread {
    /// The socket path clients connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// What the server has done so far.
    pub fn stats(&self) -> ServerStats {
        self.counters.snapshot()
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops the server and returns how its loop ended.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServerError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.shutdown.shutdown();
        thread.join().unwrap_or(Err(ServerError::Panicked))
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            warn!("rendezvous server ended with an error: {e}");
        }
    }
}
