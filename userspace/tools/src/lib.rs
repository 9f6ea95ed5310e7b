//! Shared pieces of the guest tools: the benchmark pattern, the clock and
//! JSON lines. The size parser, the checked stream and the statistics are
//! `ivc-kit`'s, shared with the host and the test guest. The binaries live in
//! `src/bin/`.

pub mod clock;
pub mod json;
pub mod pattern;
