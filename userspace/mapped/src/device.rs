//! The device file: the exclusive open of `/dev/ivcN`, its ioctls
//! (`IVC_IOC_INFO`, `IVC_IOC_DOORBELL`) and `poll(2)` as the way to sleep.
//! The numbers and the `ivc_info` layout are the driver's
//! (`guest-kmod/pipe.rs`, docs/driver.md "Mapping the ring").

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::endpoint::Waker;

/// `_IOR('v', 1, struct ivc_info)` (16 bytes).
pub const IVC_IOC_INFO: u32 = (2 << 30) | (16 << 16) | ((b'v' as u32) << 8) | 1;
/// `_IO('v', 2)`; the argument is the peer's ivshmem id.
pub const IVC_IOC_DOORBELL: u32 = ((b'v' as u32) << 8) | 2;
/// `ivc_info.flags`: the device has doorbells (`shm-irq`).
pub const INFO_DOORBELL: u32 = 1;

/// What `IVC_IOC_INFO` says about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Size of the shared memory (the length to map).
    pub mem_len: usize,
    /// Doorbells (`shm-irq`) rather than polling (`shm-poll`).
    pub doorbell: bool,
    /// Our ivshmem peer id (IVPosition), published for the peer to ring.
    pub my_id: u16,
}

impl Info {
    /// Decodes the driver's 16 little-endian bytes.
    pub fn decode(b: &[u8; 16]) -> io::Result<Self> {
        let (len, rest) = b.split_at(8);
        let (flags, id) = rest.split_at(4);
        let le64 = |s: &[u8]| s.try_into().map(u64::from_le_bytes).unwrap_or(0);
        let le32 = |s: &[u8]| s.try_into().map(u32::from_le_bytes).unwrap_or(0);
        let bad = || io::Error::from_raw_os_error(libc::EPROTO);
        Ok(Info {
            mem_len: usize::try_from(le64(len)).map_err(|_| bad())?,
            doorbell: le32(flags) & INFO_DOORBELL != 0,
            my_id: u16::try_from(le32(id)).map_err(|_| bad())?,
        })
    }
}

/// An exclusive open of a channel device: the kernel's own endpoint stays
/// detached, `read`/`write` on it fail with `EBUSY`, and the process runs
/// the ring through the mapping. Rings doorbells with `IVC_IOC_DOORBELL`
/// and sleeps in `poll(2)`.
#[derive(Debug)]
pub struct Device {
    file: File,
    info: Info,
}

impl Device {
    /// Opens `path` exclusively (`O_RDWR | O_EXCL`): `EBUSY` while another
    /// file has the device open, `ENODEV` for a device without shared
    /// memory (`ivc-pio`).
    pub fn open(path: &str) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
            .open(path)?;
        let info = info(&file)?;
        Ok(Self { file, info })
    }

    /// What the driver said about the device.
    pub fn info(&self) -> Info {
        self.info
    }

    /// The open file (for `mmap`).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// `IVC_IOC_INFO` on any open file of a channel device.
pub fn info(file: &File) -> io::Result<Info> {
    let mut b = [0u8; 16];
    // SAFETY: the driver writes exactly 16 bytes to the address, which is
    // our buffer of 16 bytes.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            IVC_IOC_INFO as libc::Ioctl,
            b.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Info::decode(&b)
}

impl Waker for Device {
    fn has_doorbell(&self) -> bool {
        self.info.doorbell
    }

    fn ring(&self, peer: u16) -> io::Result<()> {
        // SAFETY: an integer argument; the driver reads nothing from us.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                IVC_IOC_DOORBELL as libc::Ioctl,
                libc::c_ulong::from(peer),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn sleep(&self, timeout: Duration) -> io::Result<()> {
        let mut p = libc::pollfd {
            fd: self.file.as_fd().as_raw_fd(),
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if r > 0 && p.revents & libc::POLLERR != 0 {
            // The device was removed.
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok(())
    }
}
