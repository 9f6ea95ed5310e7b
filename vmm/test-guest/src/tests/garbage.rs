//! `test=garbage`: hostile register accesses. Writes garbage values with
//! every width at every offset of every BAR of a device (and reads them
//! back), string I/O included for I/O BARs, then checks the device still
//! answers. Proves (with the VMM's log) that bad guest accesses are
//! ignored and reported, never fatal. Runs at CPL0.

use core::ptr::{read_volatile, write_volatile};

use super::{allocator, bad_param, Context, Test};
use crate::cmdline::ParamError;
use crate::exit::status;
use crate::pci::{self, bar};
use crate::port::{inb, inl, insb, inw, outb, outl, outsb, outw};
use crate::println;

pub const TEST: Test = Test {
    name: "garbage",
    params: concat!(
        "[dev=1af4:1110] [limit=0x1000] [skip_bar=N] ",
        crate::allocator_params!()
    ),
    about: "garbage writes/reads at every offset and width of every BAR; device must survive",
    run,
};

const VALUES: [u64; 3] = [u64::MAX, 0, 0xa5a5_5a5a_dead_beef];

fn run(ctx: &Context) -> u8 {
    let c = &ctx.cmdline;
    let parsed = (|| -> Result<_, ParamError> {
        Ok((
            c.pci_id_or("dev", pci::IVSHMEM)?,
            c.u64_or("limit", 0x1000)?,
            c.get("skip_bar")
                .map(|_| c.u64_or("skip_bar", 9))
                .transpose()?,
            allocator(ctx)?,
        ))
    })();
    let ((vendor, device), limit, skip, mut allocator) = match parsed {
        Ok(v) => v,
        Err(e) => return bad_param(e),
    };
    let (function, bars) = match super::find_and_assign((vendor, device), &mut allocator) {
        Ok(found) => found,
        Err(status) => return status,
    };
    let mut accesses = 0u64;
    for b in bars.iter().flatten() {
        if skip == Some(u64::from(b.index)) {
            continue;
        }
        let len = b.size.min(limit);
        if b.kind == bar::BarKind::Io {
            let base = b.addr as u16;
            let mut buf = [0x5au8; 64];
            for off in 0..len as u16 {
                let port = base + off;
                for v in VALUES {
                    outb(port, v as u8);
                    outw(port, v as u16);
                    outl(port, v as u32);
                    accesses += 3;
                }
                let _ = (inb(port), inw(port), inl(port));
                outsb(port, &buf);
                insb(port, &mut buf);
                accesses += 5;
            }
        } else {
            let Ok(addr) = b.map() else {
                println!("error: cannot map BAR{}", b.index);
                return status::FAILURE;
            };
            for off in 0..len {
                let a = addr + off;
                for v in VALUES {
                    // SAFETY: inside a mapped memory BAR of the device under
                    // test; garbage is the point. Unaligned MMIO is allowed.
                    unsafe {
                        write_volatile(a as *mut u8, v as u8);
                        write_volatile(a as *mut u16, v as u16);
                        write_volatile(a as *mut u32, v as u32);
                        write_volatile(a as *mut u64, v);
                    }
                    accesses += 4;
                }
                // SAFETY: as above.
                unsafe {
                    let _ = read_volatile(a as *const u8);
                    let _ = read_volatile(a as *const u16);
                    let _ = read_volatile(a as *const u32);
                    let _ = read_volatile(a as *const u64);
                }
                accesses += 4;
            }
        }
        println!("garbage bar={} kind={} bytes={len}", b.index, b.kind);
    }
    // Still alive and answering? Read the identity through config space.
    let id = function.bdf.read32(0);
    let ok = id == (u32::from(device) << 16 | u32::from(vendor));
    println!("garbage-result accesses={accesses} device_ok={}", ok as u8);
    if ok {
        status::SUCCESS
    } else {
        status::FAILURE
    }
}
