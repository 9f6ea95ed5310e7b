//! Intel MultiProcessor Specification 1.4 tables.
//!
//! Without ACPI this is how Linux learns about the CPUs (local APIC IDs),
//! the IOAPIC and how ISA IRQs reach it. Everything (floating pointer
//! first, then the configuration table) sits in the last KiB of base memory
//! at `MPTABLE_START`, one of the areas Linux scans for "_MP_".

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::layout::{IOAPIC_ADDR, LAPIC_ADDR, MAX_VCPUS, MPTABLE_START};

pub const MPTABLE_MAX_SIZE: usize = 1024;
const SPEC_REV_1_4: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

pub const PCI_BUS_ID: u8 = 0;
pub const ISA_BUS_ID: u8 = 1;
/// ISA IRQs 0-15 go to IOAPIC pins of the same number, matching KVM's
/// default GSI routing (the in-kernel PIT raises GSI 0).
pub const NUM_ISA_IRQS: u8 = 16;

/// CPU signature (family 6) and feature flags (FPU, APIC) for processor entries.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// The MP table for `num_cpus` CPUs (APIC IDs 0..n, CPU 0 boots), to be
/// placed at guest address `base`. The IOAPIC gets APIC ID `num_cpus`.
pub fn build(num_cpus: u8, base: u64) -> Result<Vec<u8>, BootError> {
    if num_cpus == 0 || num_cpus > MAX_VCPUS {
        return Err(BootError::TooManyCpus(num_cpus));
    }
    let ioapic_id = num_cpus;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..num_cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    for (id, name) in [(PCI_BUS_ID, b"PCI   "), (ISA_BUS_ID, b"ISA   ")] {
        entries.extend_from_slice(&[ENTRY_BUS, id]);
        entries.extend_from_slice(name);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    // reason: IOAPIC_ADDR is the constant 0xfec0_0000, below 4 GiB.
    #[allow(clippy::cast_possible_truncation)]
    let ioapic_addr = IOAPIC_ADDR as u32;
    entries.extend_from_slice(&ioapic_addr.to_le_bytes());
    count += 1;
    for irq in 0..NUM_ISA_IRQS {
        // flags 0: polarity and trigger "conform to the bus" (ISA: high, edge).
        entries.extend_from_slice(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            ISA_BUS_ID,
            irq,
            ioapic_id,
            irq,
        ]);
        count += 1;
    }
    // LINT0 = ExtINT (the PIC, virtual wire mode), LINT1 = NMI, on all CPUs.
    entries.extend_from_slice(&[
        ENTRY_LOCAL_INTERRUPT,
        INT_TYPE_EXTINT,
        0,
        0,
        ISA_BUS_ID,
        0,
        0xff,
        0,
    ]);
    entries.extend_from_slice(&[
        ENTRY_LOCAL_INTERRUPT,
        INT_TYPE_NMI,
        0,
        0,
        ISA_BUS_ID,
        0,
        0xff,
        1,
    ]);
    count += 2;

    let table_addr = base + 16;
    let table_addr =
        u32::try_from(table_addr).map_err(|_| BootError::MpTableAddress(table_addr))?;
    let table_len =
        u16::try_from(44 + entries.len()).map_err(|_| BootError::TooManyCpus(num_cpus))?;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&table_len.to_le_bytes());
    header.push(SPEC_REV_1_4);
    header.push(0); // checksum, below
    header.extend_from_slice(b"IVC-VMM ");
    header.extend_from_slice(b"000000000001");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    // reason: LAPIC_ADDR is the constant 0xfee0_0000, below 4 GiB.
    #[allow(clippy::cast_possible_truncation)]
    let lapic_addr = LAPIC_ADDR as u32;
    header.extend_from_slice(&lapic_addr.to_le_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]); // extended table length/checksum, reserved
    let mut table = header;
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut out = Vec::with_capacity(16 + table.len());
    out.extend_from_slice(b"_MP_");
    out.extend_from_slice(&table_addr.to_le_bytes());
    out.extend_from_slice(&[1, SPEC_REV_1_4, 0, 0, 0, 0, 0, 0]);
    out[10] = checksum(&out[..16]);
    out.extend_from_slice(&table);
    if out.len() > MPTABLE_MAX_SIZE {
        return Err(BootError::TooManyCpus(num_cpus));
    }
    Ok(out)
}

/// Builds the table and writes it at `MPTABLE_START`.
pub fn write(mem: &GuestMemoryMmap, num_cpus: u8) -> Result<(), BootError> {
    let bytes = build(num_cpus, MPTABLE_START)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(|e| BootError::GuestMemory("MP table", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    /// Parses a table the way Linux's mpparse does and returns the entries.
    fn parse(bytes: &[u8], base: u64) -> Vec<&[u8]> {
        assert_eq!(&bytes[0..4], b"_MP_");
        assert_eq!(sum(&bytes[0..16]), 0, "floating pointer checksum");
        assert_eq!(bytes[8], 1, "length in 16-byte units");
        assert_eq!(bytes[9], 4, "MP spec 1.4");
        assert_eq!(bytes[11], 0, "feature1 0: a config table is present");
        let phys = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as u64;
        let t = &bytes[usize::try_from(phys - base).unwrap()..];
        assert_eq!(&t[0..4], b"PCMP");
        let len = u16::from_le_bytes([t[4], t[5]]) as usize;
        assert_eq!(len, t.len());
        assert_eq!(sum(&t[..len]), 0, "table checksum");
        assert_eq!(
            u32::from_le_bytes(t[36..40].try_into().unwrap()),
            0xfee0_0000
        );
        let count = u16::from_le_bytes([t[34], t[35]]);
        let mut entries = vec![];
        let mut off = 44;
        for _ in 0..count {
            let size = if t[off] == 0 { 20 } else { 8 };
            entries.push(&t[off..off + size]);
            off += size;
        }
        assert_eq!(off, len);
        entries
    }

    #[test]
    fn describes_cpus_ioapic_and_isa_irqs() {
        let bytes = build(4, MPTABLE_START).unwrap();
        let entries = parse(&bytes, MPTABLE_START);
        let cpus: Vec<_> = entries.iter().filter(|e| e[0] == 0).collect();
        assert_eq!(cpus.len(), 4);
        for (c, i) in cpus.iter().zip(0u8..) {
            assert_eq!(c[1], i, "APIC ID");
            assert_eq!(c[3] & CPU_ENABLED, CPU_ENABLED);
            assert_eq!(c[3] & CPU_BOOTSTRAP != 0, i == 0, "only CPU 0 is the BSP");
        }
        let buses: Vec<_> = entries
            .iter()
            .filter(|e| e[0] == 1)
            .map(|e| (e[1], &e[2..8]))
            .collect();
        assert_eq!(buses, vec![(0, &b"PCI   "[..]), (1, &b"ISA   "[..])]);
        let ioapic: Vec<_> = entries.iter().filter(|e| e[0] == 2).collect();
        assert_eq!(ioapic.len(), 1);
        assert_eq!(ioapic[0][1], 4, "IOAPIC ID follows the CPUs");
        assert_eq!(
            u32::from_le_bytes(ioapic[0][4..8].try_into().unwrap()),
            0xfec0_0000
        );
        let ints: Vec<_> = entries.iter().filter(|e| e[0] == 3).collect();
        assert_eq!(ints.len(), 16);
        for (e, i) in ints.iter().zip(0u8..) {
            assert_eq!((e[4], e[5], e[6], e[7]), (ISA_BUS_ID, i, 4, i));
        }
        let lints: Vec<_> = entries
            .iter()
            .filter(|e| e[0] == 4)
            .map(|e| (e[1], e[7]))
            .collect();
        assert_eq!(lints, vec![(INT_TYPE_EXTINT, 0), (INT_TYPE_NMI, 1)]);
    }

    #[test]
    fn max_cpus_fit_in_one_kib() {
        let bytes = build(MAX_VCPUS, MPTABLE_START).unwrap();
        assert!(bytes.len() <= 1024);
        assert_eq!(
            parse(&bytes, MPTABLE_START)
                .iter()
                .filter(|e| e[0] == 0)
                .count(),
            MAX_VCPUS as usize
        );
        assert!(build(0, MPTABLE_START).is_err());
        assert!(build(MAX_VCPUS + 1, MPTABLE_START).is_err());
    }

    #[test]
    fn written_to_guest_memory() {
        let mem = crate::memory::create_guest_memory(2 << 20).unwrap();
        write(&mem, 2).unwrap();
        let mut b = vec![0u8; build(2, MPTABLE_START).unwrap().len()];
        mem.read_slice(&mut b, GuestAddress(MPTABLE_START)).unwrap();
        assert_eq!(
            parse(&b, MPTABLE_START)
                .iter()
                .filter(|e| e[0] == 0)
                .count(),
            2
        );
    }

    #[test]
    fn table_above_4_gib_is_an_error() {
        assert!(matches!(
            build(1, 0xffff_fff0),
            Err(BootError::MpTableAddress(0x1_0000_0000))
        ));
    }
}
