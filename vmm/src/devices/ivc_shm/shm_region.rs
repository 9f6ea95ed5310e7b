//! BAR2 of `ivc-shm`: the shared memory, mapped into the guest with a KVM
//! memory slot over our `MAP_SHARED` mapping of the server's memfd. Guest
//! accesses never exit and nothing is copied; both guests (and any host
//! tool) see the same pages. The slot follows the BAR when the guest moves
//! it.

use std::sync::Arc;

use log::debug;

use crate::devices::shm_mapping::ShmMapping;
use crate::vm::VmResources;

pub struct ShmRegion {
    mapping: Arc<ShmMapping>,
    resources: Arc<VmResources>,
    slot: u32,
    mapped_at: Option<u64>,
}

impl ShmRegion {
    pub fn new(mapping: Arc<ShmMapping>, resources: Arc<VmResources>) -> Self {
        let slot = resources.allocate_memslot();
        ShmRegion {
            mapping,
            resources,
            slot,
            mapped_at: None,
        }
    }

    pub fn size(&self) -> u64 {
        self.mapping.len() as u64
    }

    pub fn mapping(&self) -> &Arc<ShmMapping> {
        &self.mapping
    }

    /// BAR2 stopped decoding at `old` / started at `new`.
    pub fn moved(&mut self, _old: Option<u64>, new: Option<u64>) {
        if self.mapped_at.take().is_some() {
            if let Err(e) = self.resources.remove_user_memory(self.slot) {
                crate::guest_log!(error, "ivc-shm: unmapping BAR2: {e}");
            }
        }
        let Some(gpa) = new else { return };
        // SAFETY: the mapping is kept alive by our Arc until `Drop` removed
        // the slot; it is never remapped.
        let r = unsafe {
            self.resources
                .set_user_memory(self.slot, gpa, self.size(), self.mapping.host_addr())
        };
        match r {
            Ok(()) => {
                debug!("ivc-shm: BAR2 shared memory at {gpa:#x}");
                self.mapped_at = Some(gpa);
            }
            // E.g. the guest placed the BAR over RAM: it stays unmapped and
            // accesses read all ones through the MMIO bus.
            Err(e) => crate::guest_log!(error, "ivc-shm: mapping BAR2 at {gpa:#x}: {e}"),
        }
    }
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        if self.mapped_at.is_some() {
            let _ = self.resources.remove_user_memory(self.slot);
        }
    }
}
