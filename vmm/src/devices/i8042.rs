//! The i8042 keyboard controller, as much as a guest needs to reset the
//! machine: vm-superio's `I8042Device` (command 0xfe, "pulse reset line", on
//! port 0x64 fires its reset trigger), on our bus.
//!
//! There is no keyboard: the status register never shows output, so a Linux
//! guest's i8042 probe times out reading the command byte and gives up, and
//! everything else is ignored.

use std::sync::Arc;

use log::debug;
use vm_superio::{I8042Device, Trigger};

use crate::exit::{ExitReason, VmExit};
use crate::io_bus::BusDevice;

pub const CMD_RESET: u8 = 0xfe;
/// Offsets from the device base 0x60: data 0x60, command/status 0x64.
pub const DATA_OFFSET: u64 = 0;
pub const COMMAND_OFFSET: u64 = 4;

/// The reset line: ends the VM with `ExitReason::Reset` (status 0), as a
/// PC's reset would end a run that has no firmware to restart.
pub struct ResetLine(Arc<VmExit>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(ExitReason::Reset);
        Ok(())
    }
}

/// The bus adapter: the bus range is ports 0x60-0x64, of which only 0x60
/// and 0x64 are the controller's (0x61 is the in-kernel PIT's speaker port;
/// 0x62/0x63 are nobody's and read as all ones, like an unclaimed port).
pub struct I8042 {
    dev: I8042Device<ResetLine>,
}

impl I8042 {
    pub fn new(exit: Arc<VmExit>) -> Self {
        I8042 {
            dev: I8042Device::new(ResetLine(exit)),
        }
    }
}

/// The controller's register offset (vm-superio's `u8` offsets), or None
/// for a port of the range that is not the controller's.
fn register(offset: u64) -> Option<u8> {
    match offset {
        DATA_OFFSET | COMMAND_OFFSET => u8::try_from(offset).ok(),
        _ => None,
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        // vm-superio reads 0 everywhere: status "no output, input buffer
        // empty", data 0.
        let value = register(offset).map_or(0xff, |r| self.dev.read(r));
        data.fill(value);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        // The low byte of a wider access is the byte the port sees.
        match (register(offset), data.first()) {
            (Some(r), Some(&v)) => {
                if v != CMD_RESET || offset != COMMAND_OFFSET {
                    debug!("i8042: ignored write {data:x?} at offset {offset}");
                }
                // Infallible: the reset trigger cannot fail.
                let _ = self.dev.write(r, v);
            }
            _ => debug!("i8042: ignored write {data:x?} at offset {offset}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_stops_with_status_0() {
        let exit = Arc::new(VmExit::new().unwrap());
        let mut k = I8042::new(exit.clone());
        k.write(0x60, DATA_OFFSET, &[CMD_RESET]);
        k.write(0x60, COMMAND_OFFSET, &[0xaa]);
        assert!(!exit.requested());
        let mut s = [0xffu8];
        k.read(0x60, COMMAND_OFFSET, &mut s);
        assert_eq!(s[0] & 1, 0, "no output ever pending");
        k.write(0x60, COMMAND_OFFSET, &[CMD_RESET]);
        assert_eq!(exit.reason(), Some(ExitReason::Reset));
        assert_eq!(exit.reason().unwrap().exit_status(), 0);
    }

    #[test]
    fn ports_between_are_not_the_controllers() {
        let exit = Arc::new(VmExit::new().unwrap());
        let mut k = I8042::new(exit.clone());
        let mut d = [0u8; 2];
        k.read(0x60, 2, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        k.read(0x60, DATA_OFFSET, &mut d);
        assert_eq!(d, [0, 0]);
        k.write(0x60, 3, &[CMD_RESET]);
        k.write(0x60, COMMAND_OFFSET, &[]);
        assert!(!exit.requested());
    }
}
