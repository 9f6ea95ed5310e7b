//! `ivc-abi`: the one definition of the ivc shared-memory channel.
//!
//! Two sides (guests, host tools, tests) map the same memory (ivshmem BAR2)
//! and exchange bytes through one ring per direction. This crate holds the
//! layout (header, peer table, ring control blocks with notification
//! suppression flags), the attach/handshake/close protocol and a hardened
//! [`Endpoint`] that treats the shared memory as untrusted. The protocol is
//! written down in `docs/protocol.md`.
//!
//! # Use from the kernel module
//!
//! The kernel build cannot use cargo crates, so all channel code lives in
//! `src/chan/` as plain `no_std`, dependency-free, allocation-free files,
//! and the module includes that directory with **one line** in its crate
//! root (path relative to the including file):
//!
//! ```text
//! #[allow(dead_code, unreachable_pub, unused_imports)]
//! #[path = "../abi/src/chan/mod.rs"]
//! mod ivc_abi;
//! ```
//!
//! which compiles exactly these files, under these module names:
//!
//! | file | module | contents |
//! | --- | --- | --- |
//! | `src/chan/mod.rs` | `ivc_abi` | declarations and re-exports |
//! | `src/chan/shm.rs` | `ivc_abi::shm` | [`SharedMemory`] trait, [`OutOfBounds`] |
//! | `src/chan/error.rs` | `ivc_abi::error` | [`ChannelError`] |
//! | `src/chan/layout.rs` | `ivc_abi::layout` | offsets, [`Layout`], [`format`] |
//! | `src/chan/endpoint/` | `ivc_abi::endpoint` | [`Endpoint`] (`mod.rs`, then one file per concept) |
//! | `src/chan/atomic_mem.rs` | `ivc_abi::atomic_mem` | [`AtomicMem`] (optional for the kernel) |
//! | `src/chan/pio.rs` | `ivc_abi::pio` | the `ivc-pio` device's register map |
//! | `src/chan/ivshmem.rs` | `ivc_abi::ivshmem` | the `ivc-shm` (ivshmem) device's register map |
//! | `src/chan/pci_ids.rs` | `ivc_abi::pci_ids` | the PCI ids of both devices |
//!
//! The module names are fixed (files refer to each other as `super::shm`,
//! `super::error`, `super::layout`). Do not include the files one by one
//! inside an inline `mod x { ... }` block: `#[path]` inside an inline module
//! resolves relative to a directory named after the module. Kbuild's rustc
//! dep-info tracks the included files, so edits trigger a rebuild.
//!
//! The kernel implements [`SharedMemory`] over its BAR2 mapping (mapped
//! write-back; see the trait docs) and maps [`ChannelError`] to errnos as
//! documented on each variant. The files use no `unsafe` except
//! [`AtomicMem`]'s pointer-to-atomic conversion and have no reachable
//! panic: no indexing or slicing that can fail, only wrapping/checked
//! arithmetic, no `unwrap` (enforced by `deny` lints in `chan/mod.rs`; the
//! few length-checked slice splits are provably in range). The
//! `allow` list on the include line covers API items a module does not use
//! (the kernel warns on `unreachable_pub`). `kcheck/check.sh` compiles the
//! directory exactly this way, with the kernel's rustc and clippy lint sets
//! and overflow checks on, and fails if any panic path is left in the
//! object code.
//!
//! # Quick start (host)
//!
//! ```
//! use core::sync::atomic::AtomicU32;
//! use ivc_abi::{AtomicMem, Endpoint, PeerState};
//!
//! let words: Vec<AtomicU32> = (0..8192 / 4).map(|_| AtomicU32::new(0)).collect();
//! let mem = AtomicMem::from_words(&words);
//! let mut a = Endpoint::attach(mem, 0)?; // formats the region: no magic yet
//! let mut b = Endpoint::attach(mem, 1)?;
//! while a.peer_state()? != PeerState::Connected || b.peer_state()? != PeerState::Connected {}
//! assert_eq!(a.write(b"hello")?, 5);
//! let mut buf = [0u8; 16];
//! assert_eq!(b.read(&mut buf)?, 5);
//! assert_eq!(&buf[..5], b"hello");
//! # Ok::<(), ivc_abi::ChannelError>(())
//! ```

#![no_std]

#[cfg(test)]
extern crate std;

mod chan;

pub use chan::*;
