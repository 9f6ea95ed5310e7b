//! Loading the kernel (ELF with a PVH note), the initramfs and the command
//! line into guest memory.

use std::fs::File;
use std::path::Path;

use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIGH_RAM_START};

pub const PAGE_SIZE: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedKernel {
    /// The PVH 32-bit entry point.
    pub entry: u64,
    /// First byte after the highest loaded segment (bss included).
    pub end: u64,
}

/// Loads an ELF kernel at its physical addresses; requires a PVH entry note.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, BootError> {
    let mut file = File::open(path).map_err(|e| BootError::Open(path.to_path_buf(), e))?;
    let result = Elf::load(mem, None, &mut file, Some(GuestAddress(HIGH_RAM_START)))
        .map_err(|e| BootError::Kernel(path.to_path_buf(), e))?;
    match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => Ok(LoadedKernel {
            entry: entry.0,
            end: result.kernel_end,
        }),
        _ => Err(BootError::NoPvhEntry(path.to_path_buf())),
    }
}

/// Places the initramfs page-aligned at the top of RAM below `low_ram_end`
/// (Linux takes it from anywhere it is told; the top keeps it clear of the
/// kernel and of early allocations). Returns (address, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    low_ram_end: u64,
    kernel_end: u64,
) -> Result<(u64, u64), BootError> {
    let mut file = File::open(path).map_err(|e| BootError::Open(path.to_path_buf(), e))?;
    let size = file
        .metadata()
        .map_err(|e| BootError::ReadInitrd(path.to_path_buf(), e.to_string()))?
        .len();
    let floor = kernel_end.next_multiple_of(PAGE_SIZE);
    let room = low_ram_end.saturating_sub(floor);
    if size > room {
        return Err(BootError::InitrdTooLarge { size, room });
    }
    let addr = (low_ram_end - size) & !(PAGE_SIZE - 1);
    let len = usize::try_from(size).map_err(|_| BootError::InitrdTooLarge { size, room })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|e| BootError::ReadInitrd(path.to_path_buf(), e.to_string()))?;
    Ok((addr, size))
}

/// Writes the NUL-terminated command line at `CMDLINE_START`; returns its address.
pub fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<u64, BootError> {
    if cmdline.len() >= CMDLINE_MAX_SIZE {
        return Err(BootError::CmdlineTooLong(cmdline.len()));
    }
    if cmdline.as_bytes().contains(&0) {
        return Err(BootError::CmdlineNul);
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|e| BootError::GuestMemory("command line", e))?;
    Ok(CMDLINE_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::elf_image;
    use std::io::Write;

    fn tmpfile(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("ivc-vmm-test-{}-{name}", std::process::id()));
        let mut f = File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
        p
    }

    #[test]
    fn loads_pvh_elf_at_its_physical_address() {
        let mem = crate::memory::create_guest_memory(4 << 20).unwrap();
        let code = [0xb0, 0x2a, 0xe6, 0xf4, 0xf4];
        let p = tmpfile("kernel", &elf_image::build(&code, 0x10_0000, true));
        let k = load_kernel(&mem, &p).unwrap();
        assert_eq!(
            k,
            LoadedKernel {
                entry: 0x10_0000,
                end: 0x10_0000 + code.len() as u64
            }
        );
        let mut back = [0u8; 5];
        mem.read_slice(&mut back, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(back, code);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn rejects_elf_without_pvh_note_and_garbage() {
        let mem = crate::memory::create_guest_memory(4 << 20).unwrap();
        let p = tmpfile("nonote", &elf_image::build(&[0xf4], 0x10_0000, false));
        assert!(matches!(
            load_kernel(&mem, &p),
            Err(BootError::NoPvhEntry(_))
        ));
        let g = tmpfile(
            "garbage",
            b"this is not an ELF file at all, but it is long enough to read a header from it......",
        );
        let e = load_kernel(&mem, &g).unwrap_err();
        assert!(matches!(e, BootError::Kernel(..)), "{e}");
        assert!(matches!(
            load_kernel(&mem, Path::new("/nonexistent/vmlinux")),
            Err(BootError::Open(..))
        ));
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(g).unwrap();
    }

    #[test]
    fn initrd_goes_to_the_top_of_low_ram() {
        let mem = crate::memory::create_guest_memory(8 << 20).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i & 0xff) as u8).collect();
        let p = tmpfile("initrd", &data);
        let (addr, size) = load_initrd(&mem, &p, 8 << 20, 0x20_0000).unwrap();
        assert_eq!(size, 10_000);
        assert_eq!(addr % PAGE_SIZE, 0);
        assert!(addr + size <= 8 << 20 && addr >= (8 << 20) - 3 * PAGE_SIZE);
        let mut back = vec![0u8; data.len()];
        mem.read_slice(&mut back, GuestAddress(addr)).unwrap();
        assert_eq!(back, data);
        assert!(matches!(
            load_initrd(&mem, &p, 8 << 20, (8 << 20) - 4096),
            Err(BootError::InitrdTooLarge { .. })
        ));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn cmdline_limits() {
        let mem = crate::memory::create_guest_memory(1 << 20).unwrap();
        assert_eq!(write_cmdline(&mem, "console=ttyS0").unwrap(), CMDLINE_START);
        let mut b = [0u8; 14];
        mem.read_slice(&mut b, GuestAddress(CMDLINE_START)).unwrap();
        assert_eq!(&b, b"console=ttyS0\0");
        assert!(matches!(
            write_cmdline(&mem, &"x".repeat(2048)),
            Err(BootError::CmdlineTooLong(2048))
        ));
        assert!(write_cmdline(&mem, &"x".repeat(2047)).is_ok());
        assert!(matches!(
            write_cmdline(&mem, "a\0b"),
            Err(BootError::CmdlineNul)
        ));
    }
}
