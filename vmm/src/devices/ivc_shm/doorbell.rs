//! Doorbell ioeventfds: one KVM ioeventfd per (peer, vector) on BAR0's
//! Doorbell register, datamatch `peer << 16 | vector`, signalling that
//! peer's eventfd for that vector (handed out by the rendezvous server);
//! the same set again on the I/O-port doorbell in BAR4 (an extension: a
//! port write exits more cheaply than an MMIO write on some hosts).
//!
//! A guest's Doorbell write then wakes the peer VMM's irqfd inside the
//! kernel: no exit to this process, no exit in the peer's VMM. Only writes
//! that match nothing (unknown peer, vector out of range, wrong width) exit
//! to the VMM, which logs them. The set follows peers joining and leaving
//! and BAR0 moving.

use std::collections::BTreeMap;

use ivc_abi::ivshmem::{Doorbell, IO_REG_DOORBELL, REG_DOORBELL};
use kvm_ioctls::IoEventAddress;
use vmm_sys_util::eventfd::EventFd;

use crate::vm::{Datamatch, VmError, VmResources};

/// Where ioeventfds are registered: KVM (`VmResources`) or a test double.
pub trait IoEventRegistry: Send + Sync {
    fn register(&self, evt: &EventFd, addr: IoEventAddress, value: u32) -> Result<(), VmError>;
    fn unregister(&self, evt: &EventFd, addr: IoEventAddress, value: u32) -> Result<(), VmError>;
}

impl IoEventRegistry for VmResources {
    fn register(&self, evt: &EventFd, addr: IoEventAddress, value: u32) -> Result<(), VmError> {
        self.register_ioeventfd(evt, addr, Datamatch::U32(value))
    }
    fn unregister(&self, evt: &EventFd, addr: IoEventAddress, value: u32) -> Result<(), VmError> {
        self.unregister_ioeventfd(evt, addr, Datamatch::U32(value))
    }
}

/// Which doorbell register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorbellBar {
    /// ivshmem's Doorbell, BAR0 + 0x0c (MMIO).
    Mmio = 0,
    /// The extension: BAR4 + 0 (I/O port).
    Io = 1,
}

impl DoorbellBar {
    fn address(self, base: u64) -> IoEventAddress {
        match self {
            DoorbellBar::Mmio => IoEventAddress::Mmio(base + u64::from(REG_DOORBELL)),
            DoorbellBar::Io => IoEventAddress::Pio(base + u64::from(IO_REG_DOORBELL)),
        }
    }
}

const BARS: [DoorbellBar; 2] = [DoorbellBar::Mmio, DoorbellBar::Io];

struct PeerVectors {
    fds: Vec<EventFd>,
    /// Which of `fds` are registered with KVM at the current base of each
    /// doorbell BAR (indexed by `DoorbellBar as usize`).
    registered: Vec<[bool; 2]>,
}

/// The doorbell table of one device.
pub struct Doorbells<R: IoEventRegistry + ?Sized> {
    registry: std::sync::Arc<R>,
    peers: BTreeMap<u16, PeerVectors>,
    /// Base of each doorbell BAR while decoded.
    bases: [Option<u64>; 2],
}

/// Why a Doorbell write could not be delivered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("no peer {0}")]
    UnknownPeer(u16),
    #[error("peer {peer} has {vectors} vectors, not {vector}")]
    NoSuchVector {
        peer: u16,
        vector: u16,
        vectors: usize,
    },
    #[error("signalling the eventfd: {0}")]
    Signal(String),
}

impl<R: IoEventRegistry + ?Sized> Doorbells<R> {
    pub fn new(registry: std::sync::Arc<R>) -> Self {
        Doorbells {
            registry,
            peers: BTreeMap::new(),
            bases: [None, None],
        }
    }

    /// The datamatch of a Doorbell write ringing `vector` of `peer`, or
    /// `None` if the index does not fit the register's 16-bit vector field
    /// (a guest cannot ring such a vector).
    fn value(peer: u16, vector: usize) -> Option<u32> {
        let vector = u16::try_from(vector).ok()?;
        Some(Doorbell { peer, vector }.value())
    }

    fn register_peer(registry: &R, bar: DoorbellBar, base: u64, id: u16, p: &mut PeerVectors) {
        let b = bar as usize;
        for (v, fd) in p.fds.iter().enumerate() {
            if p.registered[v][b] {
                continue;
            }
            // The eventfds come from the rendezvous server: more than a
            // Doorbell write can address are left without an ioeventfd.
            let Some(value) = Self::value(id, v) else {
                crate::guest_log!(
                    error,
                    "ivc-shm: peer {id} vector {v} cannot be addressed by a Doorbell write; ignored"
                );
                break;
            };
            match registry.register(fd, bar.address(base), value) {
                Ok(()) => p.registered[v][b] = true,
                // The write will then exit to the VMM, which signals the
                // eventfd itself: slower, still correct.
                Err(e) => {
                    crate::guest_log!(
                        error,
                        "ivc-shm: {bar:?} doorbell ioeventfd for peer {id} vector {v}: {e}"
                    )
                }
            }
        }
    }

    fn unregister_peer(registry: &R, bar: DoorbellBar, base: u64, id: u16, p: &mut PeerVectors) {
        let b = bar as usize;
        for (v, fd) in p.fds.iter().enumerate() {
            if !p.registered[v][b] {
                continue;
            }
            // Registered implies register_peer found a value for it.
            let Some(value) = Self::value(id, v) else {
                continue;
            };
            if let Err(e) = registry.unregister(fd, bar.address(base), value) {
                crate::guest_log!(
                    error,
                    "ivc-shm: removing {bar:?} doorbell ioeventfd for peer {id} vector {v}: {e}"
                );
            }
            p.registered[v][b] = false;
        }
    }

    /// Peer `id` is known with these eventfds (replacing older ones).
    pub fn add_peer(&mut self, id: u16, fds: Vec<EventFd>) {
        self.remove_peer(id);
        let mut p = PeerVectors {
            registered: vec![[false; 2]; fds.len()],
            fds,
        };
        for bar in BARS {
            if let Some(base) = self.bases[bar as usize] {
                Self::register_peer(&self.registry, bar, base, id, &mut p);
            }
        }
        self.peers.insert(id, p);
    }

    /// Peer `id` left: its ioeventfds go before its eventfds are closed.
    pub fn remove_peer(&mut self, id: u16) {
        if let Some(mut p) = self.peers.remove(&id) {
            for bar in BARS {
                if let Some(base) = self.bases[bar as usize] {
                    Self::unregister_peer(&self.registry, bar, base, id, &mut p);
                }
            }
        }
    }

    /// Doorbell BAR `bar` stopped decoding at `old` / started at `new`.
    pub fn moved(&mut self, bar: DoorbellBar, old: Option<u64>, new: Option<u64>) {
        if let Some(old) = old {
            for (&id, p) in self.peers.iter_mut() {
                Self::unregister_peer(&self.registry, bar, old, id, p);
            }
        }
        self.bases[bar as usize] = new;
        if let Some(new) = new {
            for (&id, p) in self.peers.iter_mut() {
                Self::register_peer(&self.registry, bar, new, id, p);
            }
        }
    }

    pub fn peer_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.peers.keys().copied()
    }

    /// Number of registered ioeventfds (for tests and logs).
    pub fn registered(&self) -> usize {
        self.peers
            .values()
            .map(|p| p.registered.iter().flatten().filter(|&&r| r).count())
            .sum()
    }

    /// Delivers a Doorbell write that reached the VMM (no ioeventfd
    /// matched: a registration failed) by signalling the eventfd here.
    pub fn ring(&self, d: Doorbell) -> Result<(), RingError> {
        let p = self
            .peers
            .get(&d.peer)
            .ok_or(RingError::UnknownPeer(d.peer))?;
        let fd = p
            .fds
            .get(usize::from(d.vector))
            .ok_or(RingError::NoSuchVector {
                peer: d.peer,
                vector: d.vector,
                vectors: p.fds.len(),
            })?;
        fd.write(1).map_err(|e| RingError::Signal(e.to_string()))
    }
}

impl<R: IoEventRegistry + ?Sized> Drop for Doorbells<R> {
    fn drop(&mut self) {
        for bar in BARS {
            self.moved(bar, self.bases[bar as usize], None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[derive(Default)]
    struct Fake {
        /// (addr, value) -> fd; port addresses are stored with bit 63 set.
        live: Mutex<BTreeMap<(u64, u32), i32>>,
        fail_value: Mutex<Option<u32>>,
    }

    fn key(addr: IoEventAddress) -> u64 {
        match addr {
            IoEventAddress::Mmio(a) => a,
            IoEventAddress::Pio(p) => p | 1 << 63,
        }
    }

    impl IoEventRegistry for Fake {
        fn register(&self, evt: &EventFd, addr: IoEventAddress, value: u32) -> Result<(), VmError> {
            if *self.fail_value.lock().unwrap() == Some(value) {
                return Err(VmError::Config("injected".into()));
            }
            let old = self
                .live
                .lock()
                .unwrap()
                .insert((key(addr), value), evt.as_raw_fd());
            assert!(old.is_none(), "double registration at {addr:?}/{value:#x}");
            Ok(())
        }
        fn unregister(
            &self,
            _evt: &EventFd,
            addr: IoEventAddress,
            value: u32,
        ) -> Result<(), VmError> {
            assert!(self
                .live
                .lock()
                .unwrap()
                .remove(&(key(addr), value))
                .is_some());
            Ok(())
        }
    }

    fn fds(n: usize) -> Vec<EventFd> {
        (0..n)
            .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
            .collect()
    }

    #[test]
    fn follows_peers_and_bar_moves() {
        let fake = Arc::new(Fake::default());
        let mut d = Doorbells::new(fake.clone());
        d.add_peer(3, fds(2));
        assert_eq!(fake.live.lock().unwrap().len(), 0, "BAR0 not decoded yet");
        d.moved(DoorbellBar::Mmio, None, Some(0x1000));
        let keys: Vec<_> = fake.live.lock().unwrap().keys().copied().collect();
        assert_eq!(keys, vec![(0x100c, 0x30000), (0x100c, 0x30001)]);
        d.add_peer(9, fds(2));
        assert_eq!(d.registered(), 4);
        d.moved(DoorbellBar::Mmio, Some(0x1000), Some(0x2000));
        assert!(fake.live.lock().unwrap().keys().all(|k| k.0 == 0x200c));
        d.remove_peer(3);
        let keys: Vec<_> = fake.live.lock().unwrap().keys().copied().collect();
        assert_eq!(keys, vec![(0x200c, 0x90000), (0x200c, 0x90001)]);
        // The I/O doorbell gets the same set, on the port.
        d.moved(DoorbellBar::Io, None, Some(0xc040));
        assert_eq!(d.registered(), 4);
        assert!(fake
            .live
            .lock()
            .unwrap()
            .contains_key(&(0xc040 | 1 << 63, 0x90001)));
        d.moved(DoorbellBar::Mmio, Some(0x2000), None);
        d.moved(DoorbellBar::Io, Some(0xc040), None);
        assert!(fake.live.lock().unwrap().is_empty());
        d.moved(DoorbellBar::Mmio, None, Some(0x3000));
        d.moved(DoorbellBar::Io, None, Some(0xc000));
        drop(d);
        assert!(fake.live.lock().unwrap().is_empty(), "drop unregisters");
    }

    #[test]
    fn ring_validates_and_falls_back_to_userspace() {
        let fake = Arc::new(Fake::default());
        *fake.fail_value.lock().unwrap() = Some(0x0005_0001);
        let mut d = Doorbells::new(fake.clone());
        d.moved(DoorbellBar::Mmio, None, Some(0));
        let f = fds(2);
        let probe = f[1].try_clone().unwrap();
        d.add_peer(5, f);
        assert_eq!(d.registered(), 1, "the failed one stays unregistered");
        d.ring(Doorbell { peer: 5, vector: 1 }).unwrap();
        assert_eq!(probe.read().unwrap(), 1);
        assert_eq!(
            d.ring(Doorbell { peer: 6, vector: 0 }),
            Err(RingError::UnknownPeer(6))
        );
        assert!(matches!(
            d.ring(Doorbell { peer: 5, vector: 2 }),
            Err(RingError::NoSuchVector { .. })
        ));
    }

    #[test]
    fn vectors_past_16_bits_have_no_datamatch() {
        assert_eq!(Doorbells::<Fake>::value(1, 0xffff), Some(0x1_ffff));
        // Truncated, 0x1_0000 would alias vector 0 of the same peer.
        assert_eq!(Doorbells::<Fake>::value(1, 0x1_0000), None);
    }
}
