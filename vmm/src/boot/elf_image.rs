//! Builds minimal PVH ELF images around raw 32-bit code.
//!
//! Tests use these to boot hand-assembled guests (write a port, halt,
//! reset) without a toolchain for bare-metal targets; the images follow the
//! same PVH contract as vmlinux and ivc-test-guest.

const EHDR_SIZE: u16 = 64;
const PHDR_SIZE: u16 = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// An ELF64 x86-64 executable whose single PT_LOAD puts `code` at
/// `load_addr` (also the entry); with `pvh_note`, a PT_NOTE carries the PVH
/// entry note pointing at `load_addr`.
pub fn build(code: &[u8], load_addr: u32, pvh_note: bool) -> Vec<u8> {
    let phnum: u16 = if pvh_note { 2 } else { 1 };
    let note_off = usize::from(EHDR_SIZE) + usize::from(PHDR_SIZE) * usize::from(phnum);
    let note_len = if pvh_note { 12 + 4 + 4 } else { 0 };
    let code_off = (note_off + note_len).next_multiple_of(16);

    let mut b = Vec::with_capacity(code_off + code.len());
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&u64::from(load_addr).to_le_bytes()); // e_entry
    b.extend_from_slice(&u64::from(EHDR_SIZE).to_le_bytes()); // e_phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&EHDR_SIZE.to_le_bytes());
    b.extend_from_slice(&PHDR_SIZE.to_le_bytes());
    b.extend_from_slice(&phnum.to_le_bytes());
    b.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx

    let phdr =
        |b: &mut Vec<u8>, kind: u32, flags: u32, off: usize, addr: u64, len: usize, align: u64| {
            b.extend_from_slice(&kind.to_le_bytes());
            b.extend_from_slice(&flags.to_le_bytes());
            b.extend_from_slice(&(off as u64).to_le_bytes());
            b.extend_from_slice(&addr.to_le_bytes()); // vaddr
            b.extend_from_slice(&addr.to_le_bytes()); // paddr
            b.extend_from_slice(&(len as u64).to_le_bytes()); // filesz
            b.extend_from_slice(&(len as u64).to_le_bytes()); // memsz
            b.extend_from_slice(&align.to_le_bytes());
        };
    phdr(
        &mut b,
        PT_LOAD,
        7,
        code_off,
        u64::from(load_addr),
        code.len(),
        0x1000,
    );
    if pvh_note {
        phdr(&mut b, PT_NOTE, 4, note_off, 0, note_len, 4);
        b.extend_from_slice(&4u32.to_le_bytes()); // namesz
        b.extend_from_slice(&4u32.to_le_bytes()); // descsz
        b.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        b.extend_from_slice(b"Xen\0");
        b.extend_from_slice(&load_addr.to_le_bytes());
    }
    b.resize(code_off, 0);
    b.extend_from_slice(code);
    b
}
