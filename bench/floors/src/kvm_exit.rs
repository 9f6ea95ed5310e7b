//! Raw `KVM_EXIT_IO` round trip: the floor of the `pio` channel, where every
//! port access is one VM exit that the VMM handles in user space.
//!
//! A tiny VM with one page of RAM runs `out 0x10, al; jmp $-2` forever in
//! 16-bit real mode (CS base 0). Each `KVM_RUN` enters the guest, which
//! exits at once on the `out`; the time of one `KVM_RUN` ioctl is the round
//! trip user space -> guest -> exit -> user space, with nothing else in it.
//! If real mode is refused (some KVM variants cannot run it), the same code
//! runs in 32-bit protected mode with flat segments.
//!
//! On these machines `/dev/kvm` is a paravirtual KVM (PVM): guest kernel
//! mode is emulated, so this floor is the PVM exit cost, not a hardware
//! VM exit. The runner labels it so.

use std::time::{Duration, Instant};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use vm_memory::{MmapRegion, VolatileMemory};

use crate::model::{ns, Latency};

/// Where the code page sits in guest-physical memory.
const CODE_ADDR: u64 = 0x1000;
/// The port written (no device; the exit is all that matters).
const PORT: u16 = 0x10;
/// `out 0x10, al` ; `jmp short -4` (back to the `out`). The same bytes
/// mean the same in 16- and 32-bit code.
const CODE: [u8; 4] = [0xe6, PORT as u8, 0xeb, 0xfc];
/// `KVM_RUN`s averaged into one sample.
pub const BATCH: u64 = 16;

/// Which CPU mode the loop ran in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 16-bit real mode.
    Real,
    /// 32-bit protected mode, flat segments, paging off.
    Protected32,
}

/// What the host's KVM is, for labels and skip messages.
pub fn describe_kvm() -> String {
    if !std::path::Path::new("/dev/kvm").exists() {
        return "no /dev/kvm".into();
    }
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return "PVM (paravirtual KVM, no VMX/SVM; guest kernel mode emulated)".into();
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    if flags.split_whitespace().any(|f| f == "vmx" || f == "svm") {
        "hardware virtualization (VMX/SVM)".into()
    } else {
        "KVM without VMX/SVM flags".into()
    }
}

/// Whether Linux guests could run under this host's /dev/kvm at full speed
/// (it has hardware virtualization, not PVM); the reason when not.
pub fn hardware_virtualization() -> Result<(), String> {
    let d = describe_kvm();
    if d.starts_with("hardware") {
        Ok(())
    } else {
        Err(format!("no hardware virtualization: /dev/kvm is {d}"))
    }
}

struct Guest {
    vcpu: VcpuFd,
    _vm: kvm_ioctls::VmFd,
    // Declared after the VM so that it is dropped (unmapped) after the VM
    // that uses it as a memory slot.
    _mem: MmapRegion,
}

fn build(mode: Mode) -> Result<Guest, String> {
    let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    // Real mode on Intel without unrestricted guest needs these; where they
    // are not supported (or not needed) a failure is harmless.
    let _ = vm.set_tss_address(0xfffb_d000);
    // One page of anonymous private memory, unmapped when dropped.
    let mem = MmapRegion::build(
        None,
        4096,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
    )
    .map_err(|e| format!("mmap: {e}"))?;
    mem.get_slice(0, CODE.len())
        .map_err(|e| format!("code page: {e}"))?
        .copy_from(&CODE);
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: CODE_ADDR,
        memory_size: 4096,
        userspace_addr: mem.as_ptr() as u64,
    };
    // SAFETY: the region is a valid mapping that outlives the VM (both are
    // owned by the returned `Guest`, the VM dropped first).
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    match mode {
        Mode::Real => {
            sregs.cs.base = 0;
            sregs.cs.selector = 0;
        }
        Mode::Protected32 => {
            for s in [
                &mut sregs.cs,
                &mut sregs.ds,
                &mut sregs.es,
                &mut sregs.ss,
                &mut sregs.fs,
                &mut sregs.gs,
            ] {
                s.base = 0;
                s.limit = 0xffff_ffff;
                s.g = 1;
                s.db = 1;
                s.present = 1;
                s.s = 1;
                s.dpl = 0;
                s.l = 0;
            }
            sregs.cs.selector = 0x8;
            sregs.cs.type_ = 0xb; // execute/read, accessed
            for s in [
                &mut sregs.ds,
                &mut sregs.es,
                &mut sregs.ss,
                &mut sregs.fs,
                &mut sregs.gs,
            ] {
                s.selector = 0x10;
                s.type_ = 0x3; // read/write, accessed
            }
            sregs.cr0 |= 1; // PE
        }
    }
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    regs.rip = CODE_ADDR;
    regs.rflags = 2;
    regs.rax = 0x42;
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    Ok(Guest {
        vcpu,
        _vm: vm,
        _mem: mem,
    })
}

/// One `KVM_RUN`, which must end in our `out`.
fn run_once(vcpu: &mut VcpuFd) -> Result<(), String> {
    match vcpu.run() {
        Ok(VcpuExit::IoOut(PORT, data)) if data.first() == Some(&0x42) => Ok(()),
        Ok(other) => Err(format!("unexpected exit {other:?}")),
        Err(e) => Err(format!("KVM_RUN: {e}")),
    }
}

/// Measures for about `budget`; tries real mode first, then 32-bit mode.
/// The error says why neither ran (no /dev/kvm, permissions, KVM refusal).
pub fn measure(budget: Duration, min_samples: usize) -> Result<(Latency, Mode), String> {
    if !std::path::Path::new("/dev/kvm").exists() {
        return Err("no /dev/kvm on this host".into());
    }
    let mut why = Vec::new();
    for mode in [Mode::Real, Mode::Protected32] {
        let attempt = build(mode).and_then(|mut g| {
            // The first entries set the vCPU up; do not time them.
            for _ in 0..8 {
                run_once(&mut g.vcpu)?;
            }
            Ok(g)
        });
        let mut g = match attempt {
            Ok(g) => g,
            Err(e) => {
                why.push(format!("{mode:?}: {e}"));
                continue;
            }
        };
        let mut samples = Vec::new();
        let start = Instant::now();
        while samples.len() < min_samples || start.elapsed() < budget {
            let t0 = Instant::now();
            for _ in 0..BATCH {
                run_once(&mut g.vcpu)?;
            }
            samples.push(ns(t0.elapsed()));
        }
        let l = Latency::from_samples(0, BATCH, &mut samples).ok_or("no samples")?;
        return Ok((l, mode));
    }
    Err(why.join("; "))
}
