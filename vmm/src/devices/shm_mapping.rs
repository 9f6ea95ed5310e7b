//! The shared memory of an ivc device: an `mmap(MAP_SHARED)` of the
//! rendezvous server's memfd (or of a plain file), never copied.
//!
//! `ivc-shm` hands the mapping to KVM as BAR2's memory slot; `ivc-pio` runs
//! a channel endpoint over it. Both keep it in an `Arc` so the mapping
//! outlives every user (slot, endpoint, peer watcher thread).

use std::fs::File;
use std::io;

use ivc_abi::layout::{
    mark_absent, peer_entry, Layout, NUM_SLOTS, PEER_DOORBELL_ID, PEER_STATE, PEER_UP,
};
use ivc_abi::{AtomicMem, SharedMemory};
use vm_memory::mmap::MmapRegionError;
use vm_memory::{FileOffset, MmapRegion};

/// A shared, writable mapping of a whole file.
///
/// vm-memory's `MmapRegion` owns the mapping (unmapped on drop) and a
/// duplicate of the file's descriptor; it is `Send + Sync` because this
/// process touches the memory only through atomics (`AtomicMem`) and KVM.
#[derive(Debug)]
pub struct ShmMapping {
    region: MmapRegion,
}

impl ShmMapping {
    /// Maps `len` bytes of `file` read/write, `MAP_SHARED`.
    pub fn new(file: &File, len: u64) -> io::Result<ShmMapping> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad shm size"))?;
        let actual = file.metadata()?.len();
        if actual < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("shared memory file has {actual} bytes, need {len}"),
            ));
        }
        // Exactly the flags of a plain shared mapping: no MAP_NORESERVE
        // (`MmapRegion::from_file` would add it), the memory is the peers'.
        let region = MmapRegion::build(
            Some(FileOffset::new(file.try_clone()?, 0)),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| match e {
            MmapRegionError::Mmap(e) => e,
            other => io::Error::other(other),
        })?;
        Ok(ShmMapping { region })
    }

    pub fn host_addr(&self) -> u64 {
        self.region.as_ptr() as u64
    }

    pub fn len(&self) -> usize {
        self.region.size()
    }

    pub fn is_empty(&self) -> bool {
        self.region.size() == 0
    }

    /// An atomic view of the whole mapping.
    pub fn mem(&self) -> AtomicMem<'_> {
        // SAFETY: page-aligned, `len` bytes mapped for as long as `self`
        // lives (the borrow), accessed by this process only atomically.
        unsafe { AtomicMem::new(self.region.as_ptr(), self.region.size()) }
            .unwrap_or_else(|| AtomicMem::from_words(&[]))
    }

    /// A peer (rendezvous id `id`) has gone: if the memory holds an ivc
    /// channel and a slot is UP with that doorbell id, mark it ABSENT so the
    /// surviving side sees the connection end (docs/protocol.md, Close).
    /// Memory that holds no valid channel is left untouched: it may be used
    /// for something else entirely. Returns the slot marked.
    pub fn mark_peer_absent(&self, id: u16) -> Option<u32> {
        let mem = self.mem();
        Layout::read(&mem).ok()?;
        for slot in 0..NUM_SLOTS {
            let entry = peer_entry(slot);
            let db = mem.load_u32_acquire(entry + PEER_DOORBELL_ID).ok()?;
            let state = mem.load_u32_acquire(entry + PEER_STATE).ok()?;
            if db == u32::from(id) && state == PEER_UP && mark_absent(&mem, slot).is_ok() {
                return Some(slot);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivc_abi::{AttachOptions, Endpoint, PeerState};

    fn memfd(size: u64) -> File {
        let f = tempfile_in_dev_shm();
        f.set_len(size).unwrap();
        f
    }

    fn tempfile_in_dev_shm() -> File {
        let p = std::env::temp_dir().join(format!(
            "ivc-shm-mapping-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }

    #[test]
    fn maps_shared_and_marks_the_gone_peer_absent() {
        let f = memfd(64 << 10);
        let a = ShmMapping::new(&f, 64 << 10).unwrap();
        let b = ShmMapping::new(&f, 64 << 10).unwrap();
        assert_eq!(
            a.mark_peer_absent(7),
            None,
            "unformatted memory is left alone"
        );
        let opts = |id| AttachOptions {
            doorbell_id: Some(id),
            ..AttachOptions::default()
        };
        let mut ea = Endpoint::attach_with(a.mem(), 0, &opts(3)).unwrap();
        let mut eb = Endpoint::attach_with(b.mem(), 1, &opts(7)).unwrap();
        for _ in 0..4 {
            let _ = ea.peer_state();
            let _ = eb.peer_state();
        }
        assert_eq!(ea.peer_state(), Ok(PeerState::Connected));
        assert_eq!(a.mark_peer_absent(9), None);
        assert_eq!(a.mark_peer_absent(7), Some(1));
        assert_eq!(ea.peer_state(), Ok(PeerState::Gone));
        assert!(
            ShmMapping::new(&f, 128 << 10).is_err(),
            "larger than the file"
        );
    }
}
