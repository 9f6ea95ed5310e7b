//! The shared-memory channel: layout, memory access trait and endpoint.
//!
//! This directory is the unit both builds compile. The `ivc-abi` crate
//! loads it as `mod chan;` from `lib.rs`; the kernel module loads it with
//! one line in its crate root:
//!
//! ```text
//! #[path = "../abi/src/chan/mod.rs"]
//! mod ivc_abi;
//! ```
//!
//! A module file loaded through `#[path]` resolves its own `mod x;` items
//! next to itself, so the siblings below come along unchanged. Every file
//! is `no_std`, allocation-free and depends only on `core` and the siblings
//! it names in its own header.

// Machine-checked "no panics on any input": no indexing/slicing that can
// panic, no arithmetic that can overflow, no unwrap/expect/panic.
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

pub mod atomic_mem;
pub mod endpoint;
pub mod error;
pub mod ivshmem;
pub mod layout;
pub mod liveness;
pub mod pci_ids;
pub mod pio;
pub mod shm;

// The re-exports are the crate's API; an embedder that includes this
// directory with `#[path]` may use only some of them.
#[allow(unused_imports)]
pub use atomic_mem::AtomicMem;
#[allow(unused_imports)]
pub use endpoint::{AttachOptions, Endpoint, EndpointStats, PeerState, Readiness};
#[allow(unused_imports)]
pub use error::{ChannelError, CopyError};
#[allow(unused_imports)]
pub use layout::{format, format_if_needed, mark_absent, FormatOptions, Layout, RingGeometry};
#[allow(unused_imports)]
pub use liveness::Liveness;
#[allow(unused_imports)]
pub use shm::{OutOfBounds, SharedMemory};
