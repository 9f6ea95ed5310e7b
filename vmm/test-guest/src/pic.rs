//! The legacy 8259 PIC pair: moved out of the way and silenced.
//!
//! A BIOS (SeaBIOS under QEMU) leaves the PICs delivering the PIT's IRQ 0 at
//! vector 8 — the double-fault vector. The moment a test enables interrupts
//! that tick would look like a #DF. So before any `sti` the PICs are
//! re-initialised to vectors [`BASE`]..[`BASE`]+16, clear of the exceptions,
//! with every line masked. Only spurious IRQ 7/15 can then still arrive; the
//! IDT sends those to a bare `iretq`.

use crate::port::outb;

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;

/// First vector of the master PIC after [`disable`]; the slave follows at +8.
pub const BASE: u8 = 0x20;

/// Remaps both PICs above the exception vectors and masks every line.
pub fn disable() {
    // ICW1: edge triggered, cascade, ICW4 follows.
    outb(MASTER_COMMAND, 0x11);
    outb(SLAVE_COMMAND, 0x11);
    // ICW2: vector bases.
    outb(MASTER_DATA, BASE);
    outb(SLAVE_DATA, BASE + 8);
    // ICW3: slave on master line 2 / slave identity 2.
    outb(MASTER_DATA, 1 << 2);
    outb(SLAVE_DATA, 2);
    // ICW4: 8086 mode.
    outb(MASTER_DATA, 0x01);
    outb(SLAVE_DATA, 0x01);
    // OCW1: mask everything.
    outb(MASTER_DATA, 0xff);
    outb(SLAVE_DATA, 0xff);
}
