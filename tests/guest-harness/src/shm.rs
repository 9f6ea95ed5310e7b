//! The host's view of an ivshmem-plain region: the backing file mapped into
//! the test process.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicU32;

use vm_memory::mmap::MmapRegionError;
use vm_memory::{FileOffset, MmapRegion};

use crate::error::{HarnessError, Result};

/// The backing file of a [`Device::IvshmemPlain`](crate::Device::IvshmemPlain)
/// mapped shared into the test process: the very memory the guests see in
/// BAR2, so the test can watch it, act as a peer (e.g. an `ivc-abi`
/// `Endpoint` over [`HostMapping::words`]) or corrupt it like a hostile peer.
///
/// The memory is exposed only as atomics because the guests change it
/// concurrently; plain references to it would be undefined behaviour.
/// vm-memory's `MmapRegion` owns the mapping (unmapped on drop) and the file
/// (which keeps the file's identity obvious in Debug).
#[derive(Debug)]
pub struct HostMapping {
    region: MmapRegion,
}

impl HostMapping {
    /// Maps `path`, creating it (zero-filled) or growing it to `size` bytes
    /// first, so it can be called before or after the guests start. `size`
    /// must be the device's size: a non-zero multiple of the page size.
    pub fn open(path: &Path, size: u64) -> Result<Self> {
        let what = |action: &str| format!("{action} {}", path.display());
        let page = 4096;
        if size == 0 || size % page != 0 {
            return Err(HarnessError::io(
                what("mapping"),
                io::Error::other(format!("size {size} is not a multiple of 4096")),
            ));
        }
        let len = usize::try_from(size)
            .map_err(|e| HarnessError::io(what("mapping"), io::Error::other(e)))?;
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| HarnessError::io(what("opening"), e))?;
        let current = file
            .metadata()
            .map_err(|e| HarnessError::io(what("inspecting"), e))?
            .len();
        if current < size {
            file.set_len(size)
                .map_err(|e| HarnessError::io(what("sizing"), e))?;
        }
        let region = MmapRegion::build(
            Some(FileOffset::new(file, 0)),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| {
            let e = match e {
                MmapRegionError::Mmap(e) => e,
                other => io::Error::other(other),
            };
            HarnessError::io(what("mapping"), e)
        })?;
        Ok(HostMapping { region })
    }

    /// The mapping's size in bytes.
    pub fn len(&self) -> usize {
        self.region.size()
    }

    /// Whether the mapping is empty (never: [`HostMapping::open`] refuses 0).
    pub fn is_empty(&self) -> bool {
        self.region.size() == 0
    }

    /// The region as 32-bit words; word `i` is at byte offset `4 * i`, in the
    /// guest's (little-endian) byte order.
    pub fn words(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is `len` bytes, page-aligned, readable and
        // writable, and lives as long as `self`; AtomicU32 has the size and
        // alignment of u32 and allows concurrent mutation, which is what the
        // guests do to it.
        unsafe {
            std::slice::from_raw_parts(
                self.region.as_ptr().cast::<AtomicU32>(),
                self.region.size() / 4,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScratchDir;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::Ordering;

    #[test]
    fn mapping_and_file_are_the_same_memory() {
        let dir = ScratchDir::new().expect("scratch");
        let path = dir.join("shm");
        let m = HostMapping::open(&path, 8192).expect("map");
        assert_eq!(m.len(), 8192);
        assert_eq!(m.words().len(), 2048);
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 8192);

        m.words()[1].store(0x1122_3344, Ordering::SeqCst);
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(&bytes[4..8], &[0x44, 0x33, 0x22, 0x11]);

        let f = File::options().write(true).open(&path).expect("open");
        f.write_at(&0xdead_beef_u32.to_le_bytes(), 8)
            .expect("write");
        assert_eq!(m.words()[2].load(Ordering::SeqCst), 0xdead_beef);

        // A second mapping (another "peer") sees the same words.
        let other = HostMapping::open(&path, 8192).expect("map again");
        assert_eq!(other.words()[1].load(Ordering::SeqCst), 0x1122_3344);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let dir = ScratchDir::new().expect("scratch");
        assert!(HostMapping::open(&dir.join("a"), 0).is_err());
        assert!(HostMapping::open(&dir.join("b"), 1000).is_err());
    }
}
