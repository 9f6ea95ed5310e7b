//! Putting a guest in memory and describing the machine to it: kernel and
//! initramfs loading, command line, memory map, PVH start info, MP table,
//! boot GDT.

pub mod e820;
pub mod elf_image;
pub mod gdt;
pub mod loader;
pub mod mptable;
pub mod pvh;

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum BootError {
    Open(PathBuf, std::io::Error),
    Kernel(PathBuf, linux_loader::loader::Error),
    NoPvhEntry(PathBuf),
    InitrdTooLarge { size: u64, room: u64 },
    ReadInitrd(PathBuf, String),
    CmdlineTooLong(usize),
    CmdlineNul,
    TooManyMemmapEntries(usize),
    TooManyCpus(u8),
    MpTableAddress(u64),
    GuestMemory(&'static str, vm_memory::GuestMemoryError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Open(p, e) => write!(f, "cannot open {}: {e}", p.display()),
            BootError::Kernel(p, e) => write!(f, "cannot load kernel {}: {e}", p.display()),
            BootError::NoPvhEntry(p) => write!(
                f,
                "{} has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY note); build the kernel with CONFIG_PVH=y",
                p.display()
            ),
            BootError::InitrdTooLarge { size, room } => {
                write!(f, "initramfs of {size} bytes does not fit in the {room} bytes of RAM left below 3 GiB")
            }
            BootError::ReadInitrd(p, e) => write!(f, "cannot read initramfs {}: {e}", p.display()),
            BootError::CmdlineTooLong(n) => {
                write!(f, "kernel command line is {n} bytes; the limit is {}", crate::layout::CMDLINE_MAX_SIZE - 1)
            }
            BootError::CmdlineNul => write!(f, "kernel command line contains a NUL byte"),
            BootError::TooManyMemmapEntries(n) => write!(f, "memory map has {n} entries, too many"),
            BootError::TooManyCpus(n) => write!(f, "{n} vCPUs do not fit the MP table"),
            BootError::MpTableAddress(a) => {
                write!(f, "MP table at {a:#x} is not addressable with 32 bits")
            }
            BootError::GuestMemory(what, e) => write!(f, "writing {what} to guest memory: {e}"),
        }
    }
}

impl std::error::Error for BootError {}
