//! Assembling a machine from a `MachineConfig` and running it to the end.
//!
//! Order: guest RAM -> VM (irqchip, PIT, RAM slots) -> buses and legacy
//! devices -> PCI bus with host bridge (+ devices from the caller) -> guest
//! image and boot tables -> vCPUs (one thread each) -> wait for an exit
//! reason or a signal -> kick and join vCPUs.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::Killable;

use crate::boot::{self, BootError};
use crate::devices::debug_exit::DebugExit;
use crate::devices::i8042::I8042;
use crate::devices::serial::{spawn_input_thread, SerialDevice, SerialOutput};
use crate::exit::{ExitReason, VmExit};
use crate::io_bus::{Bus, BusKind};
use crate::layout;
use crate::memory;
use crate::pci::{BarAllocator, HostBridge, PciBus, PciConfigIo, SharedPciDevice};
use crate::signals::{self, TerminationSignals};
use crate::vcpu::{BootEntry, ReportRequests, Vcpu};
use crate::vm::{self, Vm, VmError, VmResources};

pub struct MachineConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub mem_size: u64,
    pub cpus: u8,
    pub serial: SerialOutput,
    /// Bytes for the guest's COM1 receiver (e.g. stdin); None = no input.
    pub serial_input: Option<Box<dyn std::io::Read + Send>>,
    /// How long KVM polls a halted vCPU for a wake-up before it sleeps
    /// (`KVM_CAP_HALT_POLL`); None = the kvm module's default.
    pub halt_poll_ns: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    // Transparent: the message is the inner one, as before, and no source is
    // added (the inner message already says everything).
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("device setup: {0}")]
    Device(String),
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}

/// A built machine, ready to run. Add PCI devices with `add_pci_device`
/// (construct them with `resources()`) before `run`.
pub struct Machine {
    vm: Vm,
    config_cpus: u8,
    boot: BootEntry,
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    pci: Arc<Mutex<PciBus>>,
    exit: Arc<VmExit>,
    signals: TerminationSignals,
}

impl Machine {
    pub fn new(config: MachineConfig) -> Result<Machine, MachineError> {
        // Block SIGINT/SIGTERM first: every thread started from here on
        // (ours or a library's) inherits the mask.
        let signals = TerminationSignals::including(&[signals::REPORT_SIGNAL])
            .map_err(|e| MachineError::Io("signalfd", e))?;
        signals::install_kick_handler()
            .map_err(|e| MachineError::Io("installing vCPU kick handler", e))?;

        let kvm = vm::open_kvm()?;
        let mem = memory::create_guest_memory(config.mem_size)
            .map_err(|e| MachineError::Memory(e.to_string()))?;
        let vm = Vm::new(kvm, mem, config.halt_poll_ns)?;
        let boot = load_guest(&vm, &config)?;
        let exit = Arc::new(VmExit::new().map_err(|e| MachineError::Io("eventfd", e))?);

        let io_bus = Arc::new(Bus::new(BusKind::Io));
        let mmio_bus = Arc::new(Bus::new(BusKind::Mmio));
        let dev_err = |e: crate::io_bus::BusError| MachineError::Device(e.to_string());

        let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(|e| MachineError::Io("eventfd", e))?;
        vm.resources
            .register_irqfd(&serial_irq, layout::SERIAL_COM1_IRQ)?;
        let serial = Arc::new(Mutex::new(SerialDevice::new(serial_irq, config.serial)));
        io_bus
            .insert(layout::SERIAL_COM1_PORT, 8, serial.clone())
            .map_err(dev_err)?;
        if let Some(input) = config.serial_input {
            // Detached: it ends with its input or with the process.
            spawn_input_thread(serial, input)
                .map_err(|e| MachineError::Io("serial input thread", e))?;
        }
        io_bus
            .insert(
                layout::I8042_DATA_PORT,
                5,
                Arc::new(Mutex::new(I8042::new(exit.clone()))),
            )
            .map_err(dev_err)?;
        io_bus
            .insert(
                layout::DEBUG_EXIT_PORT,
                1,
                Arc::new(Mutex::new(DebugExit::new(exit.clone()))),
            )
            .map_err(dev_err)?;

        let allocator = BarAllocator::new(memory::ram_end(config.mem_size));
        let pci = Arc::new(Mutex::new(PciBus::new(
            io_bus.clone(),
            mmio_bus.clone(),
            allocator,
        )));
        pci.lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_device(Some(0), Arc::new(Mutex::new(HostBridge::new())))
            .map_err(|e| MachineError::Device(e.to_string()))?;
        io_bus
            .insert(
                layout::PCI_CONFIG_ADDRESS_PORT,
                8,
                Arc::new(Mutex::new(
                    PciConfigIo::new(pci.clone()).with_reset(exit.clone()),
                )),
            )
            .map_err(dev_err)?;

        Ok(Machine {
            vm,
            config_cpus: config.cpus,
            boot,
            io_bus,
            mmio_bus,
            pci,
            exit,
            signals,
        })
    }

    /// KVM handles for device models (memory slots, ioeventfds, MSI routing).
    pub fn resources(&self) -> Arc<VmResources> {
        self.vm.resources.clone()
    }

    /// The guest's RAM, for devices that move data to and from it (a clone
    /// shares the same mappings).
    pub fn guest_memory(&self) -> vm_memory::GuestMemoryMmap {
        self.vm.memory.clone()
    }

    /// Lets another thread stop the VM (`request(ExitReason::...)`), e.g. a
    /// watchdog or a device backend whose peer went away.
    pub fn exit_handle(&self) -> Arc<VmExit> {
        self.exit.clone()
    }

    pub fn io_bus(&self) -> &Arc<Bus> {
        &self.io_bus
    }

    pub fn mmio_bus(&self) -> &Arc<Bus> {
        &self.mmio_bus
    }

    /// Plugs a PCI device into `slot` (None = first free); BARs are assigned
    /// and mapped right away.
    pub fn add_pci_device(
        &self,
        slot: Option<u8>,
        device: SharedPciDevice,
    ) -> Result<u8, MachineError> {
        self.pci
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_device(slot, device)
            .map_err(|e| MachineError::Device(e.to_string()))
    }

    /// Runs the guest until it stops or the process gets SIGINT/SIGTERM;
    /// SIGUSR1 logs every vCPU's state and the guest goes on.
    pub fn run(self) -> Result<ExitReason, MachineError> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let reports = Arc::new(ReportRequests::default());
        for id in 0..self.config_cpus {
            let fd = self
                .vm
                .resources
                .vm_fd()
                .create_vcpu(u64::from(id))
                .map_err(|e| VmError::Setup("KVM_CREATE_VCPU", e));
            let fd = match fd {
                Ok(fd) => fd,
                Err(e) => {
                    self.exit.request(ExitReason::Error(e.to_string()));
                    break;
                }
            };
            let mut vcpu = Vcpu::new(
                id,
                fd,
                self.io_bus.clone(),
                self.mmio_bus.clone(),
                self.exit.clone(),
                reports.clone(),
            );
            let boot = (id == 0).then_some(self.boot);
            if let Err(e) = vcpu.configure(&self.vm.kvm, self.config_cpus, boot) {
                self.exit.request(ExitReason::Error(e.to_string()));
                break;
            }
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || vcpu.run());
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    self.exit
                        .request(ExitReason::Error(format!("spawning vcpu{id}: {e}")));
                    break;
                }
            }
        }

        let fds = [self.exit.eventfd().as_raw_fd(), self.signals.as_raw_fd()];
        while !self.exit.requested() {
            match signals::wait_readable(&fds, -1) {
                Ok(ready) => {
                    if ready.contains(&1) {
                        match self.signals.read() {
                            Some(signals::REPORT_SIGNAL) => {
                                reports.ask();
                                for t in threads.iter().filter(|t| !t.is_finished()) {
                                    let _ = t.kill(signals::kick_signal());
                                }
                            }
                            Some(sig) => {
                                info!("received signal {sig}, stopping the VM");
                                self.exit.request(ExitReason::Signal(sig));
                            }
                            None => {}
                        }
                    }
                    if ready.contains(&0) {
                        let _ = self.exit.eventfd().read();
                    }
                }
                Err(e) => self.exit.request(ExitReason::Error(format!("poll: {e}"))),
            }
        }
        stop_vcpus(threads);
        Ok(self
            .exit
            .reason()
            .unwrap_or(ExitReason::Error("no exit reason recorded".into())))
    }
}

/// Kicks vCPU threads out of KVM_RUN until they have all returned. A kick
/// that lands just before a thread enters KVM_RUN is lost, so keep kicking.
fn stop_vcpus(threads: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let running: Vec<&JoinHandle<()>> = threads.iter().filter(|t| !t.is_finished()).collect();
        if running.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            warn!(
                "{} vCPU thread(s) did not stop; exiting anyway",
                running.len()
            );
            return;
        }
        for t in running {
            let _ = t.kill(signals::kick_signal());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Kernel, initramfs, command line and boot tables into guest memory.
fn load_guest(vm: &Vm, config: &MachineConfig) -> Result<BootEntry, MachineError> {
    let image = boot::guest::GuestImage {
        kernel: &config.kernel,
        initrd: config.initrd.as_deref(),
        cmdline: &config.cmdline,
        mem_size: config.mem_size,
        cpus: config.cpus,
    };
    Ok(boot::guest::load(&vm.memory, &image)?)
}
