//! Shared pieces of the guest tools: the benchmark pattern, the clock and
//! the JSON result lines. The size parser, the checked stream and the
//! statistics are `ivc-kit`'s, shared with the host and the test guest. The
//! binaries live in `src/bin/`.

pub mod clock;
pub mod pattern;
pub mod result_line;
