//! bzImage boot: the Linux x86 boot protocol (Documentation/arch/x86/boot.rst).
//!
//! linux-loader's `BzImage` puts the protected-mode kernel (everything after
//! the real-mode setup sectors) at `code32_start`; we check the setup header
//! first, because the image is a file the user handed us and every size and
//! address in it decides where we write. The kernel is entered through the
//! 32-bit boot protocol: flat 4 GiB segments with CS 0x10 and DS 0x18 (our
//! boot GDT already has them there, for PVH), paging off, interrupts off,
//! ESI = the `boot_params` (zero page), EIP = the load address. The 16-bit
//! setup code is never run, so none of its inputs (heap, video) matter.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{
    boot_e820_entry, boot_params, setup_header, E820_MAX_ENTRIES_ZEROPAGE, LOADED_HIGH,
};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::KernelLoader;
use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

use super::e820::MemoryMapEntry;
use super::BootError;
use crate::layout::{HIGH_RAM_START, ZERO_PAGE};

/// Where the setup header sits in the image and in `boot_params`.
pub const SETUP_HEADER_OFFSET: u64 = 0x1f1;
/// `boot_flag`, the old boot-sector signature.
pub const BOOT_FLAG: u16 = 0xaa55;
/// "HdrS", little-endian.
pub const HDRS: u32 = 0x5372_6448;
/// Protocol 2.10 (Linux 2.6.31) is the first with every field we read:
/// `cmd_line_ptr` (2.02), `initrd_addr_max` (2.03), `relocatable_kernel`
/// and `kernel_alignment` (2.05), `cmdline_size` (2.06), `pref_address` and
/// `init_size` (2.10).
pub const MIN_VERSION: u16 = 0x020a;
/// `type_of_loader` for a boot loader without an assigned id.
pub const LOADER_UNDEFINED: u8 = 0xff;
/// The header must reach at least to the end of `init_size`.
const HEADER_MIN_END: u64 = 0x264;
/// A 0 in `setup_sects` means 4, for compatibility with ancient images.
const DEFAULT_SETUP_SECTS: u64 = 4;

/// A bzImage loaded in guest memory.
#[derive(Debug, Clone, Copy)]
pub struct LoadedBzImage {
    /// The image's setup header, trimmed to its own length, with
    /// `code32_start` = the load address.
    pub header: setup_header,
    /// The 32-bit entry: the protected-mode kernel's load address.
    pub entry: u64,
    /// First byte after everything the kernel occupies while it boots: the
    /// loaded image and the `init_size` bytes it decompresses into.
    pub end: u64,
    /// Highest address + 1 an initramfs may occupy (`initrd_addr_max`).
    pub initrd_ceiling: u64,
}

/// What a checked header says about where the kernel goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// The protected-mode part's file offset and load address.
    pub setup_size: u64,
    pub load_addr: u64,
    /// First byte after the kernel's loaded image and its decompressed run
    /// area.
    pub end: u64,
    /// Bytes of the header that come from the image (the rest of
    /// `setup_header` must be 0 in the zero page).
    pub header_len: usize,
}

/// Reads the setup header from offset 0x1f1 of `file`; returns it and the
/// file's size.
pub fn read_header(file: &mut File, path: &Path) -> Result<(setup_header, u64), BootError> {
    let read_err = |e| BootError::Read(path.to_path_buf(), e);
    let len = file.metadata().map_err(read_err)?.len();
    let mut hdr = setup_header::default();
    file.seek(SeekFrom::Start(SETUP_HEADER_OFFSET))
        .map_err(read_err)?;
    file.read_exact(hdr.as_mut_slice()).map_err(read_err)?;
    Ok((hdr, len))
}

/// Checks `hdr` (of a `file_len`-byte image) against what we need and the
/// guest's low RAM (`low_ram_end`); returns where the kernel goes, or why
/// it cannot boot here.
pub fn check_header(
    hdr: &setup_header,
    file_len: u64,
    low_ram_end: u64,
) -> Result<Footprint, String> {
    // Copies: the struct is packed, its fields cannot be borrowed.
    let (boot_flag, magic, version) = (hdr.boot_flag, hdr.header, hdr.version);
    if boot_flag != BOOT_FLAG || magic != HDRS {
        return Err(format!(
            "no Linux setup header (boot_flag {boot_flag:#06x}, header {magic:#010x})"
        ));
    }
    if version < MIN_VERSION {
        return Err(format!(
            "boot protocol {}.{:02} is older than the {}.{:02} we need",
            version >> 8,
            version & 0xff,
            MIN_VERSION >> 8,
            MIN_VERSION & 0xff
        ));
    }
    // The jump at 0x200 skips the header: its target is the header's end.
    let header_end = 0x202 + u64::from(hdr.jump >> 8);
    if header_end < HEADER_MIN_END {
        return Err(format!(
            "setup header ends at {header_end:#x}, before init_size"
        ));
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err("not a bzImage: loadflags lack LOADED_HIGH (a zImage loads at 64 KiB)".into());
    }
    let sects = match u64::from(hdr.setup_sects) {
        0 => DEFAULT_SETUP_SECTS,
        n => n,
    };
    let setup_size = (sects + 1) * 512;
    if setup_size >= file_len {
        return Err(format!(
            "{setup_size} bytes of setup code, but the file has only {file_len}"
        ));
    }
    let load_addr = u64::from(hdr.code32_start);
    let load_end = load_addr
        .checked_add(file_len - setup_size)
        .ok_or_else(|| "the image is too large".to_string())?;
    let run_addr = run_address(hdr, load_addr)?;
    let run_end = run_addr
        .checked_add(u64::from(hdr.init_size))
        .ok_or_else(|| "pref_address + init_size overflows".to_string())?;
    if load_addr < HIGH_RAM_START {
        return Err(format!("code32_start {load_addr:#x} is below 1 MiB"));
    }
    if run_addr < HIGH_RAM_START {
        return Err(format!(
            "the kernel wants to run at {run_addr:#x}, below 1 MiB"
        ));
    }
    let end = load_end.max(run_end);
    if end > low_ram_end {
        return Err(format!(
            "the kernel needs RAM up to {end:#x} (image at {load_addr:#x}, {} bytes decompressed at {run_addr:#x}), \
             but RAM below 4 GiB ends at {low_ram_end:#x}; give the guest more --mem",
            { hdr.init_size }
        ));
    }
    let header_len = usize::try_from(header_end - SETUP_HEADER_OFFSET)
        .unwrap_or(usize::MAX)
        .min(std::mem::size_of::<setup_header>());
    Ok(Footprint {
        setup_size,
        load_addr,
        end,
        header_len,
    })
}

/// Where the decompressed kernel runs: `pref_address` for a kernel that
/// cannot move; a relocatable one runs at its load address rounded up to
/// `kernel_alignment`, but never below `pref_address` (its
/// LOAD_PHYSICAL_ADDR). That is what the decompressor's head code does.
fn run_address(hdr: &setup_header, load_addr: u64) -> Result<u64, String> {
    let pref = hdr.pref_address;
    if hdr.relocatable_kernel == 0 {
        return Ok(pref);
    }
    let align = u64::from(hdr.kernel_alignment);
    if !align.is_power_of_two() {
        return Err(format!("kernel_alignment {align:#x} is not a power of two"));
    }
    Ok(load_addr.next_multiple_of(align).max(pref))
}

/// Checks and loads the bzImage at `path` into `mem`.
pub fn load(
    mem: &GuestMemoryMmap,
    path: &Path,
    low_ram_end: u64,
) -> Result<LoadedBzImage, BootError> {
    let mut file = File::open(path).map_err(|e| BootError::Open(path.to_path_buf(), e))?;
    let (mut header, file_len) = read_header(&mut file, path)?;
    let fp = check_header(&header, file_len, low_ram_end)
        .map_err(|why| BootError::BzImage(path.to_path_buf(), why))?;
    let loaded = BzImage::load(mem, None, &mut file, Some(GuestAddress(HIGH_RAM_START)))
        .map_err(|e| BootError::Kernel(path.to_path_buf(), e))?;
    // Beyond its own end the "header" read from the file is code: the
    // protocol wants those bytes of boot_params zero.
    header.as_mut_slice()[fp.header_len..].fill(0);
    header.code32_start = u32::try_from(loaded.kernel_load.0)
        .map_err(|_| BootError::Above4G("the kernel", loaded.kernel_load.0))?;
    // initrd_addr_max is the highest byte an initramfs may occupy.
    let initrd_ceiling = u64::from(header.initrd_addr_max) + 1;
    Ok(LoadedBzImage {
        header,
        entry: loaded.kernel_load.0,
        end: fp.end.max(loaded.kernel_end),
        initrd_ceiling,
    })
}

/// The zero page: the image's setup header with what a boot loader fills
/// in (loader type, command line, initramfs), and the e820 map.
pub fn zero_page(
    header: &setup_header,
    cmdline: (u64, usize),
    initrd: Option<(u64, u64)>,
    memmap: &[MemoryMapEntry],
) -> Result<boot_params, BootError> {
    let mut p = boot_params::default();
    let mut hdr = *header;
    hdr.type_of_loader = LOADER_UNDEFINED;
    // cmdline_size is the longest command line the kernel takes, NUL not
    // counted.
    if cmdline.1 as u64 > u64::from(hdr.cmdline_size) {
        return Err(BootError::CmdlineTooLongForKernel {
            len: cmdline.1,
            max: u64::from(hdr.cmdline_size),
        });
    }
    hdr.cmd_line_ptr = u32::try_from(cmdline.0)
        .map_err(|_| BootError::Above4G("kernel command line", cmdline.0))?;
    if let Some((addr, size)) = initrd {
        hdr.ramdisk_image =
            u32::try_from(addr).map_err(|_| BootError::Above4G("initramfs", addr))?;
        hdr.ramdisk_size = u32::try_from(size).map_err(|_| BootError::InitrdTooLarge {
            size,
            room: u64::from(u32::MAX),
        })?;
    }
    p.hdr = hdr;
    if memmap.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(BootError::TooManyMemmapEntries(memmap.len()));
    }
    for (slot, e) in p.e820_table.iter_mut().zip(memmap) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    // reason: at most E820_MAX_ENTRIES_ZEROPAGE (128) entries, checked above.
    #[allow(clippy::cast_possible_truncation)]
    {
        p.e820_entries = memmap.len() as u8;
    }
    Ok(p)
}

/// Writes `params` at `ZERO_PAGE`; returns its address (the value for ESI).
pub fn write_zero_page(mem: &GuestMemoryMmap, params: &boot_params) -> Result<u64, BootError> {
    let bp = BootParams::new(params, GuestAddress(ZERO_PAGE));
    LinuxBootConfigurator::write_bootparams(&bp, mem)
        .map_err(|e| BootError::Configurator("Linux zero page", e))?;
    Ok(ZERO_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::e820::{memory_map, E820_RESERVED};
    use std::io::Write;
    use vm_memory::Bytes;

    const MIB: u64 = 1 << 20;

    /// A setup header as a current x86-64 kernel has it (protocol 2.15,
    /// header up to 0x268, not relocatable, runs at 16 MiB).
    fn header() -> setup_header {
        setup_header {
            setup_sects: 1,
            boot_flag: BOOT_FLAG,
            jump: 0x66eb,
            header: HDRS,
            version: 0x020f,
            loadflags: LOADED_HIGH,
            code32_start: 0x10_0000,
            initrd_addr_max: 0x7fff_ffff,
            kernel_alignment: 0x20_0000,
            cmdline_size: 2047,
            pref_address: 0x100_0000,
            init_size: 0x80_0000,
            ..Default::default()
        }
    }

    /// A bzImage file: 2 setup sectors with `hdr` at 0x1f1, then `payload`.
    fn image(hdr: &setup_header, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        let off = usize::try_from(SETUP_HEADER_OFFSET).unwrap();
        b[off..off + std::mem::size_of::<setup_header>()].copy_from_slice(hdr.as_slice());
        b.extend_from_slice(payload);
        b
    }

    fn tmpfile(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("ivc-vmm-bz-{}-{name}", std::process::id()));
        File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn a_good_header_gives_its_footprint() {
        let fp = check_header(&header(), 1024 + 5000, 64 * MIB).unwrap();
        assert_eq!(
            fp,
            Footprint {
                setup_size: 1024,
                load_addr: MIB,
                end: 0x100_0000 + 0x80_0000,
                header_len: 0x268 - 0x1f1,
            }
        );
        // Relocatable: rounded up to the alignment, not below pref_address.
        let mut h = header();
        h.relocatable_kernel = 1;
        h.pref_address = 0x20_0000;
        let fp = check_header(&h, 1024 + 5000, 64 * MIB).unwrap();
        assert_eq!(fp.end, 0x20_0000 + 0x80_0000);
        h.kernel_alignment = 3;
        assert!(check_header(&h, 1024 + 5000, 64 * MIB).is_err());
    }

    #[test]
    fn bad_headers_are_refused_with_the_reason() {
        let bad = |f: fn(&mut setup_header), len: u64, ram: u64, why: &str| {
            let mut h = header();
            f(&mut h);
            let e = check_header(&h, len, ram).unwrap_err();
            assert!(e.contains(why), "{e:?} lacks {why:?}");
        };
        let len = 1024 + 5000;
        bad(|h| h.boot_flag = 0, len, 64 * MIB, "no Linux setup header");
        bad(|h| h.header = 0, len, 64 * MIB, "no Linux setup header");
        bad(
            |h| h.version = 0x0209,
            len,
            64 * MIB,
            "2.09 is older than the 2.10",
        );
        bad(|h| h.jump = 0x10eb, len, 64 * MIB, "before init_size");
        bad(|h| h.loadflags = 0, len, 64 * MIB, "LOADED_HIGH");
        bad(|h| h.setup_sects = 20, len, 64 * MIB, "bytes of setup code");
        bad(|h| h.code32_start = 0x1_0000, len, 64 * MIB, "below 1 MiB");
        bad(|h| h.pref_address = 0x1000, len, 64 * MIB, "below 1 MiB");
        bad(|h| h.pref_address = u64::MAX, len, 64 * MIB, "overflows");
        // Decompressed, it would not fit: 16 MiB + 8 MiB > 20 MiB.
        bad(|_| {}, len, 20 * MIB, "give the guest more --mem");
        // Nor would the image itself.
        bad(|h| h.init_size = 0, 1024 + 30 * MIB, 20 * MIB, "more --mem");
    }

    #[test]
    fn loads_the_kernel_and_fills_the_zero_page() {
        let mem = crate::memory::create_guest_memory(64 * MIB).unwrap();
        let payload: Vec<u8> = (0..=250u8).cycle().take(5000).collect();
        let mut file = image(&header(), &payload);
        // Code right after the header's end must not reach the zero page.
        file[0x268] = 0xcc;
        let p = tmpfile("kernel", &file);
        let k = load(&mem, &p, 64 * MIB).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(k.entry, MIB);
        assert_eq!(k.end, 0x180_0000);
        assert_eq!(k.initrd_ceiling, 0x8000_0000);
        let mut back = vec![0u8; payload.len()];
        mem.read_slice(&mut back, GuestAddress(MIB)).unwrap();
        assert_eq!(back, payload);

        let map = memory_map(64 * MIB);
        let params = zero_page(&k.header, (0x20000, 13), Some((0x300_0000, 0x1234)), &map).unwrap();
        assert_eq!(write_zero_page(&mem, &params).unwrap(), ZERO_PAGE);
        let mut z = vec![0u8; 4096];
        mem.read_slice(&mut z, GuestAddress(ZERO_PAGE)).unwrap();
        // Offsets from Documentation/arch/x86/boot.rst and zero-page.rst.
        assert_eq!(&z[0x1fe..0x200], &[0x55, 0xaa]);
        assert_eq!(&z[0x202..0x206], b"HdrS");
        assert_eq!(z[0x210], 0xff, "type_of_loader");
        assert_eq!(z[0x211] & LOADED_HIGH, LOADED_HIGH);
        assert_eq!(u32_at(&z, 0x214), 0x10_0000, "code32_start");
        assert_eq!(u32_at(&z, 0x218), 0x300_0000, "ramdisk_image");
        assert_eq!(u32_at(&z, 0x21c), 0x1234, "ramdisk_size");
        assert_eq!(u32_at(&z, 0x228), 0x20000, "cmd_line_ptr");
        assert_eq!(z[0x268], 0, "past the header's end");
        assert_eq!(usize::from(z[0x1e8]), map.len(), "e820_entries");
        // The e820 table (20-byte entries at 0x2d0) is the PVH memmap.
        for (i, e) in map.iter().enumerate() {
            let o = 0x2d0 + 20 * i;
            assert_eq!(u64::from_le_bytes(z[o..o + 8].try_into().unwrap()), e.addr);
            assert_eq!(
                u64::from_le_bytes(z[o + 8..o + 16].try_into().unwrap()),
                e.size
            );
            assert_eq!(u32_at(&z, o + 16), e.kind);
        }
        assert_eq!(u32_at(&z, 0x2d0 + 20 + 16), E820_RESERVED);
    }

    #[test]
    fn command_line_longer_than_the_kernel_takes_is_an_error() {
        let mut h = header();
        h.cmdline_size = 10;
        assert!(zero_page(&h, (0x20000, 10), None, &[]).is_ok());
        assert!(matches!(
            zero_page(&h, (0x20000, 11), None, &[]),
            Err(BootError::CmdlineTooLongForKernel { len: 11, max: 10 })
        ));
    }

    #[test]
    fn no_initrd_leaves_the_ramdisk_fields_zero() {
        let z = zero_page(&header(), (0x20000, 1), None, &[]).unwrap();
        assert_eq!(({ z.hdr.ramdisk_image }, { z.hdr.ramdisk_size }), (0, 0));
    }

    #[test]
    fn a_file_too_short_for_a_header_is_an_error() {
        let mem = crate::memory::create_guest_memory(64 * MIB).unwrap();
        let p = tmpfile("short", &[0u8; 0x200]);
        assert!(matches!(load(&mem, &p, 64 * MIB), Err(BootError::Read(..))));
        std::fs::remove_file(&p).unwrap();
    }
}
