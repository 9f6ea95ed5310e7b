//! Everything the boot CPU finds in memory at its first instruction: the
//! kernel (in the protocol its file speaks), the initramfs, the command
//! line, the boot information of that protocol, the MP table and the GDT.

use std::path::Path;

use vm_memory::GuestMemoryMmap;

use super::format::{self, KernelFormat};
use super::{bzimage, e820, gdt, loader, mptable, pvh, BootEntry, BootError, BootInfo};
use crate::layout;
use crate::memory;

/// What to boot.
#[derive(Debug, Clone, Copy)]
pub struct GuestImage<'a> {
    /// A PVH ELF (vmlinux, the test guest) or a bzImage.
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
    pub mem_size: u64,
    pub cpus: u8,
}

/// Loads `image` into `mem` and returns where the boot CPU starts.
pub fn load(mem: &GuestMemoryMmap, image: &GuestImage) -> Result<BootEntry, BootError> {
    let low_ram_end = memory::low_ram_end(image.mem_size);
    let map = e820::memory_map(image.mem_size);
    let (entry, info) = match format::detect(image.kernel)? {
        KernelFormat::Elf => {
            let kernel = loader::load_kernel(mem, image.kernel)?;
            let initrd = load_initrd(mem, image, low_ram_end, kernel.end)?;
            let cmdline = loader::write_cmdline(mem, image.cmdline)?;
            let start_info = pvh::write_start_info(mem, &map, cmdline, initrd)?;
            (kernel.entry, BootInfo::Pvh { start_info })
        }
        KernelFormat::BzImage => {
            let kernel = bzimage::load(mem, image.kernel, low_ram_end)?;
            let ceiling = low_ram_end.min(kernel.initrd_ceiling);
            let initrd = load_initrd(mem, image, ceiling, kernel.end)?;
            let cmdline = loader::write_cmdline(mem, image.cmdline)?;
            let params =
                bzimage::zero_page(&kernel.header, (cmdline, image.cmdline.len()), initrd, &map)?;
            let zero_page = bzimage::write_zero_page(mem, &params)?;
            (kernel.entry, BootInfo::Linux { zero_page })
        }
    };
    mptable::write(mem, image.cpus)?;
    let gdt_limit = gdt::write(mem, layout::BOOT_GDT_START)?;
    Ok(BootEntry {
        entry,
        info,
        gdt_base: layout::BOOT_GDT_START,
        gdt_limit,
    })
}

fn load_initrd(
    mem: &GuestMemoryMmap,
    image: &GuestImage,
    ceiling: u64,
    kernel_end: u64,
) -> Result<Option<(u64, u64)>, BootError> {
    image
        .initrd
        .map(|p| loader::load_initrd(mem, p, ceiling, kernel_end))
        .transpose()
}
