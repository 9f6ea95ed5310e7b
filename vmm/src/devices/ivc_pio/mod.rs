//! `ivc-pio`: our port-I/O device (1234:1c1c, class 0x078000): BAR0 is 64
//! bytes of I/O ports, the register map in `ivc_abi::pio` (the ids in
//! `ivc_abi::pci_ids`), in front of a
//! channel endpoint that this VMM attaches to the rendezvous server's shared
//! memory. The peer VMM does the same with its own `ivc-pio`, so bytes go
//! guest -> exit -> our endpoint -> shared ring -> peer VMM's endpoint ->
//! exit -> peer guest, with the ring's back-pressure and ordering.
//!
//! Accesses are served inline in the vCPU exit (the endpoint never blocks).

pub mod registers;

use std::sync::Arc;

use ivc_abi::pci_ids::{
    IVC_PIO_CLASS_CODE, IVC_PIO_DEVICE_ID, IVC_PIO_REVISION, IVC_PIO_SUBSYSTEM_ID,
    IVC_PIO_SUBSYSTEM_VENDOR_ID, IVC_PIO_VENDOR_ID,
};
use ivc_abi::pio::BAR0_SIZE;
use ivc_abi::AtomicMem;

use self::registers::PioRegisters;
use crate::devices::ratelimit::RateLimit;
use crate::devices::shm_mapping::ShmMapping;
use crate::pci::{BarKind, ConfigSpace, PciDevice, PciIds};
use crate::warn_limited;

pub struct IvcPio {
    config: ConfigSpace,
    // Field order is drop order: the model (with its endpoint, which points
    // into the mapping) goes before the mapping.
    regs: PioRegisters<AtomicMem<'static>>,
    _mapping: Arc<ShmMapping>,
    bad_access: RateLimit,
}

impl IvcPio {
    /// `doorbell_id`: our rendezvous peer id, published in the channel.
    pub fn new(mapping: Arc<ShmMapping>, doorbell_id: Option<u16>) -> Result<IvcPio, String> {
        let mut config = ConfigSpace::new(PciIds {
            vendor: IVC_PIO_VENDOR_ID,
            device: IVC_PIO_DEVICE_ID,
            revision: IVC_PIO_REVISION,
            class: IVC_PIO_CLASS_CODE,
            subsystem_vendor: IVC_PIO_SUBSYSTEM_VENDOR_ID,
            subsystem: IVC_PIO_SUBSYSTEM_ID,
        });
        config
            .add_bar(0, BarKind::Io, u64::from(BAR0_SIZE))
            .map_err(|e| e.to_string())?;
        // SAFETY: the view is only used by `regs`, which is dropped before
        // `_mapping` (field order), and the Arc keeps the mapping alive and
        // unchanged until then; all accesses are atomic.
        let mem = unsafe { AtomicMem::new(mapping.host_addr() as *mut u8, mapping.len()) }
            .ok_or("shared memory mapping is not aligned")?;
        Ok(IvcPio {
            config,
            regs: PioRegisters::new(mem, doorbell_id),
            _mapping: mapping,
            bad_access: RateLimit::new(),
        })
    }

    /// Enables descriptor mode over `ram` (see [`PioRegisters::set_guest_ram`]).
    pub fn set_guest_ram(&mut self, ram: Box<dyn registers::GuestRam>) {
        self.regs.set_guest_ram(ram);
    }

    /// See [`PioRegisters::heartbeat`]; called by the timer thread every
    /// [`HEARTBEAT_INTERVAL`] with the milliseconds since it started.
    pub fn heartbeat(&mut self, now_ms: u64) {
        let _ = self.regs.heartbeat(now_ms);
    }

    pub fn bad_accesses(&self) -> u64 {
        self.bad_access.total()
    }

    /// The guest's exits and bytes through the device so far.
    pub fn traffic(&self) -> registers::Traffic {
        self.regs.traffic()
    }
}

impl PciDevice for IvcPio {
    fn name(&self) -> &str {
        "ivc-pio"
    }

    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != 0 {
            data.fill(0xff);
            warn_limited!(self.bad_access, "ivc-pio: read of BAR{bar} ignored");
            return;
        }
        log::trace!("ivc-pio: in offset {offset:#x} len {}", data.len());
        if let Err(e) = self.regs.read(offset, data) {
            warn_limited!(self.bad_access, "ivc-pio: {e}");
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != 0 {
            warn_limited!(self.bad_access, "ivc-pio: write of BAR{bar} ignored");
            return;
        }
        log::trace!("ivc-pio: out offset {offset:#x} len {}", data.len());
        if let Err(e) = self.regs.write(offset, data) {
            warn_limited!(self.bad_access, "ivc-pio: {e}");
        }
    }
}

/// How often the VMM bumps its channel heartbeat.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Starts the thread that bumps `dev`'s heartbeat every
/// [`HEARTBEAT_INTERVAL`] for the life of the process. It takes the device
/// lock only briefly, like a vCPU exit does.
pub fn spawn_heartbeat(
    dev: Arc<std::sync::Mutex<IvcPio>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ivc-pio-heartbeat".into())
        .spawn(move || {
            let start = std::time::Instant::now();
            loop {
                std::thread::sleep(HEARTBEAT_INTERVAL);
                let now_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .heartbeat(now_ms);
            }
        })
}
