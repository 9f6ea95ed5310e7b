//! `ivc-shm`: the shared-memory device, register-compatible with QEMU's
//! ivshmem (1af4:1110 rev 1, class 0x0500). The register map, the BAR
//! indices and the PCI ids are the ABI's (`ivc_abi::ivshmem`,
//! `ivc_abi::pci_ids`).
//!
//! * BAR0, 256 bytes MMIO: IntrMask, IntrStatus, IVPosition, Doorbell
//!   ([`registers`]).
//! * BAR1, 4 KiB MMIO (`shm-irq` only): MSI-X table at 0, PBA at 0x800.
//! * BAR2, 64-bit prefetchable: the shared memory ([`shm_region`]).
//! * BAR4, 16 bytes of I/O ports (`shm-irq` only, an extension): a second
//!   Doorbell at offset 0 (`ivc_abi::ivshmem::IO_REG_DOORBELL`).
//!
//! `shm-poll` looks like ivshmem-plain (no BAR1, no interrupts);
//! `shm-irq` like ivshmem-doorbell: Doorbell writes are KVM ioeventfds
//! signalling the peer's eventfds ([`doorbell`]), and our own vectors'
//! eventfds (from the server) are the irqfds of our MSI-X vectors, so a
//! peer's doorbell interrupts this guest without either VMM running.

pub mod doorbell;
pub mod registers;
pub mod shm_region;

use std::sync::{Arc, Mutex};

use log::debug;

use ivc_abi::ivshmem::{
    Doorbell, BAR0_SIZE, BAR_IO_DOORBELL, BAR_MSIX, BAR_REGISTERS, BAR_SHM, IO_BAR_SIZE,
};
use ivc_abi::pci_ids::{
    IVSHMEM_CLASS_CODE, IVSHMEM_DEVICE_ID, IVSHMEM_REVISION, IVSHMEM_SUBSYSTEM_ID,
    IVSHMEM_SUBSYSTEM_VENDOR_ID, IVSHMEM_VENDOR_ID,
};

use self::doorbell::{DoorbellBar, Doorbells};
use self::registers::{io_doorbell_write, Registers};
use self::shm_region::ShmRegion;
use crate::devices::ratelimit::RateLimit;
use crate::pci::msix::Msix;
use crate::pci::{BarKind, ConfigSpace, PciDevice, PciIds};
use crate::vm::VmResources;
use crate::warn_limited;

/// The config-space ids of an `ivc-shm` device (ivshmem's, from the ABI).
pub const PCI_IDS: PciIds = PciIds {
    vendor: IVSHMEM_VENDOR_ID,
    device: IVSHMEM_DEVICE_ID,
    revision: IVSHMEM_REVISION,
    class: IVSHMEM_CLASS_CODE,
    subsystem_vendor: IVSHMEM_SUBSYSTEM_VENDOR_ID,
    subsystem: IVSHMEM_SUBSYSTEM_ID,
};

pub const MSIX_BAR_SIZE: u64 = 0x1000;
pub const MSIX_PBA_OFFSET: u64 = 0x800;

/// The doorbell table, shared with the peer watcher thread.
pub type SharedDoorbells = Arc<Mutex<Doorbells<VmResources>>>;

pub struct IvcShm {
    config: ConfigSpace,
    regs: Registers,
    /// `shm-irq`: MSI-X and the doorbell table.
    msix: Option<Msix>,
    doorbells: Option<SharedDoorbells>,
    region: ShmRegion,
    bad_access: RateLimit,
}

impl IvcShm {
    /// `iv_position`: our peer id (0 without a server). `irq`: the MSI-X
    /// vector count and doorbell table for `shm-irq`.
    pub fn new(
        region: ShmRegion,
        iv_position: u32,
        irq: Option<(Msix, SharedDoorbells)>,
    ) -> Result<IvcShm, String> {
        let mut config = ConfigSpace::new(PCI_IDS);
        let e = |e: crate::pci::config_space::ConfigError| e.to_string();
        config
            .add_bar(BAR_REGISTERS, BarKind::Mmio32, u64::from(BAR0_SIZE))
            .map_err(e)?;
        let (msix, doorbells) = match irq {
            Some((mut msix, doorbells)) => {
                config
                    .add_bar(BAR_MSIX, BarKind::Mmio32, MSIX_BAR_SIZE)
                    .map_err(e)?;
                if msix.table_size() > MSIX_PBA_OFFSET {
                    return Err("too many MSI-X vectors for BAR1".into());
                }
                // reason: constants, BAR index 1 and offset 0x800.
                #[allow(clippy::cast_possible_truncation)]
                let (msix_bar, pba_offset) = (BAR_MSIX as u8, MSIX_PBA_OFFSET as u32);
                msix.add_capability(&mut config, msix_bar, 0, msix_bar, pba_offset)
                    .map_err(e)?;
                (Some(msix), Some(doorbells))
            }
            None => (None, None),
        };
        config
            .add_bar(
                BAR_SHM,
                BarKind::Mmio64 { prefetchable: true },
                region.size(),
            )
            .map_err(e)?;
        if doorbells.is_some() {
            config
                .add_bar(BAR_IO_DOORBELL, BarKind::Io, u64::from(IO_BAR_SIZE))
                .map_err(e)?;
        }
        Ok(IvcShm {
            config,
            regs: Registers::new(iv_position),
            msix,
            doorbells,
            region,
            bad_access: RateLimit::new(),
        })
    }

    /// A Doorbell write that no ioeventfd matched.
    fn ring(&mut self, ring: Doorbell) {
        let r = match &self.doorbells {
            Some(d) => d.lock().unwrap_or_else(|e| e.into_inner()).ring(ring),
            None => {
                warn_limited!(
                    self.bad_access,
                    "ivc-shm: doorbell {:#x} ignored: shm-poll has no doorbells",
                    ring.value()
                );
                return;
            }
        };
        match r {
            Ok(()) => debug!("ivc-shm: doorbell {:#x} delivered by the VMM", ring.value()),
            Err(e) => warn_limited!(
                self.bad_access,
                "ivc-shm: doorbell {:#x} (peer {}, vector {}) ignored: {e}",
                ring.value(),
                ring.peer,
                ring.vector
            ),
        }
    }

    /// Guest accesses the device ignored so far (bad offsets, sizes,
    /// doorbells nobody answers).
    pub fn bad_accesses(&self) -> u64 {
        self.bad_access.total()
    }
}

impl PciDevice for IvcShm {
    fn name(&self) -> &str {
        "ivc-shm"
    }

    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn config_written(&mut self, _offset: usize, _len: usize) {
        if let Some(m) = &mut self.msix {
            m.config_written(&self.config);
        }
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match (bar, &self.msix) {
            (BAR_REGISTERS, _) => {
                if let Err(e) = self.regs.read(offset, data) {
                    warn_limited!(self.bad_access, "ivc-shm: BAR0 read ignored: {e}");
                }
            }
            (BAR_MSIX, Some(m)) if offset < MSIX_PBA_OFFSET => m.read_table(offset, data),
            (BAR_MSIX, Some(m)) => m.read_pba(offset - MSIX_PBA_OFFSET, data),
            _ => {
                // BAR2 reaches us only when its memory slot could not be
                // set up (logged then).
                data.fill(0xff);
                warn_limited!(
                    self.bad_access,
                    "ivc-shm: read of BAR{bar} offset {offset:#x} size {} ignored",
                    data.len()
                );
            }
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        match (bar, &mut self.msix) {
            (BAR_REGISTERS, _) => match self.regs.write(offset, data) {
                Ok(None) => {}
                Ok(Some(ring)) => self.ring(ring),
                Err(e) => warn_limited!(self.bad_access, "ivc-shm: BAR0 write ignored: {e}"),
            },
            (BAR_MSIX, Some(m)) if offset < MSIX_PBA_OFFSET => m.write_table(offset, data),
            (BAR_MSIX, Some(m)) => m.write_pba(offset - MSIX_PBA_OFFSET, data),
            (BAR_IO_DOORBELL, _) if self.doorbells.is_some() => {
                match io_doorbell_write(offset, data) {
                    Ok(ring) => self.ring(ring),
                    Err(e) => warn_limited!(self.bad_access, "ivc-shm: BAR4 write ignored: {e}"),
                }
            }
            _ => warn_limited!(
                self.bad_access,
                "ivc-shm: write of BAR{bar} offset {offset:#x} size {} ignored",
                data.len()
            ),
        }
    }

    fn bar_moved(&mut self, bar: usize, old: Option<u64>, new: Option<u64>) {
        match bar {
            BAR_REGISTERS | BAR_IO_DOORBELL => {
                let which = if bar == BAR_REGISTERS {
                    DoorbellBar::Mmio
                } else {
                    DoorbellBar::Io
                };
                if let Some(d) = &self.doorbells {
                    d.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .moved(which, old, new);
                }
            }
            BAR_SHM => self.region.moved(old, new),
            _ => {}
        }
    }
}
