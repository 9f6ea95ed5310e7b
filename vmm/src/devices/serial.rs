//! COM1: vm-superio's 16550 model at 0x3f8, interrupting through IRQ 4.
//!
//! The interrupt is an eventfd registered as KVM irqfd for GSI 4 (both
//! PIC and IOAPIC), which is what Linux's 8250 driver waits for once it
//! switches from polling to interrupt-driven transmit.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::warn;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::io_bus::BusDevice;

/// A vm-superio interrupt line backed by an eventfd (an irqfd in KVM).
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

pub type SerialOutput = Box<dyn Write + Send>;

pub struct SerialDevice {
    serial: Serial<EventFdTrigger, NoEvents, SerialOutput>,
}

impl SerialDevice {
    pub fn new(interrupt: EventFd, out: SerialOutput) -> Self {
        SerialDevice {
            serial: Serial::new(EventFdTrigger(interrupt), out),
        }
    }
}

impl SerialDevice {
    /// Queues bytes for the guest to read (raising the receive interrupt);
    /// returns how many fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        match self.serial.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(vm_superio::serial::Error::FullFifo) => 0,
            Err(e) => {
                warn!("serial: input: {e:?}");
                0
            }
        }
    }
}

/// Feeds `input` (stdin, usually) to the guest's UART until it ends. Waits
/// while the guest's receive FIFO is full rather than dropping bytes.
pub fn spawn_input_thread(
    serial: Arc<Mutex<SerialDevice>>,
    mut input: Box<dyn Read + Send>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("serial-input".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        warn!("serial: reading input: {e}");
                        return;
                    }
                };
                let mut pending = &buf[..n];
                while !pending.is_empty() {
                    let taken = serial
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .enqueue_input(pending);
                    pending = &pending[taken..];
                    if !pending.is_empty() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        })
}

/// The UART register a guest access addresses: one byte at offset 0..8.
fn register(offset: u64, len: usize) -> Option<u8> {
    u8::try_from(offset).ok().filter(|&r| r < 8 && len == 1)
}

impl BusDevice for SerialDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let Some(reg) = register(offset, data.len()) else {
            crate::guest_log!(
                warn,
                "serial: {}-byte read at offset {offset} ignored",
                data.len()
            );
            data.fill(0xff);
            return;
        };
        data[0] = self.serial.read(reg);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some(reg) = register(offset, data.len()) else {
            crate::guest_log!(
                warn,
                "serial: {}-byte write at offset {offset} ignored",
                data.len()
            );
            return;
        };
        if let Err(e) = self.serial.write(reg, data[0]) {
            crate::guest_log!(warn, "serial: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmits_and_interrupts() {
        let sink = Sink::default();
        let irq = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let mut s = SerialDevice::new(irq.try_clone().unwrap(), Box::new(sink.clone()));
        s.write(0x3f8, 1, &[0x02]); // IER: THR empty interrupt
        s.write(0x3f8, 0, b"h");
        s.write(0x3f8, 0, b"i");
        assert_eq!(&*sink.0.lock().unwrap(), b"hi");
        assert!(irq.read().unwrap() >= 1);
        // Wrong sizes are ignored.
        s.write(0x3f8, 0, b"xy");
        let mut w = [0u8; 2];
        s.read(0x3f8, 5, &mut w);
        assert_eq!(w, [0xff, 0xff]);
        assert_eq!(&*sink.0.lock().unwrap(), b"hi");
        let mut lsr = [0u8];
        s.read(0x3f8, 5, &mut lsr);
        assert_eq!(lsr[0] & 0x20, 0x20, "THR empty");
    }
}

#[cfg(test)]
mod input_tests {
    use super::*;

    #[test]
    fn input_reaches_the_receive_buffer() {
        let irq = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let dev = Arc::new(Mutex::new(SerialDevice::new(
            irq.try_clone().unwrap(),
            Box::new(io::sink()),
        )));
        dev.lock().unwrap().write(0x3f8, 1, &[0x01]); // IER: received data interrupt
        let t = spawn_input_thread(dev.clone(), Box::new(&b"hi"[..])).unwrap();
        t.join().unwrap();
        let mut d = dev.lock().unwrap();
        let mut b = [0u8];
        d.read(0x3f8, 5, &mut b);
        assert_eq!(b[0] & 1, 1, "data ready");
        d.read(0x3f8, 0, &mut b);
        assert_eq!(b[0], b'h');
        d.read(0x3f8, 0, &mut b);
        assert_eq!(b[0], b'i');
        d.read(0x3f8, 5, &mut b);
        assert_eq!(b[0] & 1, 0);
        assert!(irq.read().unwrap() >= 1);
    }

    #[test]
    fn only_single_bytes_at_offsets_0_to_7_address_a_register() {
        assert_eq!(register(0, 1), Some(0));
        assert_eq!(register(7, 1), Some(7));
        assert_eq!(register(8, 1), None);
        // Truncated to 8 bits, these would alias register 0.
        assert_eq!(register(0x100, 1), None);
        assert_eq!(register(1 << 32, 1), None);
        assert_eq!(register(0, 2), None);
    }
}
