//! Port 0xf4: a write of V stops the VM with exit status V & 0xff.
//! (QEMU's isa-debug-exit reports (V << 1) | 1; ours reports V itself.)

use std::sync::Arc;

use crate::exit::{ExitReason, VmExit};
use crate::io_bus::BusDevice;

pub struct DebugExit {
    exit: Arc<VmExit>,
}

impl DebugExit {
    pub fn new(exit: Arc<VmExit>) -> Self {
        DebugExit { exit }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        // Any access width: the low byte is the status.
        if let Some(&v) = data.first() {
            self.exit.request(ExitReason::DebugExit(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_sets_status() {
        let exit = Arc::new(VmExit::new().unwrap());
        let mut d = DebugExit::new(exit.clone());
        let mut b = [0u8; 2];
        d.read(0xf4, 0, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        assert!(!exit.requested());
        d.write(0xf4, 0, &[0x2a, 0x01, 0, 0]);
        assert_eq!(exit.reason().unwrap().exit_status(), 42);
    }
}
