//! Console on the COM1 16550 UART, polled, no interrupts.
//!
//! Every line starts with [`PREFIX`] so a harness can pick the guest's lines
//! out of a VMM's mixed output. Lines end with a bare `\n`.

use core::fmt::{self, Write};

use crate::port::{inb, outb};

/// Base port of COM1.
const COM1: u16 = 0x3f8;
const THR: u16 = 0; // transmit holding register (write, DLAB=0)
const DLL: u16 = 0; // divisor latch low (DLAB=1)
const IER: u16 = 1; // interrupt enable (DLAB=0)
const DLM: u16 = 1; // divisor latch high (DLAB=1)
const FCR: u16 = 2; // FIFO control
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status
const LSR_THR_EMPTY: u8 = 1 << 5;
const LCR_DLAB: u8 = 1 << 7;
const LCR_8N1: u8 = 0x03;

/// Put in front of every output line.
pub const PREFIX: &str = "ivc-test-guest: ";

/// Polls of LSR before a byte is sent anyway. A UART that never reports an
/// empty transmitter (or is missing) must not hang the test.
const MAX_POLLS: u32 = 100_000;

/// Programs 115200 8N1 with FIFOs on and interrupts off. Emulated UARTs
/// ignore the speed, but a sane line setup keeps real-16550 models happy.
pub fn init() {
    outb(COM1 + IER, 0);
    outb(COM1 + LCR, LCR_DLAB);
    outb(COM1 + DLL, 1);
    outb(COM1 + DLM, 0);
    outb(COM1 + LCR, LCR_8N1);
    outb(COM1 + FCR, 0x07); // enable + clear both FIFOs
    outb(COM1 + MCR, 0x03); // DTR, RTS
}

fn write_byte(byte: u8) {
    let mut polls = 0;
    while inb(COM1 + LSR) & LSR_THR_EMPTY == 0 && polls < MAX_POLLS {
        polls += 1;
        core::hint::spin_loop();
    }
    outb(COM1 + THR, byte);
}

/// Formats into the UART, inserting [`PREFIX`] at the start of every line.
struct Writer {
    at_line_start: bool,
}

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            if self.at_line_start {
                PREFIX.bytes().for_each(write_byte);
                self.at_line_start = false;
            }
            write_byte(byte);
            if byte == b'\n' {
                self.at_line_start = true;
            }
        }
        Ok(())
    }
}

/// Writes one line (prefix, text, newline). Used by [`println!`](crate::println).
pub fn print_line(args: fmt::Arguments) {
    let mut writer = Writer {
        at_line_start: true,
    };
    // Our writer never fails; a formatting error from a Display impl leaves a
    // partial line, which is the most useful thing to show anyway.
    let _ = writer.write_fmt(args);
    let _ = writer.write_str("\n");
}

/// `println!` for the guest console: one prefixed line per call.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::serial::print_line(format_args!($($arg)*))
    };
}
