//! The KVM VM: in-kernel irqchip and PIT, RAM slots, and the handle devices
//! use to reach KVM (memory slots, ioeventfds, interrupt routing).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use kvm_bindings::{
    kvm_enable_cap, kvm_pit_config, kvm_userspace_memory_region, KVM_CAP_HALT_POLL,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, NoDatamatch, VmFd};
use log::warn;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};
use vmm_sys_util::eventfd::EventFd;

use crate::irq::KvmInterruptRouter;
use crate::layout::{KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(kvm_ioctls::Error),
    #[error("KVM lacks capability {0}")]
    MissingCapability(&'static str),
    #[error("KVM_CREATE_VM: {0}")]
    CreateVm(kvm_ioctls::Error),
    #[error("{0}: {1}")]
    Setup(&'static str, kvm_ioctls::Error),
    #[error("guest memory: {0}")]
    GuestMemory(String),
    /// Building a KVM argument failed (a bug, not a guest or user error).
    #[error("{0}")]
    Config(String),
}

/// Opens /dev/kvm and checks what this VMM relies on.
pub fn open_kvm() -> Result<Kvm, VmError> {
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    for (cap, name) in [
        (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (Cap::Irqfd, "KVM_CAP_IRQFD"),
        (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
        (Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
        (Cap::Pit2, "KVM_CAP_PIT2"),
        (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
        (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(VmError::MissingCapability(name));
        }
    }
    Ok(kvm)
}

/// An ioeventfd's match condition: any write, or a write of exactly this value
/// (the width of the value is the width of the access that matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datamatch {
    Any,
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
}

/// Calls kvm-ioctls' `register_ioevent` or `unregister_ioevent` (`$method`)
/// with the value type a [`Datamatch`] stands for: the crate takes the
/// datamatch width from the argument's type, so each width is its own call.
macro_rules! with_datamatch {
    ($vm:expr, $method:ident, $evt:expr, $addr:expr, $datamatch:expr) => {
        match $datamatch {
            Datamatch::Any => $vm.$method($evt, $addr, NoDatamatch),
            Datamatch::U8(v) => $vm.$method($evt, $addr, v),
            Datamatch::U16(v) => $vm.$method($evt, $addr, v),
            Datamatch::U32(v) => $vm.$method($evt, $addr, v),
            Datamatch::U64(v) => $vm.$method($evt, $addr, v),
        }
    };
}

/// What devices may ask of KVM. Cheap to clone (`Arc`).
pub struct VmResources {
    // Field order is drop order: the router's and our VmFd references go
    // before the RAM mapping KVM points into.
    router: Arc<KvmInterruptRouter>,
    vm: Arc<VmFd>,
    next_slot: AtomicU32,
    _memory: GuestMemoryMmap,
}

impl VmResources {
    pub fn vm_fd(&self) -> &Arc<VmFd> {
        &self.vm
    }

    /// The GSI router for MSI-X (`Msix::new(n, resources.router())`).
    pub fn router(&self) -> Arc<KvmInterruptRouter> {
        Arc::clone(&self.router)
    }

    /// A KVM memory slot number nobody else uses.
    pub fn allocate_memslot(&self) -> u32 {
        self.next_slot.fetch_add(1, Ordering::Relaxed)
    }

    /// Maps `size` bytes of host memory at `host_addr` to guest `gpa` in `slot`
    /// (replacing what the slot mapped before).
    ///
    /// # Safety
    /// `host_addr..host_addr+size` must be a mapping that stays valid (not
    /// unmapped or remapped) until the slot is removed or the VM is gone; the
    /// guest reads and writes it at any time.
    pub unsafe fn set_user_memory(
        &self,
        slot: u32,
        gpa: u64,
        size: u64,
        host_addr: u64,
    ) -> Result<(), VmError> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host_addr,
        };
        // SAFETY: the caller guarantees the host range outlives the slot.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(|e| VmError::Setup("KVM_SET_USER_MEMORY_REGION", e))
    }

    /// Unmaps `slot` from the guest (KVM deletes a slot given size 0).
    pub fn remove_user_memory(&self, slot: u32) -> Result<(), VmError> {
        let region = kvm_userspace_memory_region {
            slot,
            ..Default::default()
        };
        // SAFETY: deleting a slot maps no host memory.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(|e| VmError::Setup("removing memory slot", e))
    }

    /// Makes guest writes to `addr` (matching `datamatch`) signal `evt`
    /// inside KVM, without a vCPU exit to this process.
    pub fn register_ioeventfd(
        &self,
        evt: &EventFd,
        addr: IoEventAddress,
        datamatch: Datamatch,
    ) -> Result<(), VmError> {
        with_datamatch!(self.vm, register_ioevent, evt, &addr, datamatch)
            .map_err(|e| VmError::Setup("KVM_IOEVENTFD", e))
    }

    /// Undoes `register_ioeventfd` (same arguments).
    pub fn unregister_ioeventfd(
        &self,
        evt: &EventFd,
        addr: IoEventAddress,
        datamatch: Datamatch,
    ) -> Result<(), VmError> {
        with_datamatch!(self.vm, unregister_ioevent, evt, &addr, datamatch)
            .map_err(|e| VmError::Setup("KVM_IOEVENTFD deassign", e))
    }

    /// Registers `evt` as irqfd for a legacy GSI (IOAPIC pin / ISA IRQ).
    pub fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> Result<(), VmError> {
        self.vm
            .register_irqfd(evt, gsi)
            .map_err(|e| VmError::Setup("KVM_IRQFD", e))
    }
}

pub struct Vm {
    pub kvm: Kvm,
    pub resources: Arc<VmResources>,
    pub memory: GuestMemoryMmap,
}

impl Vm {
    /// Creates the VM with irqchip, PIT and `memory` registered as RAM;
    /// `halt_poll_ns` overrides how long KVM polls a halted vCPU.
    pub fn new(
        kvm: Kvm,
        memory: GuestMemoryMmap,
        halt_poll_ns: Option<u32>,
    ) -> Result<Vm, VmError> {
        let vm = Arc::new(kvm.create_vm().map_err(VmError::CreateVm)?);
        if let Some(ns) = halt_poll_ns {
            set_halt_poll_ns(&kvm, &vm, ns)?;
        }
        // reason: KVM_TSS_ADDR is the constant 0xfffb_d000, below 4 GiB.
        #[allow(clippy::cast_possible_truncation)]
        let tss_addr = KVM_TSS_ADDR as usize;
        vm.set_tss_address(tss_addr)
            .map_err(|e| VmError::Setup("KVM_SET_TSS_ADDR", e))?;
        // Only Intel's real-mode emulation uses the identity map; a failure
        // elsewhere (e.g. a paravirtual KVM) is not fatal.
        if let Err(e) = vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR) {
            warn!("KVM_SET_IDENTITY_MAP_ADDR: {e}");
        }
        vm.create_irq_chip()
            .map_err(|e| VmError::Setup("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(|e| VmError::Setup("KVM_CREATE_PIT2", e))?;

        let mut slot = 0u32;
        for region in memory.iter() {
            let host = region
                .get_host_address(MemoryRegionAddress(0))
                .map_err(|e| VmError::GuestMemory(e.to_string()))?;
            let r = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the mapping belongs to `memory`; a clone of it (same
            // mappings, reference counted) lives in `VmResources` next to the
            // VM fd and is dropped after it, so the slot never outlives it.
            unsafe { vm.set_user_memory_region(r) }
                .map_err(|e| VmError::Setup("registering guest RAM", e))?;
            slot += 1;
        }
        let resources = Arc::new(VmResources {
            router: Arc::new(KvmInterruptRouter::new(vm.clone())),
            vm,
            next_slot: AtomicU32::new(slot),
            _memory: memory.clone(),
        });
        Ok(Vm {
            kvm,
            resources,
            memory,
        })
    }
}

/// Sets the VM's halt-polling limit (`KVM_CAP_HALT_POLL`): how long a vCPU
/// that halts keeps polling for a wake-up before its thread sleeps.
fn set_halt_poll_ns(kvm: &Kvm, vm: &VmFd, ns: u32) -> Result<(), VmError> {
    if kvm.check_extension_raw(u64::from(KVM_CAP_HALT_POLL)) <= 0 {
        return Err(VmError::Setup(
            "KVM_CAP_HALT_POLL (this KVM cannot set halt polling per VM)",
            kvm_ioctls::Error::new(libc::EINVAL),
        ));
    }
    let cap = kvm_enable_cap {
        cap: KVM_CAP_HALT_POLL,
        args: [u64::from(ns), 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .map_err(|e| VmError::Setup("KVM_ENABLE_CAP(KVM_CAP_HALT_POLL)", e))
}
