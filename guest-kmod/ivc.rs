// SPDX-License-Identifier: GPL-2.0

//! ivc: inter-VM communication channels.
//!
//! Binds the PCI devices that carry an ivc channel between virtual machines on
//! one host and gives each a character device `/dev/ivcN` with pipe-like
//! semantics (see docs/driver.md):
//!
//! - `ivc-shm`: QEMU's ivshmem (1af4:1110), shared memory in BAR2; polled
//!   (`ivshmem-plain`) or with doorbell interrupts through MSI-X
//!   (`ivshmem-doorbell`);
//! - `ivc-pio`: ivc's own port-I/O device (1234:1c1c), bytes relayed by the
//!   VMM.
//!
//! Layout of the crate: `pci_driver` binds devices, `pipe` implements the file
//! semantics over a `transport`, `shm_transport` runs the shared-memory
//! channel (`ivc_abi`, the same source as the host crate), `poller` serves
//! waiters where no interrupt does, `stats` exports counters to debugfs, and
//! `ffi` holds every line of `unsafe` code in this directory behind safe
//! wrappers. The one other `unsafe` the module compiles is the channel's
//! `AtomicMem` (`abi/src/chan/atomic_mem.rs`, shared with the
//! host crate): volatile atomic access to the shared mapping, checked there
//! by Miri and loom.

mod ffi;
mod ids;
mod names;
mod pci_driver;
mod pio_transport;
mod pipe;
mod poller;
mod shm_transport;
mod stats;
mod transport;

// The shared-memory channel: one definition, compiled here and into the host
// crate `ivc-abi` (abi).
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../abi/src/chan/mod.rs"]
mod ivc_abi;

kernel::module_pci_driver! {
    type: pci_driver::IvcDriver,
    name: "ivc",
    authors: ["ivc developers"],
    description: "ivc: inter-VM communication channels over ivshmem and ivc-pio",
    license: "GPL v2",
    params: {
        mode: u32 {
            default: 0,
            description: "ivc-shm waiting: 0 = auto (interrupts if the device has MSI-X), 1 = poll, 2 = irq",
        },
        poll_spin_us: u32 {
            default: 50,
            description: "shm-poll: microseconds a blocked reader/writer spins before sleeping",
        },
        irq_spin_us: u32 {
            default: 0,
            description: "shm-irq: microseconds a blocked reader/writer spins before it arms the doorbell and sleeps (0 = sleep at once)",
        },
        poll_max_ms: u32 {
            default: 8,
            description: "shm-poll: longest sleep between two looks at the ring (idle cost: 1000/poll_max_ms wakeups/s while open)",
        },
        pio_string_io: bool {
            default: false,
            description: "ivc-pio: move bytes with string I/O (rep insb/outsl, an exit per element or page) even when the device offers descriptor mode (one exit per read/write call)",
        },
        peer_timeout_ms: u32 {
            default: 5000,
            description: "declare a connected peer gone when its heartbeat stalls this long (0 = never)",
        },
    },
}
