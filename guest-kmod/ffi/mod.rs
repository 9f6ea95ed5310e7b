// SPDX-License-Identifier: GPL-2.0

//! The only place in ivc.ko with `unsafe` code.
//!
//! The Rust abstractions of Linux 7.3 lack a few things this driver needs; the
//! glue for them lives in this directory, one concept per file, each piece
//! behind a safe wrapper:
//!
//! - `misc_device`: [`MiscDevice`], a misc character device with our own
//!   file operations ([`FileOps`]), because `kernel::miscdevice` has no
//!   `poll` hook;
//! - `user_buf`: [`UserBuf`], the user buffer of a `read(2)`/`write(2)`,
//!   copied to and from kernel buffers or straight to and from a
//!   [`SharedMapping`] (the `uaccess` abstraction only copies into Rust
//!   slices, which shared memory must never become);
//! - `shared_mapping`: [`SharedMapping`], a cacheable
//!   (`memremap(MEMREMAP_WB)`) mapping of the shared-memory BAR (the
//!   `pci::Bar` abstraction maps uncached, which would make every ring access
//!   a bus transaction) and its implementation of the channel's memory-access
//!   trait;
//! - `io_region`: [`IoRegion`], `pci_iomap` of a BAR accessed with
//!   `ioread32`/`iowrite32` and the string forms, which works for I/O BARs
//!   (the ivc-pio data port, the doorbell extension) as well as MMIO
//!   registers;
//! - `dma`: [`DmaBuffer`], device-visible memory (`dma_alloc_coherent`) for
//!   ivc-pio's descriptor mode, whose slices are handed out only while the
//!   device cannot be touching it (the abstraction's accessors are `unsafe`
//!   for exactly that reason), and the 64-bit DMA mask;
//! - `irq`: [`IrqVectors`] and [`IrqHandlerRegistration`], MSI-X/INTx
//!   vectors and a handler whose state outlives nothing it points to (the
//!   abstraction ties handler and vectors by a borrow, which cannot be stored
//!   in one device structure);
//! - `pci_dev`: enabling I/O decoding ([`enable_device`]), claiming the BARs
//!   ([`request_regions`]) and a device id for a vendor the kernel has no
//!   constant for ([`pci_device_id`]);
//! - `work`: [`flush_delayed_work`], which the workqueue abstraction lacks;
//! - `vm_area`: [`MmapArea`], the area an `mmap(2)` of the device fills
//!   with the shared-memory BAR (`vm_iomap_memory`; `VmaNew` has no way to
//!   map memory without `struct page`s), and [`InodeMappings`], which
//!   removes those mappings when the device goes away.
//!
//! Everything else in the driver is safe code built on these wrappers, which
//! are re-exported here so the driver names them `ffi::X` whatever file holds
//! them.

mod dma;
mod io_region;
mod irq;
mod misc_device;
mod pci_dev;
mod shared_mapping;
mod user_buf;
mod vm_area;
mod work;

pub(crate) use dma::{set_dma_mask_64, DmaBuffer};
pub(crate) use io_region::IoRegion;
pub(crate) use irq::{IrqHandler, IrqHandlerRegistration, IrqVectors};
pub(crate) use misc_device::{FileOps, MiscDevice};
pub(crate) use pci_dev::{
    disable_device, enable_device, pci_device_id, release_regions, request_regions,
};
pub(crate) use shared_mapping::SharedMapping;
pub(crate) use user_buf::UserBuf;
pub(crate) use vm_area::{InodeMappings, MmapArea};
pub(crate) use work::flush_delayed_work;
