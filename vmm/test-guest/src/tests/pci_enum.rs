//! `test=pci-enum`: list bus 0 the way firmware sees it.
//!
//! For every function: IDs and class, every BAR (sized, and given an address
//! when it has none), the MSI-X capability. This is the guest half of
//! checking a VMM's configuration space and BAR emulation.

use super::{allocator, bad_param, Context, Test};
use crate::cmdline::ParamError;
use crate::exit::status;
use crate::pci::{self, bar, msix};
use crate::println;

pub const TEST: Test = Test {
    name: "pci-enum",
    params: concat!(
        "[expect=VVVV:DDDD,...] [assign=unset|all|never] [probe_mmio=0] ",
        crate::allocator_params!()
    ),
    about: "enumerate bus 0, size/assign BARs, show MSI-X",
    run,
};

fn run(ctx: &Context) -> u8 {
    let cmdline = &ctx.cmdline;
    let params = (|| -> Result<_, ParamError> {
        Ok((
            cmdline.choice(
                "assign",
                bar::Assign::Unset,
                &[
                    ("unset", bar::Assign::Unset),
                    ("all", bar::Assign::All),
                    ("never", bar::Assign::Never),
                ],
                "unset, all or never",
            )?,
            cmdline.bool_or("probe_mmio", false)?,
            allocator(ctx)?,
        ))
    })();
    let (assign, probe_mmio, mut allocator) = match params {
        Ok(p) => p,
        Err(err) => return bad_param(err),
    };
    if assign == bar::Assign::Unset && !allocator.reserve_preassigned() {
        println!("warning: too many preassigned BARs; assignments may overlap");
    }

    let mut functions = 0;
    let mut unassigned = 0;
    for function in pci::enumerate_bus0() {
        functions += 1;
        println!(
            "pci {} vendor={:04x} device={:04x} class={:06x} rev={:02x}",
            function.bdf, function.vendor, function.device, function.class, function.revision
        );
        let bars = bar::setup(&function, &mut allocator, assign);
        for b in bars.iter().flatten() {
            println!(
                "bar {} index={} kind={} addr=0x{:x} size=0x{:x} prefetch={} assigned={}",
                function.bdf,
                b.index,
                b.kind,
                b.addr,
                b.size,
                b.prefetchable as u8,
                if b.assigned_by_guest {
                    "guest"
                } else {
                    "preset"
                }
            );
            if b.addr == 0 {
                unassigned += 1;
            } else if probe_mmio && b.kind != bar::BarKind::Io {
                probe(&function.bdf, b);
            }
        }
        if let Some(m) = msix::read(&function) {
            println!(
                "msix {} table_size={} table_bar={} table_offset=0x{:x} pba_bar={} pba_offset=0x{:x} enabled={} masked={}",
                function.bdf,
                m.table_size,
                m.table_bar,
                m.table_offset,
                m.pba_bar,
                m.pba_offset,
                m.enabled as u8,
                m.function_masked as u8
            );
        }
    }
    println!("pci-enum functions={functions} unassigned_bars={unassigned}");

    let mut result = status::SUCCESS;
    if assign != bar::Assign::Never && unassigned != 0 {
        println!("error: {unassigned} BAR(s) left without an address (allocator windows full)");
        result = status::FAILURE;
    }
    if let Some(list) = cmdline.get("expect") {
        for want in list.split(',').filter(|w| !w.is_empty()) {
            let Some((vendor, device)) = crate::cmdline::parse_pci_id(want) else {
                println!("bad parameter expect={list:?}: expected VVVV:DDDD[,VVVV:DDDD...] in hex");
                return status::USAGE;
            };
            if pci::find(vendor, device).is_none() {
                println!("error: expected device {vendor:04x}:{device:04x} not found");
                result = status::FAILURE;
            }
        }
    }
    result
}

/// Reads the first dword of a memory BAR: proves the address decodes end to
/// end (guest page tables, VMM MMIO dispatch, device). Opt-in, because a
/// read can have side effects on some devices.
fn probe(bdf: &pci::Bdf, b: &bar::Bar) {
    match b.map() {
        Ok(addr) => {
            // SAFETY: the BAR is assigned, decoding is enabled, the range is
            // identity-mapped (map above); offset 0 is dword aligned. The user
            // asked for this read with probe_mmio=1.
            let value = unsafe { core::ptr::read_volatile(addr as *const u32) };
            println!(
                "mmio {bdf} index={} offset=0x0 value=0x{value:08x}",
                b.index
            );
        }
        Err(err) => println!("mmio {bdf} index={} unmapped: {err:?}", b.index),
    }
}
