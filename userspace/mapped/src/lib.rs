//! `ivc-mapped`: the zero-system-call path of an ivc channel for guest user
//! space.
//!
//! A process opens `/dev/ivcN` exclusively (`O_EXCL`), maps its shared
//! memory (`mmap`, the ivshmem BAR 2 that holds the rings) and runs the
//! channel endpoint itself — the same `ivc_abi::Endpoint` the driver runs,
//! over [`Mapping`] instead of the kernel's BAR mapping. Reads and writes
//! are then plain memory accesses: no system call while the peer keeps up.
//! Waiting spins ([`Wait::Spin`]) or sleeps in `poll(2)` on the device
//! after arming the ring's wake-up flag ([`Wait::Sleep`]); with doorbells
//! (`shm-irq`) the process rings the peer with one small ioctl, and only
//! when the peer asked for it. The other side may use the mapping too or
//! plain `read`/`write` on its own `/dev/ivcN`: it is the same ring and the
//! same protocol.
//!
//! ```no_run
//! use ivc_mapped::{open, Wait};
//! let mut ch = open("/dev/ivc0")?;
//! ch.write_all(b"ping", Wait::Spin)?;
//! let mut buf = [0u8; 4];
//! let n = ch.read(&mut buf, Wait::Sleep(std::time::Duration::from_micros(50)))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! While the process holds the exclusive file, the driver's own endpoint
//! stays detached: other opens of the device fail with `EBUSY`, and so do
//! `read`/`write` on the exclusive file. The shared memory is untrusted
//! here as in the kernel: the endpoint validates every word it reads, and a
//! violation (another VM's, or this process scribbling over its own
//! mapping) fails every later call with `EIO`; it cannot reach the kernel,
//! which does not touch the ring in this mode. See docs/driver.md,
//! "Mapping the ring".
//!
//! The process does what the driver's poller does for a file: the heartbeat
//! the peer watches, the peer's liveness, the connection handshake. Any
//! call into the endpoint (and every wait) does it, at most every 100 ms;
//! a process that stops calling for longer than the peer's
//! `peer_timeout_ms` (5 s by default) is taken for dead by the peer.

mod device;
mod endpoint;
mod mapping;

pub use device::{info, Device, Info, INFO_DOORBELL, IVC_IOC_DOORBELL, IVC_IOC_INFO};
pub use endpoint::{errno, Direction, MappedEndpoint, Wait, Waker, PEER_TIMEOUT};
pub use ivc_abi::PeerState;
pub use mapping::Mapping;

use std::io;
use std::os::fd::AsFd;

/// An endpoint over a device's mapped ring.
pub type DeviceEndpoint = MappedEndpoint<Mapping, Device>;

/// Opens `path` (e.g. `/dev/ivc0`) exclusively, maps its ring and joins the
/// channel. Errors: `EBUSY` (the device is open elsewhere, or both slots
/// are held by live sides), `ENODEV` (`ivc-pio`: no shared memory to map),
/// and those of the attach ([`errno`]).
pub fn open(path: &str) -> io::Result<DeviceEndpoint> {
    let dev = Device::open(path)?;
    let info = dev.info();
    let mem = Mapping::map_fd(dev.file().as_fd(), info.mem_len)?;
    let id = info.doorbell.then_some(info.my_id);
    MappedEndpoint::attach(mem, dev, id)
}
