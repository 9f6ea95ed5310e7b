//! The `ivc-shm` device's register map: QEMU's ivshmem (QEMU
//! `docs/specs/ivshmem-spec.rst`) plus one extension, shared by ivc-vmm's
//! device model, the guest driver and the bare-metal test guest.
//!
//! The channel itself lives in the shared memory of BAR2 (the `layout`
//! module); the registers only identify this side (`IVPosition`) and wake a
//! peer (`Doorbell`). The PCI identity is in the `pci_ids` module.
//!
//! All registers are 32 bits wide and little-endian; offsets are from the
//! start of their BAR. Only aligned 32-bit accesses are registers; the
//! device ignores any other access (reads return all ones or, at a reserved
//! offset, zero) and counts it as an error.
//!
//! BAR indices are `usize`, the index into a function's six BARs.
//!
//! This file is self-contained (it uses nothing from its sibling modules).

/// BAR index of the registers (32-bit MMIO, [`BAR0_SIZE`] bytes).
pub const BAR_REGISTERS: usize = 0;
/// BAR index of the MSI-X table and PBA (doorbell devices only; the MSI-X
/// capability in config space says where in the BAR they are).
pub const BAR_MSIX: usize = 1;
/// BAR index of the shared memory (64-bit prefetchable MMIO, the size of
/// the shared memory).
pub const BAR_SHM: usize = 2;
/// BAR index of ivc-shm's I/O doorbell (an extension QEMU's ivshmem lacks:
/// drivers detect it by BAR4 being an I/O BAR of [`IO_BAR_SIZE`] bytes).
pub const BAR_IO_DOORBELL: usize = 4;

/// Size of the register BAR in bytes; offsets past [`REG_DOORBELL`] are
/// reserved (read 0, writes ignored).
pub const BAR0_SIZE: u32 = 256;
/// Size of the I/O doorbell BAR in bytes.
pub const IO_BAR_SIZE: u32 = 16;

/// Interrupt mask, read/write. ivshmem's INTx mask (bit 0 enables the
/// interrupt); stored and read back, no effect without INTx.
pub const REG_INTR_MASK: u16 = 0x00;
/// Interrupt status: a read returns and clears it, a write sets it (INTx
/// only; the device never sets it without INTx).
pub const REG_INTR_STATUS: u16 = 0x04;
/// Our peer id from the rendezvous server (0..65535; 0 without a server),
/// read-only. It is the `peer` other sides put in their [`Doorbell`] writes
/// to interrupt us.
pub const REG_IV_POSITION: u16 = 0x08;
/// Doorbell, write-only: a [`Doorbell`] value interrupts `peer` on its
/// interrupt vector `vector`.
pub const REG_DOORBELL: u16 = 0x0c;

/// Offset in the I/O doorbell BAR of the second Doorbell register: a 32-bit
/// `OUT` of a [`Doorbell`] value there does what a write of [`REG_DOORBELL`]
/// does, through a port I/O exit instead of an MMIO one.
pub const IO_REG_DOORBELL: u16 = 0x00;

/// A Doorbell register value: `peer << 16 | vector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doorbell {
    /// The peer to interrupt (its [`REG_IV_POSITION`]).
    pub peer: u16,
    /// The peer's interrupt vector (an MSI-X vector of its device).
    pub vector: u16,
}

impl Doorbell {
    /// The doorbell a register value rings.
    pub const fn from_value(v: u32) -> Self {
        let [v0, v1, p0, p1] = v.to_le_bytes();
        Doorbell {
            peer: u16::from_le_bytes([p0, p1]),
            vector: u16::from_le_bytes([v0, v1]),
        }
    }

    /// The register value that rings this doorbell.
    pub const fn value(self) -> u32 {
        let [v0, v1] = self.vector.to_le_bytes();
        let [p0, p1] = self.peer.to_le_bytes();
        u32::from_le_bytes([v0, v1, p0, p1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbell_value_is_peer_high_vector_low() {
        let d = Doorbell { peer: 7, vector: 1 };
        assert_eq!(d.value(), 0x0007_0001);
        assert_eq!(Doorbell::from_value(0x0007_0001), d);
        let max = Doorbell {
            peer: 0xffff,
            vector: 0xfffe,
        };
        assert_eq!(max.value(), 0xffff_fffe);
        assert_eq!(Doorbell::from_value(max.value()), max);
    }

    #[test]
    fn registers_fit_their_bars() {
        for reg in [
            REG_INTR_MASK,
            REG_INTR_STATUS,
            REG_IV_POSITION,
            REG_DOORBELL,
        ] {
            assert_eq!(reg % 4, 0);
            assert!(u32::from(reg) + 4 <= BAR0_SIZE);
        }
        assert!(u32::from(IO_REG_DOORBELL) + 4 <= IO_BAR_SIZE);
    }
}
