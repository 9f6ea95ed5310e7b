//! ivc-guest-harness
