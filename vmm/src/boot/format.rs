//! Which boot protocol a kernel file speaks, from its own bytes: a user
//! passes the image they have (vmlinux or bzImage) without saying which.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::BootError;

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
/// The Linux boot protocol's setup header signature "HdrS", at 0x202.
pub const HDRS_MAGIC: [u8; 4] = *b"HdrS";
pub const HDRS_OFFSET: usize = 0x202;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF (vmlinux, the test guest): booted through its PVH entry note.
    Elf,
    /// bzImage: booted through the Linux 32-bit boot protocol.
    BzImage,
}

/// Classifies the first bytes of a kernel file; `None` for anything else.
pub fn classify(head: &[u8]) -> Option<KernelFormat> {
    if head.starts_with(&ELF_MAGIC) {
        return Some(KernelFormat::Elf);
    }
    match head.get(HDRS_OFFSET..HDRS_OFFSET + HDRS_MAGIC.len()) {
        Some(m) if m == HDRS_MAGIC => Some(KernelFormat::BzImage),
        _ => None,
    }
}

/// Reads just enough of `path` to classify it.
pub fn detect(path: &Path) -> Result<KernelFormat, BootError> {
    let file = File::open(path).map_err(|e| BootError::Open(path.to_path_buf(), e))?;
    let mut head = Vec::with_capacity(HDRS_OFFSET + HDRS_MAGIC.len());
    file.take((HDRS_OFFSET + HDRS_MAGIC.len()) as u64)
        .read_to_end(&mut head)
        .map_err(|e| BootError::Read(path.to_path_buf(), e))?;
    classify(&head).ok_or_else(|| BootError::UnknownKernelFormat(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_bzimage_and_neither() {
        assert_eq!(classify(b"\x7fELF\x02\x01"), Some(KernelFormat::Elf));
        let mut bz = vec![0u8; 0x300];
        bz[HDRS_OFFSET..HDRS_OFFSET + 4].copy_from_slice(b"HdrS");
        assert_eq!(classify(&bz), Some(KernelFormat::BzImage));
        // Magic one byte off, a short file, an empty file, text.
        bz[HDRS_OFFSET..HDRS_OFFSET + 5].copy_from_slice(b"\0HdrS");
        assert_eq!(classify(&bz), None);
        assert_eq!(classify(&bz[..HDRS_OFFSET + 3]), None);
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"#!/bin/sh\necho not a kernel\n"), None);
    }

    #[test]
    fn unknown_file_is_named_in_the_error() {
        let p = std::env::temp_dir().join(format!("ivc-vmm-format-{}", std::process::id()));
        std::fs::write(&p, b"neither ELF nor bzImage").unwrap();
        let e = detect(&p).unwrap_err();
        assert!(matches!(e, BootError::UnknownKernelFormat(_)), "{e}");
        assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}");
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(
            detect(Path::new("/nonexistent/kernel")),
            Err(BootError::Open(..))
        ));
    }
}
