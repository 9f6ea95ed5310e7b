//! PCI: config space, MSI-X, the bus and its devices.

pub mod bar_allocator;
pub mod bus;
pub mod config_space;
pub mod device;
pub mod host_bridge;
pub mod msix;

pub use bar_allocator::BarAllocator;
pub use bus::{PciBus, PciConfigIo};
pub use config_space::{BarKind, ConfigSpace, PciIds};
pub use device::{PciDevice, SharedPciDevice};
pub use host_bridge::HostBridge;
pub use msix::Msix;
