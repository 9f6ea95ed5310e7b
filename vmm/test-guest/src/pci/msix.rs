//! The MSI-X capability (PCI Local Bus 3.0, 6.8.2).

use super::Function;

/// Capability ID of MSI-X.
pub const CAP_ID: u8 = 0x11;

/// What the MSI-X capability says about the vector table and pending bits.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // cap_offset/function_masked: for the interrupt tests
pub struct Msix {
    /// Offset of the capability in configuration space.
    pub cap_offset: u8,
    /// Number of table entries (the register holds N - 1).
    pub table_size: u16,
    pub table_bar: u8,
    pub table_offset: u32,
    pub pba_bar: u8,
    pub pba_offset: u32,
    pub enabled: bool,
    pub function_masked: bool,
}

/// Reads the MSI-X capability of `function`, if it has one.
pub fn read(function: &Function) -> Option<Msix> {
    let cap = function.find_capability(CAP_ID)?;
    let bdf = function.bdf;
    let control = (bdf.read32(cap) >> 16) as u16;
    let table = bdf.read32(cap + 4);
    let pba = bdf.read32(cap + 8);
    Some(Msix {
        cap_offset: cap,
        table_size: (control & 0x7ff) + 1,
        table_bar: (table & 0x7) as u8,
        table_offset: table & !0x7,
        pba_bar: (pba & 0x7) as u8,
        pba_offset: pba & !0x7,
        enabled: control & (1 << 15) != 0,
        function_masked: control & (1 << 14) != 0,
    })
}
