//! Putting a guest in memory and describing the machine to it: kernel
//! format detection, kernel (PVH ELF or bzImage) and initramfs loading,
//! command line, memory map, PVH start info or Linux zero page, MP table,
//! boot GDT.

pub mod bzimage;
pub mod e820;
pub mod elf_image;
pub mod format;
pub mod gdt;
pub mod guest;
pub mod loader;
pub mod mptable;
pub mod pvh;

use std::path::PathBuf;

/// How the boot CPU hands the kernel its boot information: both protocols
/// enter in 32-bit protected mode with paging off; they differ in which
/// register points at what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfo {
    /// PVH: EBX = address of the `hvm_start_info`.
    Pvh { start_info: u64 },
    /// Linux 32-bit boot protocol: ESI = address of the `boot_params`
    /// (zero page); EBX, EBP and EDI must be 0.
    Linux { zero_page: u64 },
}

/// Where and how the boot CPU starts.
#[derive(Debug, Clone, Copy)]
pub struct BootEntry {
    /// The 32-bit entry point (EIP).
    pub entry: u64,
    pub info: BootInfo,
    pub gdt_base: u64,
    pub gdt_limit: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot open {path}: {1}", path = .0.display())]
    Open(PathBuf, std::io::Error),
    #[error("cannot read {path}: {1}", path = .0.display())]
    Read(PathBuf, std::io::Error),
    #[error(
        "cannot load kernel {path}: neither an ELF kernel (vmlinux with a PVH note: ELF magic at \
         offset 0) nor a bzImage (Linux boot protocol: \"HdrS\" at offset 0x202)",
        path = .0.display()
    )]
    UnknownKernelFormat(PathBuf),
    #[error("cannot load kernel {path}: {1}", path = .0.display())]
    Kernel(PathBuf, linux_loader::loader::Error),
    #[error(
        "{} has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY note); build the kernel with CONFIG_PVH=y",
        .0.display()
    )]
    NoPvhEntry(PathBuf),
    #[error("cannot load kernel {path} (bzImage): {1}", path = .0.display())]
    BzImage(PathBuf, String),
    #[error("initramfs of {size} bytes does not fit in the {room} bytes of RAM left below 3 GiB")]
    InitrdTooLarge { size: u64, room: u64 },
    #[error("cannot read initramfs {path}: {1}", path = .0.display())]
    ReadInitrd(PathBuf, String),
    #[error(
        "kernel command line is {0} bytes; the limit is {limit}",
        limit = crate::layout::CMDLINE_MAX_SIZE - 1
    )]
    CmdlineTooLong(usize),
    #[error("kernel command line is {len} bytes; this kernel takes at most {max}")]
    CmdlineTooLongForKernel { len: usize, max: u64 },
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("memory map has {0} entries, too many")]
    TooManyMemmapEntries(usize),
    #[error("{0} vCPUs do not fit the MP table")]
    TooManyCpus(u8),
    #[error("{0} at {1:#x} is not addressable with 32 bits")]
    Above4G(&'static str, u64),
    #[error("MP table at {0:#x} is not addressable with 32 bits")]
    MpTableAddress(u64),
    #[error("writing {0} to guest memory: {1}")]
    GuestMemory(&'static str, vm_memory::GuestMemoryError),
    // The configurator's Display names only the protocol; Debug names the
    // step that failed.
    #[error("writing {0} to guest memory: {1} ({1:?})")]
    Configurator(&'static str, linux_loader::configurator::Error),
}
