//! Shared pieces of the guest tools: the deterministic test stream, the
//! benchmark pattern, statistics, the JSON result lines and the size parser. The
//! binaries live in `src/bin/`.

pub mod clock;
pub mod pattern;
pub mod result_line;
pub mod size;
pub mod stats;
pub mod stream;
