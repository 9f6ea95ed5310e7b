//! ivc-rendezvous: the place where ivc VMMs (and QEMU `ivshmem-doorbell`
//! devices) meet.
//!
//! The [`Server`] owns the shared memory and speaks the ivshmem-server
//! protocol of QEMU (`docs/specs/ivshmem-spec.rst`; our summary is in
//! `docs/devices.md`, "Rendezvous protocol"): each client that connects gets
//! an id, the shared-memory fd and one eventfd per interrupt vector, and
//! learns of every other peer's eventfds as peers join and leave. The
//! [`Client`] is the other end, for our VMM.
//!
//! ```no_run
//! use ivc_rendezvous::{Client, ClientEvent, Server, ServerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind(ServerConfig::new("/tmp/ivc.sock", 1 << 20, 2))?.spawn()?;
//! let mut a = Client::connect("/tmp/ivc.sock", 2)?;
//! let b = Client::connect("/tmp/ivc.sock", 2)?;
//! if let Some(ClientEvent::PeerJoined(id)) = a.next_event(None)? {
//!     // Interrupt b on vector 1; b sees its own_vectors()[1] become readable.
//!     a.peer_vectors(id).unwrap()[1].write(1)?;
//! }
//! server.stop()?;
//! # Ok(()) }
//! ```

// A silent truncation of a guest- or peer-supplied value is a bug class these lints catch.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

pub mod cli;
pub mod client;
pub mod fd_passing;
pub mod logging;
mod peer;
pub mod peer_ids;
pub mod protocol;
pub mod server;
pub mod shm;
pub mod signals;

pub use cli::{run_server, ServerArgs};
pub use client::{Client, ClientError, ClientEvent, ClientOptions};
pub use peer_ids::IdPolicy;
pub use protocol::{PeerId, ProtocolError};
pub use server::{Server, ServerConfig, ServerError, ServerStats, ServerThread, ShutdownHandle};
pub use shm::{SharedMemory, ShmBacking};
