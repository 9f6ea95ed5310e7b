//! The interface every PCI function implements.

use std::sync::{Arc, Mutex};

use super::config_space::ConfigSpace;

/// A PCI function on bus 0.
///
/// The bus owns config mechanism #1 and BAR placement: it applies guest
/// config writes to `config_mut()` (so the write mask decides what changes),
/// then calls `config_written`, and when the set of decoded BARs changes it
/// moves the BAR's range on the I/O or MMIO bus and calls `bar_moved`.
/// Accesses inside a decoded BAR arrive at `read_bar`/`write_bar` with the
/// offset into the BAR. Any size or offset the guest produces can arrive:
/// log and ignore what the device does not define (reads return all ones).
pub trait PciDevice: Send {
    /// Short name for logs, e.g. "ivc-shm".
    fn name(&self) -> &str;

    fn config(&self) -> &ConfigSpace;

    fn config_mut(&mut self) -> &mut ConfigSpace;

    /// Called after a guest write of `len` bytes at `offset` has been applied
    /// to the config space. Devices with MSI-X forward it to
    /// `Msix::config_written`.
    fn config_written(&mut self, _offset: usize, _len: usize) {}

    /// Guest read inside BAR `bar`.
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        crate::guest_log!(
            warn,
            "{}: read of BAR{bar} offset {offset:#x} not handled",
            self.name()
        );
        data.fill(0xff);
    }

    /// Guest write inside BAR `bar`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        crate::guest_log!(
            warn,
            "{}: write of BAR{bar} offset {offset:#x} size {} not handled",
            self.name(),
            data.len()
        );
    }

    /// BAR `bar` stopped decoding at `old` and/or started at `new` (either
    /// side `None` when not decoded). Devices whose BAR is backed by a KVM
    /// memory slot or carries an ioeventfd move it here.
    fn bar_moved(&mut self, _bar: usize, _old: Option<u64>, _new: Option<u64>) {}
}

pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;
