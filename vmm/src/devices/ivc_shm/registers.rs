//! BAR0 of `ivc-shm`: ivshmem's four 32-bit registers.
//!
//! | offset | register | access |
//! | --- | --- | --- |
//! | 0x00 | IntrMask | read/write (INTx only; kept, no effect: we have no INTx) |
//! | 0x04 | IntrStatus | read clears, write sets (INTx only, as above) |
//! | 0x08 | IVPosition | read-only: our peer id (0 without a server) |
//! | 0x0c | Doorbell | write-only: `peer << 16 \| vector` |
//!
//! Only aligned 32-bit accesses are defined (QEMU's ivshmem has the same
//! access size). The rest of the 256-byte BAR is reserved and reads 0, like
//! QEMU; writes there are ignored. A wrong size or alignment is ignored and
//! reads all ones. Everything that is not a plain register access is
//! reported as [`AccessError`] for the device to log.

use std::fmt;

pub const BAR0_SIZE: u64 = 256;
pub const INTR_MASK: u64 = 0x00;
pub const INTR_STATUS: u64 = 0x04;
pub const IV_POSITION: u64 = 0x08;
pub const DOORBELL: u64 = 0x0c;

/// BAR4 (`shm-irq` only, an extension QEMU's ivshmem lacks): 16 bytes of
/// I/O ports; a 32-bit `OUT` at offset 0 is a Doorbell write with the same
/// value format. Drivers detect it by BAR4 being an I/O BAR.
pub const IO_BAR_SIZE: u64 = 16;
pub const IO_DOORBELL: u64 = 0;

/// A write to the I/O doorbell BAR: `Ok(Some(..))` for a 32-bit write at
/// offset 0 (it reaches the VMM only when no ioeventfd matched); reads and
/// any other access are bad.
pub fn io_doorbell_write(offset: u64, data: &[u8]) -> Result<DoorbellWrite, AccessError> {
    if offset >= IO_BAR_SIZE {
        return Err(AccessError::OutOfRange { offset });
    }
    if offset != IO_DOORBELL {
        return Err(AccessError::Reserved { offset });
    }
    let b: [u8; 4] = data.try_into().map_err(|_| AccessError::BadSize {
        offset,
        len: data.len(),
    })?;
    Ok(DoorbellWrite::from_value(u32::from_le_bytes(b)))
}

/// A decoded Doorbell write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorbellWrite {
    pub peer: u16,
    pub vector: u16,
}

impl DoorbellWrite {
    pub fn from_value(v: u32) -> Self {
        DoorbellWrite {
            peer: (v >> 16) as u16,
            vector: (v & 0xffff) as u16,
        }
    }

    pub fn value(self) -> u32 {
        (u32::from(self.peer) << 16) | u32::from(self.vector)
    }
}

/// A guest access the registers do not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    /// Not a 4-byte access at a 4-byte aligned offset.
    BadSize { offset: u64, len: usize },
    /// Outside the BAR (cannot come from the bus; checked anyway).
    OutOfRange { offset: u64 },
    /// A reserved offset.
    Reserved { offset: u64 },
    /// Write to IVPosition or read of Doorbell.
    WrongDirection { offset: u64, write: bool },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AccessError::BadSize { offset, len } => {
                write!(
                    f,
                    "{len}-byte access at {offset:#x} (only aligned 4-byte accesses)"
                )
            }
            AccessError::OutOfRange { offset } => write!(f, "offset {offset:#x} outside BAR0"),
            AccessError::Reserved { offset } => write!(f, "reserved offset {offset:#x}"),
            AccessError::WrongDirection { offset, write } => write!(
                f,
                "{} of {} register at {offset:#x}",
                if write { "write" } else { "read" },
                if write { "read-only" } else { "write-only" }
            ),
        }
    }
}

/// The register state.
#[derive(Debug, Clone, Default)]
pub struct Registers {
    intr_mask: u32,
    intr_status: u32,
    iv_position: u32,
}

fn check(offset: u64, len: usize) -> Result<(), AccessError> {
    if offset >= BAR0_SIZE {
        return Err(AccessError::OutOfRange { offset });
    }
    if len != 4 || offset % 4 != 0 {
        return Err(AccessError::BadSize { offset, len });
    }
    Ok(())
}

impl Registers {
    pub fn new(iv_position: u32) -> Self {
        Registers {
            iv_position,
            ..Default::default()
        }
    }

    pub fn iv_position(&self) -> u32 {
        self.iv_position
    }

    /// A guest read. On error `data` is all ones (bad size) or zeros
    /// (reserved offset, write-only register).
    pub fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        if let Err(e) = check(offset, data.len()) {
            data.fill(0xff);
            return Err(e);
        }
        let v = match offset {
            INTR_MASK => self.intr_mask,
            // Read-to-clear, as in ivshmem.
            INTR_STATUS => std::mem::take(&mut self.intr_status),
            IV_POSITION => self.iv_position,
            DOORBELL => {
                data.fill(0);
                return Err(AccessError::WrongDirection {
                    offset,
                    write: false,
                });
            }
            _ => {
                data.fill(0);
                return Err(AccessError::Reserved { offset });
            }
        };
        data.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    /// A guest write; `Ok(Some(..))` for a Doorbell write the device must
    /// deliver (it arrives here only when no ioeventfd matched).
    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
    ) -> Result<Option<DoorbellWrite>, AccessError> {
        check(offset, data.len())?;
        let mut b = [0u8; 4];
        b.copy_from_slice(data);
        let v = u32::from_le_bytes(b);
        match offset {
            INTR_MASK => self.intr_mask = v,
            INTR_STATUS => self.intr_status = v,
            IV_POSITION => {
                return Err(AccessError::WrongDirection {
                    offset,
                    write: true,
                })
            }
            DOORBELL => return Ok(Some(DoorbellWrite::from_value(v))),
            _ => return Err(AccessError::Reserved { offset }),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(r: &mut Registers, off: u64) -> Result<u32, AccessError> {
        let mut b = [0u8; 4];
        r.read(off, &mut b).map(|()| u32::from_le_bytes(b))
    }

    #[test]
    fn registers_behave_like_ivshmem() {
        let mut r = Registers::new(5);
        assert_eq!(rd(&mut r, IV_POSITION), Ok(5));
        r.write(INTR_MASK, &0xffff_ffffu32.to_le_bytes()).unwrap();
        assert_eq!(rd(&mut r, INTR_MASK), Ok(0xffff_ffff));
        r.write(INTR_STATUS, &3u32.to_le_bytes()).unwrap();
        assert_eq!(rd(&mut r, INTR_STATUS), Ok(3));
        assert_eq!(rd(&mut r, INTR_STATUS), Ok(0), "read clears");
        assert_eq!(
            r.write(DOORBELL, &0x0007_0001u32.to_le_bytes()),
            Ok(Some(DoorbellWrite { peer: 7, vector: 1 }))
        );
        assert_eq!(DoorbellWrite { peer: 7, vector: 1 }.value(), 0x0007_0001);
        assert!(r.write(IV_POSITION, &[0; 4]).is_err());
        assert_eq!(rd(&mut r, IV_POSITION), Ok(5), "IVPosition is read-only");
    }

    #[test]
    fn io_doorbell() {
        assert_eq!(
            io_doorbell_write(0, &0x0002_0001u32.to_le_bytes()),
            Ok(DoorbellWrite { peer: 2, vector: 1 })
        );
        assert!(io_doorbell_write(0, &[1]).is_err());
        assert!(io_doorbell_write(0, &[0; 4096]).is_err());
        assert!(io_doorbell_write(4, &[0; 4]).is_err());
        assert!(io_doorbell_write(16, &[0; 4]).is_err());
    }

    #[test]
    fn every_offset_and_size_is_handled() {
        let mut r = Registers::new(1);
        for off in 0..BAR0_SIZE + 8 {
            for len in [1usize, 2, 3, 4, 8, 4096] {
                let mut buf = vec![0u8; len];
                let res = r.read(off, &mut buf);
                let good = len == 4 && off % 4 == 0 && off <= DOORBELL && off != DOORBELL;
                assert_eq!(res.is_ok(), good, "read off={off} len={len}");
                if len != 4 || off % 4 != 0 || off >= BAR0_SIZE {
                    assert!(buf.iter().all(|&b| b == 0xff));
                }
                let w = r.write(off, &vec![0xa5; len]);
                let good = len == 4 && off % 4 == 0 && off <= DOORBELL && off != IV_POSITION;
                assert_eq!(w.is_ok(), good, "write off={off} len={len}");
            }
        }
        assert_eq!(r.iv_position(), 1);
    }
}
