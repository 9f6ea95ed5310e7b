//! Shared pieces of the guest tools: the deterministic test stream, the
//! benchmark pattern, statistics, JSON lines and the size parser. The
//! binaries live in `src/bin/`.

pub mod clock;
pub mod json;
pub mod pattern;
pub mod size;
pub mod stats;
pub mod stream;
