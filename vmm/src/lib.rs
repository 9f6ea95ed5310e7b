//! ivc-vmm: a small KVM VMM that boots Linux (PVH) and bare-metal test
//! guests, with a PCI bus. The `ivc-vmm` binary is a thin CLI over this
//! library; docs/vmm.md describes the machine it builds.

// A silent truncation of a guest- or peer-supplied value is a bug class these lints catch.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

pub mod boot;
pub mod cli;
pub mod cpu;
pub mod devices;
pub mod exit;
pub mod io_bus;
pub mod irq;
pub mod ivc_spec;
pub mod layout;
pub mod machine;
pub mod memory;
pub mod pci;
pub mod signals;
pub mod vcpu;
pub mod vm;
