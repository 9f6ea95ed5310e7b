//! CPL0 set-up shared by the shared-memory benchmarks (`shm-pingpong`,
//! `shm-stream`): find the ivc-shm / ivshmem device, map BAR0 and BAR2,
//! read IVPosition, and for doorbell use pick the doorbell (MMIO or
//! ivc-shm's I/O port) and route the MSI-X vector. What it returns is plain
//! data the CPL3 loops use.

use core::ptr::{read_volatile, write_volatile};

use ivc_abi::ivshmem::{
    Doorbell, BAR_IO_DOORBELL, BAR_REGISTERS, BAR_SHM, REG_DOORBELL, REG_IV_POSITION,
};

use super::{allocator, Context};
use crate::exit::status;
use crate::pci::{self, bar};
use crate::println;

/// The mapped device.
#[derive(Clone, Copy)]
pub struct ShmDev {
    /// Bus/device/function, for messages.
    pub bdf: pci::Bdf,
    pub regs: u64,
    /// The I/O doorbell port (BAR4, `via=io`); `None`: the MMIO Doorbell.
    pub io_doorbell: Option<u16>,
    pub shm: u64,
    pub shm_size: u64,
    pub ivposition: u32,
}

/// What to open: `(vendor, device)`, doorbell through I/O, interrupt vector
/// to route (`None`: no interrupts).
pub struct Want {
    pub id: (u16, u16),
    pub via_io: bool,
    pub vector: Option<u16>,
}

/// Opens the device at CPL0; on failure prints why and returns the status.
pub fn open(ctx: &Context, want: &Want) -> Result<ShmDev, u8> {
    let mut allocator = allocator(ctx).map_err(super::bad_param)?;
    let (vendor, device) = want.id;
    let (function, bars) = super::find_and_assign((vendor, device), &mut allocator)?;
    let (Some(regs), Some((shm, shm_size))) = (
        bars[BAR_REGISTERS].and_then(|b| b.map().ok()),
        bars[BAR_SHM].and_then(|b| b.map().ok().map(|a| (a, b.size))),
    ) else {
        println!("error: {} needs memory BAR0 and BAR2", function.bdf);
        return Err(status::FAILURE);
    };
    let io_doorbell = if want.via_io {
        match bars[BAR_IO_DOORBELL].filter(|b| b.kind == bar::BarKind::Io && b.addr != 0) {
            Some(b) => Some(b.addr as u16),
            None => {
                println!("error: {} has no I/O doorbell BAR4", function.bdf);
                return Err(status::FAILURE);
            }
        }
    } else {
        None
    };
    if let Some(vector) = want.vector {
        super::doorbell::route_interrupt(&function, &bars, vector)?;
    }
    // SAFETY: IVPosition, a read-only 32-bit register of the mapped BAR0.
    let ivposition = unsafe { read_volatile((regs + u64::from(REG_IV_POSITION)) as *const u32) };
    Ok(ShmDev {
        bdf: function.bdf,
        regs,
        io_doorbell,
        shm,
        shm_size,
        ivposition,
    })
}

impl ShmDev {
    /// A placeholder until [`open`] fills it in (parameters are parsed
    /// before the device is touched, so a usage error changes nothing).
    pub const UNOPENED: ShmDev = ShmDev {
        bdf: pci::Bdf {
            bus: 0,
            device: 0,
            function: 0,
        },
        regs: 0,
        io_doorbell: None,
        shm: 0,
        shm_size: 0,
        ivposition: 0,
    };

    /// Rings `peer`'s doorbell on `vector` (works at CPL3: IOPL/TSS bitmap
    /// allow the port, BAR0 is user-mapped).
    pub fn ring(&self, peer: u16, vector: u16) {
        let value = Doorbell { peer, vector }.value();
        match self.io_doorbell {
            Some(port) => crate::port::outl(port, value),
            // SAFETY: Doorbell, a write-only 32-bit register in the mapped
            // BAR0; writing it is how a peer is interrupted.
            None => unsafe {
                write_volatile((self.regs + u64::from(REG_DOORBELL)) as *mut u32, value)
            },
        }
    }
}
