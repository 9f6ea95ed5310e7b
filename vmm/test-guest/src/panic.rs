//! Panics print their message and end the VM with status 101.
//!
//! No unwinding (panic=abort) and no INT3: the PVM instruction emulator
//! cannot execute INT3 at CPL0, and an exit status is more useful anyway.

use core::panic::PanicInfo;

use crate::exit::{exit, status};
use crate::println;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("panic: {info}");
    exit(status::PANIC)
}
