//! Address-range dispatch for port I/O and MMIO exits.
//!
//! One `Bus` instance serves the I/O port space and another the MMIO space.
//! A vCPU exit looks up the range that holds the address and forwards the
//! access to that range's device with the offset into the range.
//!
//! The map is behind an `RwLock` and dispatch clones the device handle out of
//! it before calling the device: a device may then change the map while it
//! handles an access (a PCI config write that moves a BAR does exactly that)
//! without deadlocking.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device that sits on a `Bus` range.
///
/// `base` is the start of the range the access hit and `offset` the distance
/// from it. `data.len()` is the access size (1, 2, 4 or 8; anything the guest
/// can produce): a device must treat sizes it does not support by logging and
/// ignoring the access (reads then return all ones), never by panicking.
pub trait BusDevice: Send {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

pub type SharedBusDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The range is empty or wraps around the address space.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange { base: u64, len: u64 },
    /// The range overlaps one already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps {existing_base:#x}+{existing_len:#x}")]
    Overlap {
        base: u64,
        len: u64,
        existing_base: u64,
        existing_len: u64,
    },
}

struct Range {
    len: u64,
    device: SharedBusDevice,
}

/// Which address space a bus serves; only used in log messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Io,
    Mmio,
}

pub struct Bus {
    kind: BusKind,
    ranges: RwLock<BTreeMap<u64, Range>>,
}

impl Bus {
    pub fn new(kind: BusKind) -> Self {
        Bus {
            kind,
            ranges: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn kind(&self) -> BusKind {
        self.kind
    }

    /// Puts `device` at `base..base+len`.
    pub fn insert(&self, base: u64, len: u64, device: SharedBusDevice) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len - 1).is_none() {
            return Err(BusError::InvalidRange { base, len });
        }
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        // The only candidates for an overlap are the last range starting at or
        // below the new end and every range starting inside the new one.
        let last = base + (len - 1);
        if let Some((&b, r)) = ranges.range(..=last).next_back() {
            if b + (r.len - 1) >= base {
                return Err(BusError::Overlap {
                    base,
                    len,
                    existing_base: b,
                    existing_len: r.len,
                });
            }
        }
        ranges.insert(base, Range { len, device });
        Ok(())
    }

    /// Removes the range starting exactly at `base`; returns whether one was there.
    pub fn remove(&self, base: u64) -> bool {
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        ranges.remove(&base).is_some()
    }

    /// The range holding `addr`: (base, device).
    fn lookup(&self, addr: u64) -> Option<(u64, SharedBusDevice)> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let (&base, range) = ranges.range(..=addr).next_back()?;
        if addr - base < range.len {
            Some((base, Arc::clone(&range.device)))
        } else {
            None
        }
    }

    /// Dispatches a read; returns false (and leaves `data` alone) when no
    /// device claims `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.lookup(addr) {
            Some((base, dev)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(base, addr - base, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false when no device claims `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.lookup(addr) {
            Some((base, dev)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(base, addr - base, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        last_write: Option<(u64, u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data.fill((offset & 0xff) as u8);
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.last_write = Some((base, offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_with_offsets() {
        let bus = Bus::new(BusKind::Io);
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b[0], 2);
        assert!(!bus.read(0x400, &mut b));
        assert!(!bus.read(0x3f7, &mut b));
        assert!(bus.write(0x3ff, &[7]));
        assert_eq!(dev.lock().unwrap().last_write, Some((0x3f8, 7, vec![7])));
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let bus = Bus::new(BusKind::Mmio);
        let d = || Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x1000, 0x1000, d()).unwrap();
        assert!(matches!(
            bus.insert(0x1fff, 1, d()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0x800, 0x801, d()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0, 0x10000, d()),
            Err(BusError::Overlap { .. })
        ));
        bus.insert(0x800, 0x800, d()).unwrap();
        bus.insert(0x2000, 1, d()).unwrap();
        assert!(matches!(
            bus.insert(5, 0, d()),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(u64::MAX, 2, d()),
            Err(BusError::InvalidRange { .. })
        ));
        bus.insert(u64::MAX, 1, d()).unwrap();
        assert!(bus.remove(0x1000));
        assert!(!bus.remove(0x1000));
        bus.insert(0x1000, 0x1000, d()).unwrap();
    }
}
