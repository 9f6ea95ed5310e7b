//! The MSI-X capability (PCI Local Bus 3.0, 6.8.2).

use super::Function;

/// Capability ID of MSI-X.
pub const CAP_ID: u8 = 0x11;

/// What the MSI-X capability says about the vector table and pending bits.
#[derive(Clone, Copy, Debug)]
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

/// Bytes per MSI-X table entry: address low, address high, data, control.
const ENTRY_SIZE: u64 = 16;
const CONTROL_ENABLE: u32 = 1 << 15;
const CONTROL_FUNCTION_MASK: u32 = 1 << 14;
const ENTRY_MASKED: u32 = 1;

impl Msix {
    /// Points table entry `entry` at local APIC `apic_id`, IDT vector
    /// `vector` (fixed delivery, edge), and unmasks it. `table` is the
    /// mapped address of BAR `table_bar` (see `Bar::map`).
    ///
    /// Returns false (and writes nothing) if `entry` is beyond the table.
    pub fn route(&self, table: u64, entry: u16, apic_id: u8, vector: u8) -> bool {
        if entry >= self.table_size {
            return false;
        }
        let base = (table + self.table_offset as u64 + entry as u64 * ENTRY_SIZE) as *mut u32;
        // SAFETY: `table` is the mapped BAR holding the table (caller's
        // contract) and `entry` is inside it (checked), so the four dwords are
        // MSI-X table registers. Masking first means the device never sees a
        // half-written entry unmasked.
        unsafe {
            let control = base.add(3).read_volatile();
            base.add(3).write_volatile(control | ENTRY_MASKED);
            base.write_volatile(crate::apic::BASE as u32 | (apic_id as u32) << 12);
            base.add(1).write_volatile(0);
            base.add(2).write_volatile(vector as u32);
            base.add(3).write_volatile(control & !ENTRY_MASKED);
        }
        true
    }

    /// Turns MSI-X on for `function` (and the function-wide mask off). INTx
    /// is not used by any test, so it is left as it is.
    pub fn enable(&self, function: &Function) {
        let dword = function.bdf.read32(self.cap_offset);
        let control = (dword >> 16 | CONTROL_ENABLE) & !CONTROL_FUNCTION_MASK;
        function
            .bdf
            .write32(self.cap_offset, (control << 16) | (dword & 0xffff));
    }
}
