// SPDX-License-Identifier: GPL-2.0

//! PCI binding: probe sets up a channel device, remove tears it down.
//!
//! Teardown order matters and is encoded in the field order of
//! [`IvcDevice`] (Rust drops fields top to bottom, after `Drop::drop` has
//! shut the pipe down): interrupt handler, vectors, device node, and last
//! the PCI enable.

use kernel::{
    device::{self, Core},
    pci,
    prelude::*,
    sync::{aref::ARef, Arc},
};

use crate::ffi::{
    self, IoRegion, IrqHandler, IrqHandlerRegistration, IrqVectors, MiscDevice, SharedMapping,
};
use crate::ids::{self, DeviceKind};
use crate::ivc_abi::ivshmem;
use crate::names::Name;
use crate::pio_transport::PioTransport;
use crate::pipe::{Pipe, WaitParams};
use crate::shm_transport::ShmTransport;
use crate::stats::{DebugfsStats, Stats};
use crate::transport::{Staging, Transport};

/// `mode` module parameter values.
const MODE_AUTO: u32 = 0;
const MODE_POLL: u32 = 1;
const MODE_IRQ: u32 = 2;

/// The ivc PCI driver.
pub(crate) struct IvcDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <IvcDriver as pci::Driver>::IdInfo,
    [
        (ids::IVSHMEM_ID, DeviceKind::Shm),
        (ids::IVC_PIO_ID, DeviceKind::Pio),
    ]
);

/// Wakes the pipe on a doorbell.
struct DoorbellIrq {
    pipe: Arc<Pipe>,
    /// INTx: the status register must be read to lower the line.
    intx: bool,
}

impl IrqHandler for DoorbellIrq {
    fn handle(&self) -> bool {
        if self.intx {
            if let Transport::Shm(t) = &self.pipe.transport {
                if !t.ack_intx() {
                    return false;
                }
            }
        }
        Stats::inc(&self.pipe.stats.doorbells_received);
        self.pipe.wake();
        true
    }
}

/// Disables the PCI device when dropped (last field of [`IvcDevice`]).
struct EnableGuard<'bound>(&'bound pci::Device);

impl Drop for EnableGuard<'_> {
    fn drop(&mut self) {
        ffi::disable_device(self.0);
    }
}

/// Releases the BARs claimed at probe when dropped (just before
/// [`EnableGuard`]).
struct RegionsGuard<'bound>(&'bound pci::Device);

impl<'bound> RegionsGuard<'bound> {
    fn request(pdev: &'bound pci::Device<Core<'_>>) -> Result<Self> {
        ffi::request_regions(pdev, c"ivc")?;
        Ok(Self(pdev))
    }
}

impl Drop for RegionsGuard<'_> {
    fn drop(&mut self) {
        ffi::release_regions(self.0);
    }
}

/// A bound channel device.
pub(crate) struct IvcDevice<'bound> {
    pdev: &'bound pci::Device,
    kind: DeviceKind,
    _irq: Option<IrqHandlerRegistration<DoorbellIrq>>,
    _vectors: Option<IrqVectors>,
    _node: Pin<KBox<MiscDevice<Pipe>>>,
    pipe: Arc<Pipe>,
    _debugfs: DebugfsStats,
    name: Name,
    _regions: RegionsGuard<'bound>,
    _enable: EnableGuard<'bound>,
}

/// A counted reference to the PCI device, for the transports' log lines.
fn device_ref(pdev: &pci::Device<Core<'_>>) -> ARef<device::Device> {
    let dev: &device::Device = pdev.as_ref();
    dev.into()
}

/// Limits of the module parameters: a spin of more than 10 ms burns a CPU
/// for nothing a sleep would not do; a poller interval over a second makes
/// `poll` on a polled channel useless; a peer timeout over ten minutes is a
/// typo for "never" (0).
const MAX_SPIN_US: u32 = 10_000;
const MAX_POLL_MS: u32 = 1000;
const MAX_PEER_TIMEOUT_MS: u32 = 600_000;

/// The module parameters, checked: a value out of range fails the probe
/// with a message naming it.
fn params(pdev: &pci::Device<Core<'_>>) -> Result<(u32, WaitParams, u32)> {
    use crate::module_parameters as p;
    let (mode, wait, peer_timeout_ms) = (
        p::mode.value(),
        WaitParams {
            spin_us: p::poll_spin_us.value(),
            irq_spin_us: p::irq_spin_us.value(),
            poll_max_ms: p::poll_max_ms.value(),
        },
        p::peer_timeout_ms.value(),
    );
    let checks: [(&str, u32, u32, u32); 5] = [
        ("mode", mode, 0, MODE_IRQ),
        ("poll_spin_us", wait.spin_us, 0, MAX_SPIN_US),
        ("irq_spin_us", wait.irq_spin_us, 0, MAX_SPIN_US),
        ("poll_max_ms", wait.poll_max_ms, 1, MAX_POLL_MS),
        ("peer_timeout_ms", peer_timeout_ms, 0, MAX_PEER_TIMEOUT_MS),
    ];
    for (name, value, min, max) in checks {
        if !(min..=max).contains(&value) {
            dev_err!(
                pdev,
                "ivc: {}={} is out of range {}..={}\n",
                name,
                value,
                min,
                max
            );
            return Err(EINVAL);
        }
    }
    Ok((mode, wait, peer_timeout_ms))
}

impl IvcDriver {
    fn probe_shm<'bound>(pdev: &'bound pci::Device<Core<'_>>) -> Result<IvcDevice<'bound>> {
        let (mode, wait, peer_timeout_ms) = params(pdev)?;
        ffi::enable_device(pdev)?;
        let enable = EnableGuard(pdev);
        let regions = RegionsGuard::request(pdev)?;
        // MSI-X messages are memory writes by the device: without bus
        // mastering they go nowhere (QEMU drops them silently).
        pdev.set_master();
        let name = Name::claim()?;

        let vectors = match mode {
            MODE_POLL => None,
            // Auto: doorbells only with MSI-X (ivshmem-doorbell); plain
            // ivshmem has no interrupt at all.
            MODE_AUTO => IrqVectors::alloc(pdev, 1, true).ok(),
            _ => Some(IrqVectors::alloc(pdev, 1, false)?),
        };
        let irq_mode = vectors.is_some();

        // BAR indices are 0..=5: the casts are lossless.
        let regs = IoRegion::map(pdev, ivshmem::BAR_REGISTERS as u32)?;
        let mem = SharedMapping::map_bar(pdev, ivshmem::BAR_SHM as u32)?;
        let stats = Arc::new(Stats::default(), GFP_KERNEL)?;
        let shm = ShmTransport::new(
            mem,
            regs,
            irq_mode,
            peer_timeout_ms,
            stats.clone(),
            name.as_cstr(),
            device_ref(pdev),
        )?;
        let mem_len = shm.mem_len();
        let my_id = shm.my_id();
        let pipe = Arc::pin_init(
            Pipe::new(
                Transport::Shm(shm),
                (Staging::none(), Staging::none()),
                wait,
                stats,
            )?,
            GFP_KERNEL,
        )?;

        let irq = match &vectors {
            Some(v) => {
                let intx = !v.is_msix();
                if intx {
                    if let Transport::Shm(t) = &pipe.transport {
                        t.enable_intx()?;
                    }
                }
                let handler = Arc::new(
                    DoorbellIrq {
                        pipe: pipe.clone(),
                        intx,
                    },
                    GFP_KERNEL,
                )?;
                // Named after the device node, so /proc/interrupts tells
                // the channels apart.
                Some(IrqHandlerRegistration::register(
                    v.irq(0)?,
                    name.as_cstr(),
                    handler,
                )?)
            }
            None => None,
        };

        dev_info!(
            pdev,
            "ivc: {} is ivc-shm, {} KiB shared memory, {}\n",
            name.as_cstr(),
            mem_len / 1024,
            match &vectors {
                Some(v) if v.is_msix() => "doorbell interrupts (MSI-X)",
                Some(_) => "doorbell interrupts (INTx)",
                None => "polled",
            }
        );
        if irq_mode {
            dev_info!(
                pdev,
                "ivc: {} has ivshmem peer id {}\n",
                name.as_cstr(),
                my_id
            );
        }
        IvcDevice::publish(
            pdev,
            DeviceKind::Shm,
            pipe,
            name,
            irq,
            vectors,
            (regions, enable),
        )
    }
}

impl IvcDriver {
    fn probe_pio<'bound>(pdev: &'bound pci::Device<Core<'_>>) -> Result<IvcDevice<'bound>> {
        let (_, wait, _) = params(pdev)?;
        ffi::enable_device(pdev)?;
        let enable = EnableGuard(pdev);
        let regions = RegionsGuard::request(pdev)?;
        let name = Name::claim()?;
        let string_io = crate::module_parameters::pio_string_io.value();
        let (pio, rx, tx) = PioTransport::new(IoRegion::map(pdev, 0)?, pdev, string_io)?;
        let desc = pio.descriptor_mode();
        let stats = Arc::new(Stats::default(), GFP_KERNEL)?;
        let pipe = Arc::pin_init(
            Pipe::new(Transport::Pio(pio), (rx, tx), wait, stats)?,
            GFP_KERNEL,
        )?;
        dev_info!(
            pdev,
            "ivc: {} is ivc-pio (port I/O, polled), {}\n",
            name.as_cstr(),
            if desc {
                "descriptor mode"
            } else {
                "string I/O"
            }
        );
        IvcDevice::publish(
            pdev,
            DeviceKind::Pio,
            pipe,
            name,
            None,
            None,
            (regions, enable),
        )
    }
}

impl<'bound> IvcDevice<'bound> {
    /// Last step of a probe: the debugfs counters and the device node, after
    /// which user space can open the channel.
    fn publish(
        pdev: &'bound pci::Device<Core<'_>>,
        kind: DeviceKind,
        pipe: Arc<Pipe>,
        name: Name,
        irq: Option<IrqHandlerRegistration<DoorbellIrq>>,
        vectors: Option<IrqVectors>,
        (regions, enable): (RegionsGuard<'bound>, EnableGuard<'bound>),
    ) -> Result<Self> {
        let debugfs = DebugfsStats::new(name.as_cstr(), pipe.stats.clone())?;
        let node = KBox::pin_init(
            MiscDevice::register(name.as_cstr(), pdev, pipe.clone()),
            GFP_KERNEL,
        )?;
        Ok(IvcDevice {
            pdev,
            kind,
            _irq: irq,
            _vectors: vectors,
            _node: node,
            pipe,
            _debugfs: debugfs,
            name,
            _regions: regions,
            _enable: enable,
        })
    }
}

impl pci::Driver for IvcDriver {
    type IdInfo = DeviceKind;
    type Data<'bound> = IvcDevice<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        let kind = *info.ok_or(ENODEV)?;
        dev_info!(
            pdev,
            "ivc: probe {} ({:04x}:{:04x} rev {})\n",
            kind.name(),
            pdev.vendor_id().as_raw(),
            pdev.device_id(),
            pdev.revision_id()
        );
        match kind {
            DeviceKind::Shm => Self::probe_shm(pdev),
            DeviceKind::Pio => Self::probe_pio(pdev),
        }
    }
}

impl Drop for IvcDevice<'_> {
    fn drop(&mut self) {
        // Fail every operation from now on and wake all sleepers; then make
        // sure the poller is gone before the module can be.
        self.pipe.shutdown();
        self.pipe.stop_poller();
        dev_info!(
            self.pdev,
            "ivc: remove {} ({})\n",
            self.kind.name(),
            self.name.as_cstr()
        );
    }
}
