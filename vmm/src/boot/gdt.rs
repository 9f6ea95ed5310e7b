//! The flat 32-bit GDT for the PVH entry and the matching KVM segment
//! registers. PVH wants CS a 4 GiB execute/read segment and the data
//! segments 4 GiB read/write, all with base 0; the selectors are ours.

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::BootError;

/// Access byte + flags nibble, in descriptor bit order (flags << 12 | access).
pub const CODE32_FLAGS: u16 = 0xc09b; // G, D/B, present, code, execute/read, accessed
pub const DATA_FLAGS: u16 = 0xc093; // G, D/B, present, data, read/write, accessed
pub const TSS32_FLAGS: u16 = 0x008b; // present, 32-bit busy TSS

pub const CODE_SELECTOR: u16 = 0x10;
pub const DATA_SELECTOR: u16 = 0x18;
pub const TSS_SELECTOR: u16 = 0x20;

/// The boot GDT: null, unused, code, data, TSS.
pub const BOOT_GDT: [u64; 5] = [
    0,
    0,
    descriptor(CODE32_FLAGS, 0, 0xfffff),
    descriptor(DATA_FLAGS, 0, 0xfffff),
    descriptor(TSS32_FLAGS, 0, 0x67),
];

/// Encodes a segment descriptor (limit is 20 bits, in pages when G is set).
pub const fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The segment register KVM should hold for descriptor `d` loaded with `selector`.
pub fn segment(d: u64, selector: u16) -> kvm_segment {
    let base = ((d >> 16) & 0xff_ffff) | ((d >> 32) & 0xff00_0000);
    let raw_limit = (d & 0xffff) | ((d >> 32) & 0xf_0000);
    let g = ((d >> 55) & 1) as u8;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    // reason: raw_limit has 20 bits, so even scaled by 4 KiB pages
    // (<< 12 | 0xfff) the limit is at most 0xffff_ffff.
    #[allow(clippy::cast_possible_truncation)]
    let limit = limit as u32;
    kvm_segment {
        base,
        limit,
        selector,
        type_: ((d >> 40) & 0xf) as u8,
        present: ((d >> 47) & 1) as u8,
        dpl: ((d >> 45) & 3) as u8,
        db: ((d >> 54) & 1) as u8,
        s: ((d >> 44) & 1) as u8,
        l: ((d >> 53) & 1) as u8,
        g,
        avl: ((d >> 52) & 1) as u8,
        unusable: if (d >> 47) & 1 == 1 { 0 } else { 1 },
        padding: 0,
    }
}

/// Writes `BOOT_GDT` at `addr`; returns the GDTR limit.
pub fn write(mem: &GuestMemoryMmap, addr: u64) -> Result<u16, BootError> {
    let mut bytes = Vec::with_capacity(BOOT_GDT.len() * 8);
    for d in BOOT_GDT {
        bytes.extend_from_slice(&d.to_le_bytes());
    }
    mem.write_slice(&bytes, GuestAddress(addr))
        .map_err(|e| BootError::GuestMemory("GDT", e))?;
    // reason: BOOT_GDT is a fixed array of a few descriptors, 8 bytes each.
    #[allow(clippy::cast_possible_truncation)]
    Ok((bytes.len() - 1) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_descriptor_encodings() {
        assert_eq!(BOOT_GDT[2], 0x00cf_9b00_0000_ffff);
        assert_eq!(BOOT_GDT[3], 0x00cf_9300_0000_ffff);
        assert_eq!(BOOT_GDT[4], 0x0000_8b00_0000_0067);
        assert_eq!(
            descriptor(DATA_FLAGS, 0x1234_5678, 0xabcde),
            0x12ca_9334_5678_bcde
        );
    }

    #[test]
    fn flat_code_segment() {
        let cs = segment(BOOT_GDT[2], CODE_SELECTOR);
        assert_eq!((cs.base, cs.limit, cs.selector), (0, 0xffff_ffff, 0x10));
        assert_eq!(
            (cs.type_, cs.present, cs.s, cs.db, cs.g, cs.l, cs.dpl),
            (0xb, 1, 1, 1, 1, 0, 0)
        );
        assert_eq!(cs.unusable, 0);
    }

    #[test]
    fn tss_and_null_segments() {
        let tr = segment(BOOT_GDT[4], TSS_SELECTOR);
        assert_eq!((tr.limit, tr.type_, tr.s, tr.g), (0x67, 0xb, 0, 0));
        let null = segment(0, 0);
        assert_eq!(null.unusable, 1);
        let ds = segment(descriptor(DATA_FLAGS, 0x1234_5678, 0xabcde), DATA_SELECTOR);
        assert_eq!((ds.base, ds.limit), (0x1234_5678, 0xabcd_efff));
    }

    #[test]
    fn written_gdt_reads_back() {
        let mem = crate::memory::create_guest_memory(1 << 20).unwrap();
        assert_eq!(write(&mem, 0x500).unwrap(), 39);
        let v: u64 = mem.read_obj(GuestAddress(0x500 + 16)).unwrap();
        assert_eq!(v, BOOT_GDT[2]);
    }
}
