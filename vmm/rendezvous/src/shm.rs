//! The shared-memory object the server hands to every client.
//!
//! Its size becomes the size of BAR2 in every guest (QEMU takes it from
//! `fstat`), and PCI BARs are powers of two, so the size must be one.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Smallest shared memory we hand out: one page.
pub const MIN_SHM_SIZE: u64 = 4096;

/// Where the shared memory lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ShmBacking {
    /// An anonymous memfd (the default). Sealed against shrinking and growing,
    /// because every client gets a writable descriptor and a client that
    /// shrank it would make every other VMM's mapping fault (SIGBUS).
    #[default]
    Memfd,
    /// A file at this path, created if missing and kept afterwards, so that
    /// host tools can map and inspect it. An existing file must already have
    /// the requested size (or be empty): resizing a file that some other
    /// process maps could crash that process.
    File(PathBuf),
    /// A new, immediately unlinked file in this directory — like
    /// ivshmem-server's `-m DIR`, e.g. for a hugetlbfs mount.
    Directory(PathBuf),
}

impl ShmBacking {
    /// `--shm-path PATH`: a directory means [`ShmBacking::Directory`],
    /// anything else [`ShmBacking::File`].
    pub fn from_path(path: &Path) -> ShmBacking {
        if path.is_dir() {
            ShmBacking::Directory(path.to_path_buf())
        } else {
            ShmBacking::File(path.to_path_buf())
        }
    }
}

/// Why the shared memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// The size is unusable (not a power of two, too small).
    #[error(
        "shared memory size {0} is not a power of two of at least {MIN_SHM_SIZE} bytes \
         (it becomes a PCI BAR)"
    )]
    InvalidSize(u64),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// An existing backing file has another size.
    #[error(
        "{} already exists with {existing} bytes, not {wanted}; \
         remove it or use the same size",
        .path.display()
    )]
    SizeMismatch {
        path: PathBuf,
        existing: u64,
        wanted: u64,
    },
    /// The backing path is not a regular file.
    #[error("{} is not a regular file", .0.display())]
    NotARegularFile(PathBuf),
}

/// Checks that `size` can be a BAR: a power of two, at least one page.
pub fn check_size(size: u64) -> Result<(), ShmError> {
    if size < MIN_SHM_SIZE || !size.is_power_of_two() {
        return Err(ShmError::InvalidSize(size));
    }
    Ok(())
}

/// The shared-memory object, open read-write.
#[derive(Debug)]
pub struct SharedMemory {
    file: File,
    size: u64,
    description: String,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ShmError {
    let what = what.into();
    move |source| ShmError::Io { what, source }
}

impl SharedMemory {
    /// Creates (or opens) the shared memory and gives it `size` bytes.
    pub fn create(size: u64, backing: &ShmBacking) -> Result<SharedMemory, ShmError> {
        check_size(size)?;
        match backing {
            ShmBacking::Memfd => Self::create_memfd(size),
            ShmBacking::File(path) => Self::open_file(size, path),
            ShmBacking::Directory(dir) => Self::create_in_directory(size, dir),
        }
    }

    fn create_memfd(size: u64) -> Result<SharedMemory, ShmError> {
        let name =
            CString::new("ivc-shm").map_err(|e| io_err("memfd name")(io::Error::other(e)))?;
        // SAFETY: name is a valid NUL-terminated string; the flags are plain
        // constants and the result is checked before use.
        let raw = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(io_err("memfd_create")(io::Error::last_os_error()));
        }
        // SAFETY: memfd_create returned a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(raw) };
        file.set_len(size)
            .map_err(io_err(format!("ftruncate memfd to {size}")))?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own, integer argument.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io_err("sealing memfd")(io::Error::last_os_error()));
        }
        Ok(SharedMemory {
            file,
            size,
            description: "memfd".to_string(),
        })
    }

    fn open_file(size: u64, path: &Path) -> Result<SharedMemory, ShmError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        let meta = file
            .metadata()
            .map_err(io_err(format!("fstat {}", path.display())))?;
        if !meta.file_type().is_file() {
            return Err(ShmError::NotARegularFile(path.to_path_buf()));
        }
        match meta.len() {
            0 => file
                .set_len(size)
                .map_err(io_err(format!("ftruncate {} to {size}", path.display())))?,
            len if len == size => {}
            existing => {
                return Err(ShmError::SizeMismatch {
                    path: path.to_path_buf(),
                    existing,
                    wanted: size,
                })
            }
        }
        Ok(SharedMemory {
            file,
            size,
            description: format!("file {}", path.display()),
        })
    }

    fn create_in_directory(size: u64, dir: &Path) -> Result<SharedMemory, ShmError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // create_new + a unique name, then unlink: works on every filesystem
        // (O_TMPFILE does not), and the object dies with its last descriptor.
        let path = dir.join(format!(
            "ivc-shm.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err(format!("creating {}", path.display())))?;
        std::fs::remove_file(&path).map_err(io_err(format!("unlinking {}", path.display())))?;
        file.set_len(size).map_err(io_err(format!(
            "ftruncate a file in {} to {size} (hugetlbfs needs a multiple of the huge page size)",
            dir.display()
        )))?;
        Ok(SharedMemory {
            file,
            size,
            description: format!("unlinked file in {}", dir.display()),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Human-readable description of the backing, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The open object.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives up the object as a plain descriptor.
    pub fn into_fd(self) -> std::os::fd::OwnedFd {
        self.file.into()
    }
}

impl AsFd for SharedMemory {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ivc-shm-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sizes_must_be_powers_of_two_of_at_least_a_page() {
        assert!(check_size(4096).is_ok());
        assert!(check_size(1 << 30).is_ok());
        for bad in [0, 1, 2048, 4095, 4097, 3 << 20] {
            assert!(check_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memfd_has_the_size_and_is_sealed() {
        let shm = SharedMemory::create(1 << 20, &ShmBacking::Memfd).unwrap();
        assert_eq!(shm.file().metadata().unwrap().len(), 1 << 20);
        // A client could try to shrink it under everyone's mappings.
        assert!(shm.file().set_len(4096).is_err());
        assert!(shm.file().set_len(2 << 20).is_err());
        assert_eq!(shm.file().metadata().unwrap().len(), 1 << 20);
    }

    #[test]
    fn file_backing_creates_and_reuses_same_size() {
        let dir = tempdir("file");
        let path = dir.join("shm");
        let shm = SharedMemory::create(8192, &ShmBacking::File(path.clone())).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
        drop(shm);
        SharedMemory::create(8192, &ShmBacking::File(path.clone())).unwrap();
        let err = SharedMemory::create(16384, &ShmBacking::File(path.clone())).unwrap_err();
        assert!(
            matches!(err, ShmError::SizeMismatch { existing: 8192, .. }),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directory_backing_leaves_nothing_behind() {
        let dir = tempdir("dir");
        let shm = SharedMemory::create(4096, &ShmBacking::from_path(&dir)).unwrap();
        assert_eq!(shm.file().metadata().unwrap().len(), 4096);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
