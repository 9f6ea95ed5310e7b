//! BAR0 of `ivc-shm`: the behaviour of ivshmem's four 32-bit registers
//! (their offsets, the Doorbell value and the I/O doorbell are the ABI's,
//! `ivc_abi::ivshmem`).
//!
//! | register | access |
//! | --- | --- |
//! | IntrMask | read/write (INTx only; kept, no effect: we have no INTx) |
//! | IntrStatus | read clears, write sets (INTx only, as above) |
//! | IVPosition | read-only: our peer id (0 without a server) |
//! | Doorbell | write-only: a [`Doorbell`] value |
//!
//! Only aligned 32-bit accesses are defined (QEMU's ivshmem has the same
//! access size). The rest of the 256-byte BAR is reserved and reads 0, like
//! QEMU; writes there are ignored. A wrong size or alignment is ignored and
//! reads all ones. Everything that is not a plain register access is
//! reported as [`AccessError`] for the device to log.

use std::fmt;

use ivc_abi::ivshmem::{
    Doorbell, BAR0_SIZE, IO_BAR_SIZE, IO_REG_DOORBELL, REG_DOORBELL, REG_INTR_MASK,
    REG_INTR_STATUS, REG_IV_POSITION,
};

/// A write to the I/O doorbell BAR (BAR4, `shm-irq` only): `Ok(..)` for a
/// 32-bit write at offset 0 (it reaches the VMM only when no ioeventfd
/// matched); reads and any other access are bad.
pub fn io_doorbell_write(offset: u64, data: &[u8]) -> Result<Doorbell, AccessError> {
    if offset >= u64::from(IO_BAR_SIZE) {
        return Err(AccessError::OutOfRange { offset });
    }
    if offset != u64::from(IO_REG_DOORBELL) {
        return Err(AccessError::Reserved { offset });
    }
    let b: [u8; 4] = data.try_into().map_err(|_| AccessError::BadSize {
        offset,
        len: data.len(),
    })?;
    Ok(Doorbell::from_value(u32::from_le_bytes(b)))
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

/// The register offset of an access, if it is inside BAR0 and an aligned
/// 32-bit one.
fn check(offset: u64, len: usize) -> Result<u16, AccessError> {
    let reg = u16::try_from(offset)
        .ok()
        .filter(|&r| u32::from(r) < BAR0_SIZE)
        .ok_or(AccessError::OutOfRange { offset })?;
    if len != 4 || reg % 4 != 0 {
        return Err(AccessError::BadSize { offset, len });
    }
    Ok(reg)
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
        let reg = match check(offset, data.len()) {
            Ok(reg) => reg,
            Err(e) => {
                data.fill(0xff);
                return Err(e);
            }
        };
        let v = match reg {
            REG_INTR_MASK => self.intr_mask,
            // Read-to-clear, as in ivshmem.
            REG_INTR_STATUS => std::mem::take(&mut self.intr_status),
            REG_IV_POSITION => self.iv_position,
            REG_DOORBELL => {
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
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<Option<Doorbell>, AccessError> {
        let reg = check(offset, data.len())?;
        let mut b = [0u8; 4];
        b.copy_from_slice(data);
        let v = u32::from_le_bytes(b);
        match reg {
            REG_INTR_MASK => self.intr_mask = v,
            REG_INTR_STATUS => self.intr_status = v,
            REG_IV_POSITION => {
                return Err(AccessError::WrongDirection {
                    offset,
                    write: true,
                })
            }
            REG_DOORBELL => return Ok(Some(Doorbell::from_value(v))),
            _ => return Err(AccessError::Reserved { offset }),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The register offsets as the bus hands them to the device.
    const INTR_MASK: u64 = REG_INTR_MASK as u64;
    const INTR_STATUS: u64 = REG_INTR_STATUS as u64;
    const IV_POSITION: u64 = REG_IV_POSITION as u64;
    const DOORBELL: u64 = REG_DOORBELL as u64;

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
            Ok(Some(Doorbell { peer: 7, vector: 1 }))
        );
        assert_eq!(Doorbell { peer: 7, vector: 1 }.value(), 0x0007_0001);
        assert!(r.write(IV_POSITION, &[0; 4]).is_err());
        assert_eq!(rd(&mut r, IV_POSITION), Ok(5), "IVPosition is read-only");
    }

    #[test]
    fn io_doorbell() {
        assert_eq!(
            io_doorbell_write(0, &0x0002_0001u32.to_le_bytes()),
            Ok(Doorbell { peer: 2, vector: 1 })
        );
        assert!(io_doorbell_write(0, &[1]).is_err());
        assert!(io_doorbell_write(0, &[0; 4096]).is_err());
        assert!(io_doorbell_write(4, &[0; 4]).is_err());
        assert!(io_doorbell_write(16, &[0; 4]).is_err());
    }

    #[test]
    fn every_offset_and_size_is_handled() {
        let mut r = Registers::new(1);
        for off in 0..u64::from(BAR0_SIZE) + 8 {
            for len in [1usize, 2, 3, 4, 8, 4096] {
                let mut buf = vec![0u8; len];
                let res = r.read(off, &mut buf);
                let good = len == 4 && off % 4 == 0 && off <= DOORBELL && off != DOORBELL;
                assert_eq!(res.is_ok(), good, "read off={off} len={len}");
                if len != 4 || off % 4 != 0 || off >= u64::from(BAR0_SIZE) {
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
