//! Ending the VM with a status through the debug-exit port.
//!
//! ivc-vmm ends the VM with process exit status V when the guest writes V to
//! port 0xf4. QEMU's `isa-debug-exit` device (iobase=0xf4) exits with
//! `(V << 1) | 1` instead; the docs explain how to map it back.

use crate::port::outb;
use crate::println;

const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Exit statuses shared by all tests (see docs/test-guest.md).
pub mod status {
    /// The test passed.
    pub const SUCCESS: u8 = 0;
    /// The test ran and found something wrong.
    pub const FAILURE: u8 = 1;
    /// Bad command line: unknown test or malformed parameter.
    pub const USAGE: u8 = 2;
    /// The boot information from the loader is unusable.
    pub const BAD_BOOT_INFO: u8 = 3;
    /// A Rust panic.
    pub const PANIC: u8 = 101;
    /// An unexpected CPU exception.
    pub const EXCEPTION: u8 = 102;
}

/// Prints `done status=N` and ends the VM. Works at CPL0 and at CPL3.
pub fn exit(status: u8) -> ! {
    println!("done status={status}");
    outb(DEBUG_EXIT_PORT, status);
    // Only reached if nothing listens on the port. Make that visible rather
    // than pretending the VM ended.
    println!("debug-exit port 0x{DEBUG_EXIT_PORT:x} did not end the VM; halting");
    halt_forever()
}

/// Stops doing anything, without relying on privileged instructions at CPL3.
pub fn halt_forever() -> ! {
    if crate::cpl3::current_cpl() == 0 {
        loop {
            // SAFETY: with interrupts off, HLT just stops this CPU for good;
            // no memory or register state is affected.
            unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
        }
    }
    loop {
        core::hint::spin_loop();
    }
}
