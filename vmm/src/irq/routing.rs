//! The KVM GSI routing table.
//!
//! KVM_SET_GSI_ROUTING replaces the whole table, so the table is rebuilt from
//! scratch on every change: first the routes KVM installs by default for the
//! in-kernel irqchip (GSI 0-15 to the PICs and the IOAPIC, 16-23 to the
//! IOAPIC; dropping them would silence the PIT, the serial port, ...), then
//! one MSI route per allocated vector.
//!
//! `InterruptRouter` is the interface devices see; tests substitute a fake.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use crate::layout::{FIRST_MSI_GSI, IOAPIC_NUM_PINS};

/// KVM's default limit on routes (KVM_MAX_IRQ_ROUTES is 4096); we stay far below.
pub const MAX_GSI: u32 = 4096;

/// What an MSI-X implementation needs from the hypervisor.
pub trait InterruptRouter: Send + Sync {
    /// A fresh GSI for an MSI route.
    fn allocate_gsi(&self) -> io::Result<u32>;
    /// Routes `gsi` to the MSI message (address, data).
    fn set_msi_route(&self, gsi: u32, address: u64, data: u32) -> io::Result<()>;
    /// Drops the MSI route of `gsi` (no-op if there is none).
    fn remove_route(&self, gsi: u32) -> io::Result<()>;
    /// Makes a write to `evt` inject `gsi`.
    fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> io::Result<()>;
    fn unregister_irqfd(&self, evt: &EventFd, gsi: u32) -> io::Result<()>;
}

fn irqchip_entry(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    e
}

fn msi_entry(gsi: u32, address: u64, data: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    e.u.msi.address_lo = (address & 0xffff_ffff) as u32;
    e.u.msi.address_hi = (address >> 32) as u32;
    e.u.msi.data = data;
    e
}

/// The whole table: the legacy irqchip routes plus `msi` (gsi -> (address, data)).
pub fn routing_entries(msi: &BTreeMap<u32, (u64, u32)>) -> Vec<kvm_irq_routing_entry> {
    let mut v = Vec::with_capacity(16 + IOAPIC_NUM_PINS as usize + msi.len());
    for gsi in 0..16 {
        // GSI 2 is the cascade on the PIC side; KVM routes it to the IOAPIC only.
        if gsi < 8 {
            if gsi != 2 {
                v.push(irqchip_entry(gsi, KVM_IRQCHIP_PIC_MASTER, gsi));
            }
        } else {
            v.push(irqchip_entry(gsi, KVM_IRQCHIP_PIC_SLAVE, gsi - 8));
        }
    }
    for gsi in 0..IOAPIC_NUM_PINS {
        v.push(irqchip_entry(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    for (&gsi, &(address, data)) in msi {
        v.push(msi_entry(gsi, address, data));
    }
    v
}

struct RoutingState {
    next_gsi: u32,
    msi: BTreeMap<u32, (u64, u32)>,
}

/// `InterruptRouter` on a real KVM VM.
pub struct KvmInterruptRouter {
    vm: Arc<VmFd>,
    state: Mutex<RoutingState>,
}

fn kvm_err(e: kvm_ioctls::Error) -> io::Error {
    io::Error::from_raw_os_error(e.errno())
}

impl KvmInterruptRouter {
    pub fn new(vm: Arc<VmFd>) -> Self {
        KvmInterruptRouter {
            vm,
            state: Mutex::new(RoutingState {
                next_gsi: FIRST_MSI_GSI,
                msi: BTreeMap::new(),
            }),
        }
    }

    fn commit(&self, msi: &BTreeMap<u32, (u64, u32)>) -> io::Result<()> {
        let entries = routing_entries(msi);
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|e| io::Error::other(format!("building routing table: {e:?}")))?;
        self.vm.set_gsi_routing(&table).map_err(kvm_err)
    }
}

impl InterruptRouter for KvmInterruptRouter {
    fn allocate_gsi(&self) -> io::Result<u32> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.next_gsi >= MAX_GSI {
            return Err(io::Error::other("out of GSIs"));
        }
        let gsi = st.next_gsi;
        st.next_gsi += 1;
        Ok(gsi)
    }

    fn set_msi_route(&self, gsi: u32, address: u64, data: u32) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let previous = st.msi.insert(gsi, (address, data));
        if previous == Some((address, data)) {
            return Ok(());
        }
        let r = self.commit(&st.msi);
        if r.is_err() {
            // Keep our copy equal to what KVM has.
            match previous {
                Some(p) => st.msi.insert(gsi, p),
                None => st.msi.remove(&gsi),
            };
        }
        r
    }

    fn remove_route(&self, gsi: u32) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.msi.remove(&gsi).is_none() {
            return Ok(());
        }
        self.commit(&st.msi)
    }

    fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> io::Result<()> {
        self.vm.register_irqfd(evt, gsi).map_err(kvm_err)
    }

    fn unregister_irqfd(&self, evt: &EventFd, gsi: u32) -> io::Result<()> {
        self.vm.unregister_irqfd(evt, gsi).map_err(kvm_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_routes_survive_msi_updates() {
        let mut msi = BTreeMap::new();
        msi.insert(24, (0xfee0_0000u64, 0x4041u32));
        msi.insert(30, (0x1_fee0_1000u64, 0x22u32));
        let v = routing_entries(&msi);
        // 15 PIC routes (no cascade GSI 2), 24 IOAPIC routes, 2 MSI routes.
        assert_eq!(v.len(), 15 + 24 + 2);
        let ioapic: Vec<_> = v
            .iter()
            .filter(|e| e.type_ == KVM_IRQ_ROUTING_IRQCHIP)
            // SAFETY: irqchip entries were built with the irqchip union member.
            .filter(|e| unsafe { e.u.irqchip.irqchip } == KVM_IRQCHIP_IOAPIC)
            .collect();
        assert_eq!(ioapic.len(), 24);
        for (e, i) in ioapic.iter().zip(0u32..) {
            assert_eq!(e.gsi, i);
            // SAFETY: as above.
            assert_eq!(unsafe { e.u.irqchip.pin }, i);
        }
        // The serial port's GSI 4 reaches both the master PIC and the IOAPIC.
        assert_eq!(v.iter().filter(|e| e.gsi == 4).count(), 2);
        let m: Vec<_> = v
            .iter()
            .filter(|e| e.type_ == KVM_IRQ_ROUTING_MSI)
            .collect();
        assert_eq!(m.len(), 2);
        // SAFETY: MSI entries were built with the msi union member.
        let (lo, hi, data) = unsafe {
            (
                m[1].u.msi.address_lo,
                m[1].u.msi.address_hi,
                m[1].u.msi.data,
            )
        };
        assert_eq!((m[1].gsi, lo, hi, data), (30, 0xfee0_1000, 1, 0x22));
    }
}
