//! ivc-tools
