//! The byte streams the transfer tests send and check: `ivc_kit::stream`,
//! the stream every ivc program uses (byte `i` of stream `seed` is a fixed
//! function of (seed, i), so the receiver verifies every byte at its
//! position), and its FNV-1a checksum that both sides print for the harness.

pub use ivc_kit::stream::{byte, fill, first_mismatch, Fnv64 as Fnv};
