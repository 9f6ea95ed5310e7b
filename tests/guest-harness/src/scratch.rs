//! A private temporary directory for shared-memory files and sockets.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{HarnessError, Result};

/// Scratch directory names are `ivc-harness-<pid>-<n>`.
const PREFIX: &str = "ivc-harness-";

/// A fresh directory removed (with its contents) on drop.
///
/// It lives in `/dev/shm` when that is a writable tmpfs, so ivshmem backing
/// files are RAM and never written back to a disk; otherwise in the system
/// temporary directory. Its path is short, which matters for UNIX sockets
/// (at most 107 bytes).
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates the directory.
    pub fn new() -> Result<Self> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        Self::new_in(&base).or_else(|e| {
            // /dev/shm can exist but be read-only or full in containers.
            if base == shm {
                Self::new_in(&std::env::temp_dir())
            } else {
                Err(e)
            }
        })
    }

    /// Creates the directory inside `base`.
    pub fn new_in(base: &Path) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        if COUNTER.load(Ordering::Relaxed) == 0 {
            remove_stale(base);
        }
        // The counter makes names unique within the process, the pid across
        // processes; create_dir failing on an existing name covers stale
        // directories left by a killed run whose pid was reused.
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{PREFIX}{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(HarnessError::io(
                        format!("creating a scratch directory in {}", base.display()),
                        e,
                    ))
                }
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path named `name` inside the directory (nothing is created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Removes scratch directories left in `base` by test processes that no
/// longer exist (killed before their destructors ran). They live in RAM when
/// `base` is /dev/shm, so they must not pile up. A directory whose pid is in
/// use, by a harness or anything else, is left alone.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_and_removed_on_drop() {
        let a = ScratchDir::new().expect("scratch");
        let b = ScratchDir::new().expect("scratch");
        assert_ne!(a.path(), b.path());
        if Path::new("/dev/shm").is_dir() {
            assert!(a.path().starts_with("/dev/shm"), "{}", a.path().display());
        }
        std::fs::write(a.join("ring"), b"x").expect("write");
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
        assert!(b.join("sock").as_os_str().len() < 100);
    }

    #[test]
    fn directories_of_dead_processes_are_swept() {
        let base = ScratchDir::new().expect("scratch");
        // pid_max is at most 2^22, so this pid cannot be running.
        let stale = base.join("ivc-harness-4194999-0");
        let live = base.join(&format!("ivc-harness-{}-99", std::process::id()));
        let other = base.join("unrelated-1");
        for d in [&stale, &live, &other] {
            std::fs::create_dir(d).expect("mkdir");
        }
        remove_stale(base.path());
        assert!(!stale.exists());
        assert!(live.exists() && other.exists());
    }
}
