//! A vCPU: initial state and the KVM_RUN loop that turns exits into bus
//! accesses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kvm_bindings::{
    CpuId, Msrs, KVM_MAX_CPUID_ENTRIES, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd};
use log::{debug, error, warn};

use crate::cpu::{cpuid, lapic, msrs, regs, state_report};
use crate::exit::{ExitReason, VmExit};
use crate::io_bus::Bus;
use crate::vm::VmError;

pub use crate::boot::BootEntry;

pub struct Vcpu {
    id: u8,
    fd: VcpuFd,
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    exit: Arc<VmExit>,
    reports: Arc<ReportRequests>,
    /// Requests this vCPU has answered.
    reported: u64,
}

/// Requests for a state report (SIGUSR1): the main thread counts one and
/// kicks the vCPU threads out of KVM_RUN; each thread logs its state once
/// for every count it has not answered yet. A kick that lands just before
/// KVM_RUN is lost, so the request waits for the vCPU's next exit.
#[derive(Default)]
pub struct ReportRequests(AtomicU64);

impl ReportRequests {
    pub fn ask(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn setup_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmError {
    move |e| VmError::Setup(what, e)
}

impl Vcpu {
    pub fn new(
        id: u8,
        fd: VcpuFd,
        io_bus: Arc<Bus>,
        mmio_bus: Arc<Bus>,
        exit: Arc<VmExit>,
        reports: Arc<ReportRequests>,
    ) -> Self {
        let reported = reports.count();
        Vcpu {
            id,
            fd,
            io_bus,
            mmio_bus,
            exit,
            reports,
            reported,
        }
    }

    /// Sets CPUID, MSRs and LAPIC; the boot CPU also gets the PVH entry
    /// registers. Application processors wait for INIT/SIPI in KVM.
    pub fn configure(
        &self,
        kvm: &Kvm,
        num_cpus: u8,
        boot: Option<BootEntry>,
    ) -> Result<(), VmError> {
        let mut cpuid: CpuId = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(setup_err("KVM_GET_SUPPORTED_CPUID"))?;
        let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
        cpuid::filter(cpuid.as_mut_slice(), self.id, num_cpus, tsc_deadline);
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(setup_err("KVM_SET_CPUID2"))?;

        let wanted = msrs::boot_msrs();
        let list = Msrs::from_entries(&wanted)
            .map_err(|e| VmError::Config(format!("boot MSR list: {e:?}")))?;
        let set = self.fd.set_msrs(&list).map_err(setup_err("KVM_SET_MSRS"))?;
        if set != wanted.len() {
            // KVM stops at the first MSR it rejects; the guest copes with the
            // reset values of the rest.
            warn!(
                "vcpu{}: KVM accepted {set} of {} boot MSRs (first rejected: {:#x})",
                self.id,
                wanted.len(),
                wanted[set].index
            );
        }

        if let Some(b) = boot {
            let sregs = self.fd.get_sregs().map_err(setup_err("KVM_GET_SREGS"))?;
            self.fd
                .set_sregs(&regs::boot_sregs(sregs, b.gdt_base, b.gdt_limit))
                .map_err(setup_err("KVM_SET_SREGS"))?;
            self.fd
                .set_regs(&regs::boot_regs(b.entry, b.info))
                .map_err(setup_err("KVM_SET_REGS"))?;
            self.fd
                .set_fpu(&regs::boot_fpu())
                .map_err(setup_err("KVM_SET_FPU"))?;
        }

        let mut l = self.fd.get_lapic().map_err(setup_err("KVM_GET_LAPIC"))?;
        lapic::set_lint_modes(&mut l);
        self.fd.set_lapic(&l).map_err(setup_err("KVM_SET_LAPIC"))?;
        Ok(())
    }

    /// Runs until the VM is asked to stop (by this or another vCPU, a
    /// device, or a signal kick).
    pub fn run(&mut self) {
        if inject_panic(self.id) {
            panic!("vcpu{}: IVC_VMM_INJECT_PANIC asked for this panic", self.id);
        }
        while !self.exit.requested() {
            let asked = self.reports.count();
            if asked != self.reported {
                self.reported = asked;
                warn!("{}", state_report::report(self.id, &self.fd));
            }
            let outcome = match self.fd.run() {
                Ok(exit) => handle_exit(self.id, &self.io_bus, &self.mmio_bus, exit),
                // EINTR: a kick from the main thread; EAGAIN: retry.
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
                Err(e) => Some(ExitReason::Error(format!("vcpu{}: KVM_RUN: {e}", self.id))),
            };
            if let Some(mut reason) = outcome {
                if let ExitReason::Error(msg) = &mut reason {
                    if let Ok(r) = self.fd.get_regs() {
                        msg.push_str(&format!(" (rip {:#x})", r.rip));
                    }
                    error!("{msg}");
                }
                if reason == ExitReason::TripleFault {
                    // The guest cannot say what killed it: its registers can.
                    warn!("vcpu{}: triple fault: {}", self.id, self.crash_state());
                }
                self.exit.request(reason);
            }
        }
    }
}

impl Vcpu {
    /// Where the vCPU stood, for the log of a crash: instruction and stack
    /// pointers, the control registers, and the last fault address.
    fn crash_state(&self) -> String {
        let regs = self.fd.get_regs();
        let sregs = self.fd.get_sregs();
        match (regs, sregs) {
            (Ok(r), Ok(s)) => format!(
                "rip {:#x} rsp {:#x} rflags {:#x} cs {:#x} cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} idt {:#x}/{:#x}",
                r.rip, r.rsp, r.rflags, s.cs.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.idt.base, s.idt.limit
            ),
            (Err(e), _) | (_, Err(e)) => format!("registers unavailable: {e}"),
        }
    }
}

/// Turns one exit into bus accesses; returns why the VM must stop, if it must.
fn handle_exit(id: u8, io_bus: &Bus, mmio_bus: &Bus, exit: VcpuExit) -> Option<ExitReason> {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !io_bus.read(u64::from(port), data) {
                // Nothing decodes the port: the ISA bus floats high.
                debug!("vcpu{id}: in from unclaimed port {port:#x}");
                data.fill(0xff);
            }
            None
        }
        VcpuExit::IoOut(port, data) => {
            if !io_bus.write(u64::from(port), data) {
                debug!("vcpu{id}: out {data:x?} to unclaimed port {port:#x}");
            }
            None
        }
        VcpuExit::MmioRead(addr, data) => {
            if !mmio_bus.read(addr, data) {
                debug!("vcpu{id}: read from unclaimed MMIO {addr:#x}");
                data.fill(0xff);
            }
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            if !mmio_bus.write(addr, data) {
                debug!("vcpu{id}: write to unclaimed MMIO {addr:#x}");
            }
            None
        }
        VcpuExit::Hlt => Some(ExitReason::Halted),
        VcpuExit::Shutdown => Some(ExitReason::TripleFault),
        VcpuExit::SystemEvent(kind, _) => match kind {
            KVM_SYSTEM_EVENT_RESET => Some(ExitReason::Reset),
            KVM_SYSTEM_EVENT_SHUTDOWN => Some(ExitReason::PowerOff),
            other => Some(ExitReason::Error(format!("vcpu{id}: system event {other}"))),
        },
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => None,
        VcpuExit::FailEntry(reason, cpu) => Some(ExitReason::Error(format!(
            "vcpu{id}: KVM_EXIT_FAIL_ENTRY reason {reason:#x} on host cpu {cpu}"
        ))),
        VcpuExit::InternalError => Some(ExitReason::Error(format!(
            "vcpu{id}: KVM_EXIT_INTERNAL_ERROR"
        ))),
        other => Some(ExitReason::Error(format!(
            "vcpu{id}: unexpected exit {other:?}"
        ))),
    }
}

/// Fault injection for the test that a panic stops the whole VMM:
/// `IVC_VMM_INJECT_PANIC=vcpuN` panics vCPU N's thread as it starts.
fn inject_panic(id: u8) -> bool {
    std::env::var("IVC_VMM_INJECT_PANIC").is_ok_and(|v| v == format!("vcpu{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_bus::{BusDevice, BusKind};
    use std::sync::Mutex;

    struct Echo;
    impl BusDevice for Echo {
        fn read(&mut self, _b: u64, offset: u64, data: &mut [u8]) {
            data.fill((offset & 0xff) as u8 + 1);
        }
        fn write(&mut self, _b: u64, _o: u64, _d: &[u8]) {}
    }

    fn buses() -> (Bus, Bus) {
        let io = Bus::new(BusKind::Io);
        io.insert(0x70, 2, Arc::new(Mutex::new(Echo))).unwrap();
        let mmio = Bus::new(BusKind::Mmio);
        mmio.insert(0xd000_0000, 0x1000, Arc::new(Mutex::new(Echo)))
            .unwrap();
        (io, mmio)
    }

    #[test]
    fn io_and_mmio_exits_reach_the_buses() {
        let (io, mmio) = buses();
        let mut d = [0u8; 1];
        assert_eq!(
            handle_exit(0, &io, &mmio, VcpuExit::IoIn(0x71, &mut d)),
            None
        );
        assert_eq!(d, [2]);
        let mut d = [0u8; 2];
        assert_eq!(
            handle_exit(0, &io, &mmio, VcpuExit::IoIn(0x80, &mut d)),
            None
        );
        assert_eq!(d, [0xff, 0xff], "unclaimed ports float high");
        let mut d = [0u8; 4];
        assert_eq!(
            handle_exit(0, &io, &mmio, VcpuExit::MmioRead(0xd000_0004, &mut d)),
            None
        );
        assert_eq!(d, [5; 4]);
        assert_eq!(
            handle_exit(0, &io, &mmio, VcpuExit::MmioRead(0xe000_0000, &mut d)),
            None
        );
        assert_eq!(d, [0xff; 4]);
        assert_eq!(
            handle_exit(0, &io, &mmio, VcpuExit::MmioWrite(0xe000_0000, &[1])),
            None
        );
        assert_eq!(
            handle_exit(0, &io, &mmio, VcpuExit::IoOut(0x80, &[1])),
            None
        );
    }

    #[test]
    fn exits_that_stop_the_vm() {
        let (io, mmio) = buses();
        assert_eq!(
            handle_exit(0, &io, &mmio, VcpuExit::Shutdown),
            Some(ExitReason::TripleFault)
        );
        assert_eq!(
            handle_exit(0, &io, &mmio, VcpuExit::Hlt),
            Some(ExitReason::Halted)
        );
        assert_eq!(
            handle_exit(
                0,
                &io,
                &mmio,
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, &[])
            ),
            Some(ExitReason::Reset)
        );
        assert_eq!(
            handle_exit(
                0,
                &io,
                &mmio,
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, &[])
            ),
            Some(ExitReason::PowerOff)
        );
        assert!(matches!(
            handle_exit(1, &io, &mmio, VcpuExit::InternalError),
            Some(ExitReason::Error(_))
        ));
        assert!(matches!(
            handle_exit(1, &io, &mmio, VcpuExit::FailEntry(7, 0)),
            Some(ExitReason::Error(_))
        ));
        assert_eq!(handle_exit(0, &io, &mmio, VcpuExit::Intr), None);
    }
}
