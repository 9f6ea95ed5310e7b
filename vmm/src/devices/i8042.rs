//! Just enough of the i8042 keyboard controller for a guest to reset the
//! machine: command 0xfe ("pulse reset line") on port 0x64.
//!
//! There is no keyboard: the status register never shows output, so a Linux
//! guest's i8042 probe times out reading the command byte and gives up, and
//! everything else is ignored.

use std::sync::Arc;

use log::debug;

use crate::bus::BusDevice;
use crate::exit::{ExitReason, VmExit};

pub const CMD_RESET: u8 = 0xfe;
/// Offsets from the device base 0x60: data 0x60, command/status 0x64.
pub const DATA_OFFSET: u64 = 0;
pub const COMMAND_OFFSET: u64 = 4;

pub struct I8042 {
    exit: Arc<VmExit>,
}

impl I8042 {
    pub fn new(exit: Arc<VmExit>) -> Self {
        I8042 { exit }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        // Status 0: no output, input buffer empty. Data 0.
        data.fill(0);
        if offset != DATA_OFFSET && offset != COMMAND_OFFSET {
            data.fill(0xff);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data) {
            (COMMAND_OFFSET, [CMD_RESET, ..]) => self.exit.request(ExitReason::Reset),
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
}
