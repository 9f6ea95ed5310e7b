//! ivc-channel
