//! The small pieces every ivc program shares: how a size is written on a
//! command line, the deterministic byte stream the transfer tests send and
//! check, and the order statistics of timing samples.
//!
//! `no_std` without `alloc` and without dependencies, so the bare-metal test
//! guest (no allocator, no floating point) uses exactly the code the host
//! tools, the guest tools and the tests use. Nothing here is part of the
//! channel's ABI (that is `ivc-abi`); these are conventions between our own
//! programs.

#![no_std]

pub mod size;
pub mod stats;
pub mod stream;
