//! ivc-test-guest: a bare-metal PVH guest that runs one small test program,
//! chosen on the kernel command line (`test=NAME`), reports on the serial
//! console and ends the VM with a status through the debug-exit port.
//!
//! Boot path: `boot.S` (32-bit PVH entry, identity paging, long mode) ->
//! [`ivc_main`] (console, start info, descriptor tables) -> the test.
//! See docs/test-guest.md for the tests, their parameters and exit statuses.

#![no_std]
#![no_main]

mod apic;
mod boot;
mod cmdline;
mod cpl0_io;
mod cpl3;
mod exit;
mod gdt;
mod idt;
mod irq;
mod paging;
mod panic;
mod pci;
mod pic;
mod port;
mod pvh;
mod serial;
mod tests;
mod tsc;

use cmdline::Cmdline;
use exit::{exit, status};

/// The test run when the command line names none.
const DEFAULT_TEST: &str = "pci-enum";

/// Called by `boot.S` in long mode at CPL0, interrupts off, on the boot stack.
extern "C" fn ivc_main(start_info_paddr: u64) -> ! {
    serial::init();
    println!("boot version={}", env!("CARGO_PKG_VERSION"));
    idt::init();
    gdt::init_tss(cpl3::exception_stack_top());

    let start_info = match pvh::parse(start_info_paddr) {
        Ok(info) => info,
        Err(err) => {
            println!("bad PVH start info at 0x{start_info_paddr:x}: {err:?}");
            exit(status::BAD_BOOT_INFO)
        }
    };
    println!(
        "start_info addr=0x{:x} version={} memmap_entries={} rsdp=0x{:x}",
        start_info.paddr,
        start_info.version,
        start_info.memmap.len(),
        start_info.rsdp_paddr
    );
    for entry in start_info.memmap {
        println!(
            "memmap addr=0x{:x} size=0x{:x} type={}",
            entry.addr, entry.size, entry.kind
        );
    }
    println!("cmdline \"{}\"", start_info.cmdline);

    let cmdline = Cmdline::new(start_info.cmdline);
    let name = cmdline.get("test").unwrap_or(DEFAULT_TEST);
    let Some(test) = tests::find(name) else {
        println!("unknown test \"{name}\"; available:");
        for test in tests::ALL {
            println!("  test={} {}: {}", test.name, test.params, test.about);
        }
        exit(status::USAGE)
    };
    println!("test={} start", test.name);
    let context = tests::Context {
        cmdline,
        start_info: &start_info,
    };
    let result = (test.run)(&context);
    exit(result)
}
