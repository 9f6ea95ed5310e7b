//! ivc-floors: the floors the ivc channel figures are compared with,
//! measured on the host in the same run.
//!
//! Each floor is the cheapest way the hardware (or the kernel) does the one
//! thing a channel layer does:
//!
//! | floor | module | what a channel layer does the same way |
//! | --- | --- | --- |
//! | cache-line ping-pong between two processes on two cores | [`cacheline`] | `shm-poll`: a ring index written on one core, polled on the other |
//! | the ivc ring's round trip between two processes (not a floor: a reference) | [`ring`] | `shm-poll` without the VMs: what the protocol itself costs |
//! | eventfd ping-pong between two processes | [`eventfd`] | `shm-irq`: doorbell -> ioeventfd -> irqfd, one eventfd hop each way |
//! | single-core memcpy bandwidth | [`memcpy`] | shared-memory throughput: every byte is copied in and out of the ring |
//! | TCP over loopback, ping-pong and throughput | [`tcp`] | what a user would pick instead |
//! | raw `KVM_EXIT_IO` round trip | [`kvm_exit`] | `pio`: every port access is one VM exit |
//! | null system call | [`syscall`] | every `read`/`write` on `/dev/ivc0` (compare with `ivc-bench calib` in a guest) |
//!
//! Processes rather than threads, because the guests at the ends of a
//! channel are separate processes: nothing (page tables, allocator, futexes)
//! is shared but the memory or the fds under test. Each pair is pinned to two
//! different cores where the machine has two.

pub mod cacheline;
pub mod eventfd;
mod fork;
pub mod interleaved;
pub mod kvm_exit;
pub mod memcpy;
pub mod model;
pub mod ring;
mod shared;
pub mod syscall;
pub mod tcp;
pub mod tsc;

pub use fork::{cpu_pair, CpuPair};
pub use model::{Latency, Throughput};
