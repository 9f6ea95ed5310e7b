//! Local APIC LVT setup: LINT0 = ExtINT (the 8259 PIC, virtual-wire mode),
//! LINT1 = NMI, as a BIOS leaves them and as the MP table says.

use kvm_bindings::kvm_lapic_state;

pub const APIC_LVT_LINT0: usize = 0x350;
pub const APIC_LVT_LINT1: usize = 0x360;
pub const APIC_MODE_NMI: u32 = 0x4;
pub const APIC_MODE_EXTINT: u32 = 0x7;

/// The bits of one `regs` byte (`c_char`, signed on x86) as a u8.
fn reg_byte(c: std::os::raw::c_char) -> u8 {
    let [b] = c.to_ne_bytes();
    b
}

pub(crate) fn get_reg(l: &kvm_lapic_state, off: usize) -> u32 {
    let b = &l.regs[off..off + 4];
    u32::from_le_bytes([
        reg_byte(b[0]),
        reg_byte(b[1]),
        reg_byte(b[2]),
        reg_byte(b[3]),
    ])
}

fn set_reg(l: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, byte) in v.to_le_bytes().into_iter().enumerate() {
        l.regs[off + i] = byte as _;
    }
}

/// Sets the delivery mode (bits 10:8) of an LVT entry, keeping the rest.
fn set_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

pub fn set_lint_modes(l: &mut kvm_lapic_state) {
    let lint0 = get_reg(l, APIC_LVT_LINT0);
    set_reg(
        l,
        APIC_LVT_LINT0,
        set_delivery_mode(lint0, APIC_MODE_EXTINT),
    );
    let lint1 = get_reg(l, APIC_LVT_LINT1);
    set_reg(l, APIC_LVT_LINT1, set_delivery_mode(lint1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_modes() {
        let mut l = kvm_lapic_state::default();
        set_reg(&mut l, APIC_LVT_LINT0, 0x0001_0000); // masked
        set_lint_modes(&mut l);
        assert_eq!(get_reg(&l, APIC_LVT_LINT0), 0x0001_0700);
        assert_eq!(get_reg(&l, APIC_LVT_LINT1), 0x400);
    }
}
