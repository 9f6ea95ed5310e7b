//! Shared pieces of the guest tools: the deterministic test stream and the
//! size parser. The binaries live in `src/bin/`.

pub mod size;
pub mod stream;
