//! MSI-X: the capability, the vector table, the pending-bit array, and the
//! mapping of table state onto KVM routes and irqfds.
//!
//! Every vector owns a GSI and an eventfd. While the vector is deliverable
//! (MSI-X enabled, function not masked, vector not masked) the GSI routes to
//! the vector's MSI message and the eventfd is an irqfd for it, so a write to
//! the eventfd (by this VMM, or by a peer VMM's ioeventfd) interrupts the guest
//! without this process running. While it is masked, the irqfd is
//! unregistered: writes accumulate in the eventfd counter, the PBA shows the
//! vector pending, and re-registering on unmask delivers the interrupt (KVM
//! checks an irqfd's eventfd when it is assigned).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::config_space::{ConfigError, ConfigSpace};
use crate::devices::ratelimit::RateLimit;
use crate::irq::InterruptRouter;
use crate::warn_limited;

pub const MSIX_CAPABILITY_ID: u8 = 0x11;
pub const MSIX_TABLE_ENTRY_SIZE: u64 = 16;
/// Message control bits.
pub const MSIX_ENABLE: u16 = 1 << 15;
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control bit 0.
pub const MSIX_VECTOR_MASKED: u32 = 1;
/// The spec's limit (table size field is 11 bits, N-1).
pub const MSIX_MAX_VECTORS: u16 = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixTableEntry {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
    pub vector_control: u32,
}

impl Default for MsixTableEntry {
    fn default() -> Self {
        // Vectors come out of reset masked.
        MsixTableEntry {
            address_lo: 0,
            address_hi: 0,
            data: 0,
            vector_control: MSIX_VECTOR_MASKED,
        }
    }
}

impl MsixTableEntry {
    fn address(&self) -> u64 {
        (u64::from(self.address_hi) << 32) | u64::from(self.address_lo)
    }

    fn dword(&self, i: u64) -> u32 {
        match i {
            0 => self.address_lo,
            1 => self.address_hi,
            2 => self.data,
            _ => self.vector_control,
        }
    }

    fn set_dword(&mut self, i: u64, v: u32) {
        match i {
            0 => self.address_lo = v & !0x3, // message address is dword aligned
            1 => self.address_hi = v,
            2 => self.data = v,
            // Only the mask bit is defined; the rest reads as zero.
            _ => self.vector_control = v & MSIX_VECTOR_MASKED,
        }
    }
}

struct Vector {
    gsi: u32,
    evt: EventFd,
    irqfd_registered: bool,
    route: Option<(u64, u32)>,
}

/// One function's MSI-X state.
pub struct Msix {
    entries: Vec<MsixTableEntry>,
    vectors: Vec<Vector>,
    enabled: bool,
    function_masked: bool,
    capability_offset: Option<usize>,
    router: Arc<dyn InterruptRouter>,
    /// Bad guest accesses are logged through this: a guest looping over
    /// the table must not flood the VMM's log. A mutex because reads take
    /// `&self`.
    bad_access: Mutex<RateLimit>,
}

/// True when the eventfd's counter is non-zero (without consuming it).
fn eventfd_pending(evt: &EventFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: evt.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call and the
    // count (1) matches; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// Valid table/PBA access: 4 or 8 bytes, naturally aligned.
fn valid_access(offset: u64, len: usize) -> bool {
    (len == 4 || len == 8) && offset % len as u64 == 0
}

impl Msix {
    /// `num_vectors` vectors (1..=2048), each with a GSI and eventfd from `router`.
    pub fn new(num_vectors: u16, router: Arc<dyn InterruptRouter>) -> io::Result<Self> {
        if num_vectors == 0 || num_vectors > MSIX_MAX_VECTORS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("MSI-X vector count {num_vectors} not in 1..=2048"),
            ));
        }
        let mut vectors = Vec::with_capacity(num_vectors.into());
        for _ in 0..num_vectors {
            vectors.push(Vector {
                gsi: router.allocate_gsi()?,
                evt: EventFd::new(EFD_NONBLOCK)?,
                irqfd_registered: false,
                route: None,
            });
        }
        Ok(Msix {
            entries: vec![MsixTableEntry::default(); num_vectors.into()],
            vectors,
            enabled: false,
            function_masked: false,
            capability_offset: None,
            bad_access: Mutex::new(RateLimit::new()),
            router,
        })
    }

    fn limit(&self) -> std::sync::MutexGuard<'_, RateLimit> {
        self.bad_access.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn num_vectors(&self) -> usize {
        self.vectors.len()
    }

    /// Bytes the table occupies in its BAR.
    pub fn table_size(&self) -> u64 {
        self.vectors.len() as u64 * MSIX_TABLE_ENTRY_SIZE
    }

    /// Bytes the PBA occupies (whole qwords).
    pub fn pba_size(&self) -> u64 {
        (self.vectors.len() as u64).div_ceil(64) * 8
    }

    /// Adds the MSI-X capability to `config`; the table and PBA live at the
    /// given BAR indices and offsets (offsets 8-byte aligned).
    pub fn add_capability(
        &mut self,
        config: &mut ConfigSpace,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> Result<usize, ConfigError> {
        // reason: vectors.len() is the num_vectors (1..=2048, a u16) given
        // to new(), and never changes.
        #[allow(clippy::cast_possible_truncation)]
        let control = (self.vectors.len() as u16 - 1).to_le_bytes();
        let table = (table_offset & !0x7 | u32::from(table_bar & 0x7)).to_le_bytes();
        let pba = (pba_offset & !0x7 | u32::from(pba_bar & 0x7)).to_le_bytes();
        let body = [
            MSIX_CAPABILITY_ID,
            0,
            control[0],
            control[1],
            table[0],
            table[1],
            table[2],
            table[3],
            pba[0],
            pba[1],
            pba[2],
            pba[3],
        ];
        let mut wmask = [0u8; 12];
        wmask[3] = ((MSIX_ENABLE | MSIX_FUNCTION_MASK) >> 8) as u8;
        let off = config.add_capability(&body, &wmask)?;
        self.capability_offset = Some(off);
        Ok(off)
    }

    /// Call after every guest config write: picks up Enable / Function Mask.
    pub fn config_written(&mut self, config: &ConfigSpace) {
        let Some(off) = self.capability_offset else {
            return;
        };
        self.set_control(config.read_u16(off + 2));
    }

    /// Applies a new message control value.
    pub fn set_control(&mut self, control: u16) {
        let enabled = control & MSIX_ENABLE != 0;
        let masked = control & MSIX_FUNCTION_MASK != 0;
        if enabled == self.enabled && masked == self.function_masked {
            return;
        }
        if enabled && !self.enabled {
            // Signals raised while MSI-X was off have nowhere to go (we have
            // no INTx): drop them rather than deliver stale interrupts.
            for v in &self.vectors {
                if !v.irqfd_registered {
                    let _ = v.evt.read();
                }
            }
        }
        self.enabled = enabled;
        self.function_masked = masked;
        for i in 0..self.vectors.len() {
            self.sync_vector(i);
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn function_masked(&self) -> bool {
        self.function_masked
    }

    pub fn entry(&self, vector: usize) -> Option<MsixTableEntry> {
        self.entries.get(vector).copied()
    }

    pub fn gsi(&self, vector: usize) -> Option<u32> {
        self.vectors.get(vector).map(|v| v.gsi)
    }

    /// Whether `vector` interrupts the guest right now when triggered.
    pub fn deliverable(&self, vector: usize) -> bool {
        self.entries.get(vector).is_some_and(|e| {
            self.enabled && !self.function_masked && e.vector_control & MSIX_VECTOR_MASKED == 0
        })
    }

    /// Guest read from the table (offset relative to the table start).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        if !valid_access(offset, data.len()) || offset >= self.table_size() {
            warn_limited!(
                self.limit(),
                "msix: bad table read at {offset:#x} size {}",
                data.len()
            );
            data.fill(0xff);
            return;
        }
        for (k, chunk) in data.chunks_mut(4).enumerate() {
            let o = offset + 4 * k as u64;
            let e = &self.entries[(o / MSIX_TABLE_ENTRY_SIZE) as usize];
            chunk.copy_from_slice(&e.dword((o % MSIX_TABLE_ENTRY_SIZE) / 4).to_le_bytes());
        }
    }

    /// Guest write to the table.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !valid_access(offset, data.len()) || offset >= self.table_size() {
            warn_limited!(
                self.limit(),
                "msix: bad table write at {offset:#x} size {}",
                data.len()
            );
            return;
        }
        let index = (offset / MSIX_TABLE_ENTRY_SIZE) as usize;
        for (k, chunk) in data.chunks(4).enumerate() {
            let o = offset + 4 * k as u64;
            let mut b = [0u8; 4];
            b.copy_from_slice(chunk);
            self.entries[index].set_dword((o % MSIX_TABLE_ENTRY_SIZE) / 4, u32::from_le_bytes(b));
        }
        self.sync_vector(index);
    }

    /// Guest read from the PBA (offset relative to the PBA start).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        if !valid_access(offset, data.len()) || offset >= self.pba_size() {
            warn_limited!(
                self.limit(),
                "msix: bad PBA read at {offset:#x} size {}",
                data.len()
            );
            data.fill(0xff);
            return;
        }
        let mut bits = 0u64;
        let first = offset * 8;
        for bit in 0..(data.len() as u64 * 8) {
            if self.pending(usize::try_from(first + bit).unwrap_or(usize::MAX)) {
                bits |= 1 << bit;
            }
        }
        data.copy_from_slice(&bits.to_le_bytes()[..data.len()]);
    }

    /// The PBA is read-only.
    pub fn write_pba(&mut self, offset: u64, data: &[u8]) {
        warn_limited!(
            self.limit(),
            "msix: guest write to read-only PBA at {offset:#x} size {} ignored",
            data.len()
        );
    }

    /// Pending bit of `vector`: triggered while not deliverable.
    pub fn pending(&self, vector: usize) -> bool {
        self.vectors
            .get(vector)
            .is_some_and(|v| !v.irqfd_registered && eventfd_pending(&v.evt))
    }

    /// Raises `vector` (from a device model running in this process).
    pub fn trigger(&self, vector: usize) -> io::Result<()> {
        match self.vectors.get(vector) {
            Some(v) => v.evt.write(1),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no MSI-X vector {vector}"),
            )),
        }
    }

    /// The eventfd that raises `vector`; clone it (`try_clone`) to hand it to
    /// another thread or process.
    pub fn vector_eventfd(&self, vector: usize) -> Option<&EventFd> {
        self.vectors.get(vector).map(|v| &v.evt)
    }

    /// Replaces `vector`'s eventfd, e.g. with one a rendezvous server handed
    /// out so that a peer's doorbell interrupts this guest directly.
    pub fn set_vector_eventfd(&mut self, vector: usize, evt: EventFd) -> io::Result<()> {
        let Some(v) = self.vectors.get_mut(vector) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no MSI-X vector {vector}"),
            ));
        };
        if v.irqfd_registered {
            self.router.unregister_irqfd(&v.evt, v.gsi)?;
            v.irqfd_registered = false;
        }
        v.evt = evt;
        self.sync_vector(vector);
        Ok(())
    }

    /// Brings KVM's view of `index` (route + irqfd) in line with the table.
    fn sync_vector(&mut self, index: usize) {
        let deliverable = self.deliverable(index);
        let entry = self.entries[index];
        let v = &mut self.vectors[index];
        if deliverable {
            let want = (entry.address(), entry.data);
            if v.route != Some(want) {
                match self.router.set_msi_route(v.gsi, want.0, want.1) {
                    Ok(()) => v.route = Some(want),
                    Err(e) => {
                        crate::guest_log!(
                            error,
                            "msix: routing GSI {} to {:#x}/{:#x}: {e}",
                            v.gsi,
                            want.0,
                            want.1
                        );
                        return;
                    }
                }
            }
            if !v.irqfd_registered {
                match self.router.register_irqfd(&v.evt, v.gsi) {
                    Ok(()) => v.irqfd_registered = true,
                    Err(e) => crate::guest_log!(error, "msix: irqfd for GSI {}: {e}", v.gsi),
                }
            }
        } else if v.irqfd_registered {
            match self.router.unregister_irqfd(&v.evt, v.gsi) {
                Ok(()) => v.irqfd_registered = false,
                Err(e) => crate::guest_log!(error, "msix: removing irqfd for GSI {}: {e}", v.gsi),
            }
        }
    }
}

impl Drop for Msix {
    fn drop(&mut self) {
        for v in &self.vectors {
            if v.irqfd_registered {
                let _ = self.router.unregister_irqfd(&v.evt, v.gsi);
            }
            if v.route.is_some() {
                let _ = self.router.remove_route(v.gsi);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pci::config_space::{PciIds, COMMAND};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Records what MSI-X asks of KVM.
    #[derive(Default)]
    pub(crate) struct FakeRouter {
        pub next: Mutex<u32>,
        pub routes: Mutex<BTreeMap<u32, (u64, u32)>>,
        pub irqfds: Mutex<BTreeMap<u32, i32>>,
        pub route_updates: Mutex<u32>,
    }

    impl InterruptRouter for FakeRouter {
        fn allocate_gsi(&self) -> io::Result<u32> {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            Ok(23 + *n)
        }
        fn set_msi_route(&self, gsi: u32, address: u64, data: u32) -> io::Result<()> {
            *self.route_updates.lock().unwrap() += 1;
            self.routes.lock().unwrap().insert(gsi, (address, data));
            Ok(())
        }
        fn remove_route(&self, gsi: u32) -> io::Result<()> {
            self.routes.lock().unwrap().remove(&gsi);
            Ok(())
        }
        fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> io::Result<()> {
            self.irqfds.lock().unwrap().insert(gsi, evt.as_raw_fd());
            Ok(())
        }
        fn unregister_irqfd(&self, _evt: &EventFd, gsi: u32) -> io::Result<()> {
            self.irqfds.lock().unwrap().remove(&gsi);
            Ok(())
        }
    }

    fn setup(n: u16) -> (Arc<FakeRouter>, Msix, ConfigSpace, usize) {
        let router = Arc::new(FakeRouter::default());
        let mut msix = Msix::new(n, router.clone()).unwrap();
        let ids = PciIds {
            vendor: 1,
            device: 2,
            revision: 0,
            class: 0,
            subsystem_vendor: 0,
            subsystem: 0,
        };
        let mut cs = ConfigSpace::new(ids);
        let off = msix.add_capability(&mut cs, 1, 0, 1, 0x800).unwrap();
        (router, msix, cs, off)
    }

    fn write_entry(msix: &mut Msix, i: u64, addr: u64, data: u32, ctrl: u32) {
        let b = i * 16;
        msix.write_table(b, &((addr & 0xffff_ffff) as u32).to_le_bytes());
        msix.write_table(b + 4, &((addr >> 32) as u32).to_le_bytes());
        msix.write_table(b + 8, &data.to_le_bytes());
        msix.write_table(b + 12, &ctrl.to_le_bytes());
    }

    #[test]
    fn capability_layout() {
        let (_r, _m, cs, off) = setup(3);
        assert_eq!(cs.read_u16(off) & 0xff, 0x11);
        assert_eq!(cs.read_u16(off + 2), 2, "table size is N-1");
        assert_eq!(cs.read_u32(off + 4), 1, "table at BAR1 offset 0");
        assert_eq!(cs.read_u32(off + 8), 0x801, "PBA at BAR1 offset 0x800");
    }

    #[test]
    fn control_register_only_enable_and_mask_are_writable() {
        let (_r, mut m, mut cs, off) = setup(4);
        cs.write(off + 2, &[0xff, 0xff]);
        assert_eq!(cs.read_u16(off + 2), 0xc003);
        m.config_written(&cs);
        assert!(m.enabled() && m.function_masked());
        cs.write(off + 4, &[0xff; 8]);
        assert_eq!(cs.read_u32(off + 4), 1);
        // Unrelated config writes do not disturb MSI-X state.
        cs.write(COMMAND, &[0x6, 0]);
        m.config_written(&cs);
        assert!(m.enabled());
    }

    #[test]
    fn table_reads_back_and_vectors_start_masked() {
        let (_r, mut m, _cs, _) = setup(2);
        let mut b = [0u8; 4];
        m.read_table(12, &mut b);
        assert_eq!(u32::from_le_bytes(b), 1);
        write_entry(&mut m, 1, 0x1_fee0_100c, 0x4031, 0xffff_fffe);
        let mut q = [0u8; 8];
        m.read_table(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x1_fee0_100c);
        m.read_table(28, &mut b);
        assert_eq!(
            u32::from_le_bytes(b),
            0,
            "reserved vector-control bits read as 0"
        );
        // A 64-bit write covers two dwords.
        m.write_table(24, &0x0000_0001_0000_0777u64.to_le_bytes());
        assert_eq!(m.entry(1).unwrap().data, 0x777);
        assert_eq!(m.entry(1).unwrap().vector_control, 1);
    }

    #[test]
    fn bad_table_accesses_are_ignored() {
        let (r, mut m, _cs, _) = setup(2);
        let mut b = [0u8; 2];
        m.read_table(0, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        let mut d = [0u8; 4];
        m.read_table(32, &mut d);
        assert_eq!(d, [0xff; 4]);
        m.write_table(2, &[1, 2, 3, 4]);
        m.write_table(32, &[1, 2, 3, 4]);
        m.write_table(0, &[1]);
        assert_eq!(m.entry(0), Some(MsixTableEntry::default()));
        m.write_pba(0, &[0xff; 8]);
        assert_eq!(*r.route_updates.lock().unwrap(), 0);
    }

    #[test]
    fn routes_and_irqfds_follow_enable_and_masks() {
        let (r, mut m, _cs, _) = setup(2);
        let gsi0 = m.gsi(0).unwrap();
        write_entry(&mut m, 0, 0xfee0_0000, 0x41, 0);
        // Not enabled yet: nothing routed.
        assert!(r.routes.lock().unwrap().is_empty());
        m.set_control(MSIX_ENABLE);
        assert_eq!(
            r.routes.lock().unwrap().get(&gsi0),
            Some(&(0xfee0_0000, 0x41))
        );
        assert!(r.irqfds.lock().unwrap().contains_key(&gsi0));
        assert!(
            !r.irqfds.lock().unwrap().contains_key(&m.gsi(1).unwrap()),
            "vector 1 still masked"
        );
        // Retargeting an unmasked vector updates its route.
        m.write_table(8, &0x42u32.to_le_bytes());
        assert_eq!(
            r.routes.lock().unwrap().get(&gsi0),
            Some(&(0xfee0_0000, 0x42))
        );
        // Function mask removes every irqfd but keeps the route.
        m.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        assert!(r.irqfds.lock().unwrap().is_empty());
        m.set_control(MSIX_ENABLE);
        assert!(r.irqfds.lock().unwrap().contains_key(&gsi0));
        // Masking the vector removes its irqfd.
        m.write_table(12, &1u32.to_le_bytes());
        assert!(r.irqfds.lock().unwrap().is_empty());
        let updates = *r.route_updates.lock().unwrap();
        m.write_table(12, &0u32.to_le_bytes());
        assert_eq!(
            *r.route_updates.lock().unwrap(),
            updates,
            "unchanged message: no routing update"
        );
        drop(m);
        assert!(
            r.routes.lock().unwrap().is_empty(),
            "routes released on drop"
        );
    }

    #[test]
    fn pba_shows_triggers_while_masked() {
        let (_r, mut m, _cs, _) = setup(70);
        m.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        let mut q = [0u8; 8];
        m.read_pba(0, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0);
        m.trigger(3).unwrap();
        m.trigger(65).unwrap();
        m.read_pba(0, &mut q);
        assert_eq!(u64::from_le_bytes(q), 1 << 3);
        let mut d = [0u8; 4];
        m.read_pba(8, &mut d);
        assert_eq!(u32::from_le_bytes(d), 1 << 1);
        assert_eq!(m.pba_size(), 16);
        // Unmasking hands the pending signal to the irqfd (KVM delivers it on
        // assignment), so the bit clears; vector 65 stays masked and pending.
        write_entry(&mut m, 3, 0xfee0_0000, 0x30, 0);
        m.set_control(MSIX_ENABLE);
        assert!(!m.pending(3));
        assert!(m.pending(65));
        assert!(m.trigger(70).is_err());
        m.read_pba(16, &mut q);
        assert_eq!(q, [0xff; 8]);
    }

    #[test]
    fn signals_raised_while_disabled_are_dropped_on_enable() {
        let (_r, mut m, _cs, _) = setup(2);
        m.trigger(1).unwrap();
        assert!(m.pending(1));
        m.set_control(MSIX_ENABLE);
        assert!(!m.pending(1));
    }

    #[test]
    fn vector_eventfd_can_be_replaced() {
        let (r, mut m, _cs, _) = setup(1);
        write_entry(&mut m, 0, 0xfee0_0000, 0x30, 0);
        m.set_control(MSIX_ENABLE);
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let fd = evt.as_raw_fd();
        m.set_vector_eventfd(0, evt).unwrap();
        assert_eq!(r.irqfds.lock().unwrap().get(&m.gsi(0).unwrap()), Some(&fd));
        assert!(m.set_vector_eventfd(1, EventFd::new(0).unwrap()).is_err());
    }

    #[test]
    fn vector_count_is_validated() {
        let router = Arc::new(FakeRouter::default());
        assert!(Msix::new(0, router.clone()).is_err());
        assert!(Msix::new(2049, router).is_err());
    }
}
