//! Interrupt plumbing: GSI allocation and the KVM GSI routing table.

pub mod routing;

pub use routing::{InterruptRouter, KvmInterruptRouter};
