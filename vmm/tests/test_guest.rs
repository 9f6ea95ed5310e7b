//! ivc-vmm with the bare-metal ivc-test-guest (vmm/test-guest): what the
//! guest enumerates on PCI bus 0, with and without an extra device.
//!
//! The guest is found through $IVC_TEST_GUEST or its default build path
//! (build it with scripts/build-test-guest.sh).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ivc_abi::ivshmem::{REG_DOORBELL, REG_IV_POSITION};
use ivc_abi::pci_ids::{
    IVSHMEM_CLASS_CODE, IVSHMEM_DEVICE_ID, IVSHMEM_REVISION, IVSHMEM_VENDOR_ID,
};
use ivc_vmm::exit::ExitReason;
use ivc_vmm::machine::{Machine, MachineConfig};
use ivc_vmm::pci::msix::Msix;
use ivc_vmm::pci::{BarKind, ConfigSpace, PciDevice};
use ivc_vmm::vm::{Datamatch, VmResources};
use kvm_ioctls::IoEventAddress;
use vmm_sys_util::eventfd::EventFd;

const T: Duration = Duration::from_secs(60);

fn lines_with_prefix(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("ivc-test-guest: "))
        .collect()
}

/// Boots the test guest alone (64 MiB) with `cmdline` under ivc-vmm.
fn run_test_guest(cmdline: &str) -> Outcome {
    let guest = test_guest();
    let kernel = guest.to_string_lossy();
    run_vmm(
        &[
            "run",
            "--kernel",
            &kernel,
            "--mem",
            "64M",
            "--cmdline",
            cmdline,
        ],
        T,
    )
}

#[test]
fn pci_enum_sees_the_host_bridge_and_exits_cleanly() {
    if skip_without_kvm("pci_enum_sees_the_host_bridge_and_exits_cleanly") {
        return;
    }
    let out = run_test_guest("test=pci-enum expect=8086:1237");
    let lines = lines_with_prefix(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pci 00:00.0 vendor=8086 device=1237 class=060000")),
        "{}",
        out.stdout
    );
    assert!(
        lines.contains(&"pci-enum functions=1 unassigned_bars=0"),
        "{}",
        out.stdout
    );
    assert_eq!(lines.last(), Some(&"done status=0"), "{}", out.stdout);
    // The memmap the guest parsed from the PVH start info.
    assert!(
        lines.contains(&"memmap addr=0x9fc00 size=0x60400 type=2"),
        "{}",
        out.stdout
    );
}

#[test]
fn missing_device_makes_the_guest_fail() {
    if skip_without_kvm("missing_device_makes_the_guest_fail") {
        return;
    }
    let id = ivshmem_id();
    let out = run_test_guest(&format!("expect={id}"));
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("expected device {id} not found")),
        "{}",
        out.stdout
    );
}

/// A device shaped like ivc-shm: BAR0 registers, BAR1 MSI-X, BAR2 64-bit
/// prefetchable memory, BAR4 I/O. Register reads return a pattern, except
/// ivshmem's IVPosition (BAR0+8) which reads 0.
///
/// The ivshmem doorbell (BAR0+12) for "peer 0, vector 0" is an ioeventfd
/// whose eventfd is MSI-X vector 0's irqfd: a guest write interrupts the
/// guest entirely inside KVM, as the shm-irq path does between two VMs.
/// It moves with BAR0 (`bar_moved`).
struct DemoDevice {
    config: ConfigSpace,
    msix: Msix,
    resources: Arc<VmResources>,
    doorbell: EventFd,
}

/// ivshmem's `vendor:device` as the test guest spells it (`1af4:1110`).
fn ivshmem_id() -> String {
    format!("{IVSHMEM_VENDOR_ID:04x}:{IVSHMEM_DEVICE_ID:04x}")
}

impl PciDevice for DemoDevice {
    fn name(&self) -> &str {
        "demo"
    }
    fn config(&self) -> &ConfigSpace {
        &self.config
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
    fn config_written(&mut self, _offset: usize, _len: usize) {
        self.msix.config_written(&self.config);
    }
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match bar {
            0 if offset == u64::from(REG_IV_POSITION) => data.fill(0),
            1 if offset < 0x800 => self.msix.read_table(offset, data),
            1 => self.msix.read_pba(offset - 0x800, data),
            _ => data.fill(0xa0 | bar as u8),
        }
    }
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        match bar {
            1 if offset < 0x800 => self.msix.write_table(offset, data),
            1 => self.msix.write_pba(offset - 0x800, data),
            _ => {}
        }
    }
    fn bar_moved(&mut self, bar: usize, old: Option<u64>, new: Option<u64>) {
        if bar != 0 {
            return;
        }
        if let Some(old) = old {
            self.resources
                .unregister_ioeventfd(
                    &self.doorbell,
                    IoEventAddress::Mmio(old + u64::from(REG_DOORBELL)),
                    Datamatch::U32(0),
                )
                .unwrap();
        }
        if let Some(new) = new {
            self.resources
                .register_ioeventfd(
                    &self.doorbell,
                    IoEventAddress::Mmio(new + u64::from(REG_DOORBELL)),
                    Datamatch::U32(0),
                )
                .unwrap();
        }
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Boots the test guest with a `DemoDevice` in slot 1; returns the exit
/// reason and the serial output.
fn run_with_demo_device(cmdline: &str) -> (ExitReason, String) {
    let serial = Capture::default();
    let machine = Machine::new(MachineConfig {
        kernel: test_guest(),
        initrd: None,
        cmdline: cmdline.into(),
        mem_size: 64 << 20,
        cpus: 1,
        serial: Box::new(serial.clone()),
        serial_input: None,
        halt_poll_ns: None,
    })
    .expect("machine");
    let ids = ivc_vmm::devices::ivc_shm::PCI_IDS;
    let mut config = ConfigSpace::new(ids);
    config.add_bar(0, BarKind::Mmio32, 256).unwrap();
    config.add_bar(1, BarKind::Mmio32, 0x1000).unwrap();
    config
        .add_bar(2, BarKind::Mmio64 { prefetchable: true }, 1 << 20)
        .unwrap();
    config.add_bar(4, BarKind::Io, 32).unwrap();
    let mut msix = Msix::new(4, machine.resources().router()).expect("msix");
    msix.add_capability(&mut config, 1, 0, 1, 0x800).unwrap();
    let doorbell = msix.vector_eventfd(0).unwrap().try_clone().unwrap();
    let device = DemoDevice {
        config,
        msix,
        resources: machine.resources(),
        doorbell,
    };
    let slot = machine
        .add_pci_device(None, Arc::new(Mutex::new(device)))
        .unwrap();
    assert_eq!(slot, 1);

    // Watchdog: a hung guest fails the test instead of hanging it.
    let exit = machine.exit_handle();
    std::thread::spawn(move || {
        std::thread::sleep(T);
        exit.request(ExitReason::Error("watchdog: guest did not finish".into()));
    });
    let reason = machine.run().expect("run");
    let out = String::from_utf8_lossy(&serial.0.lock().unwrap()).into_owned();
    (reason, out)
}

#[test]
fn pci_enum_sees_an_added_device_with_its_bars_and_msix() {
    if skip_without_kvm("pci_enum_sees_an_added_device_with_its_bars_and_msix") {
        return;
    }
    let (reason, out) = run_with_demo_device(&format!(
        "test=pci-enum expect=8086:1237,{} probe_mmio=1",
        ivshmem_id()
    ));
    assert_eq!(reason, ExitReason::DebugExit(0), "{out}");
    let lines = lines_with_prefix(&out);
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "pci 00:01.0 vendor={IVSHMEM_VENDOR_ID:04x} device={IVSHMEM_DEVICE_ID:04x} \
                 class={IVSHMEM_CLASS_CODE:06x} rev={IVSHMEM_REVISION:02x}"
        ))),
        "{out}"
    );
    // BARs as placed by the VMM ("preset"), with the sizes declared above.
    let bar = |index: u32, kind: &str, size: &str, prefetch: u8| {
        lines.iter().any(|l| {
            l.starts_with(&format!("bar 00:01.0 index={index} kind={kind} "))
                && l.contains(&format!("size={size} prefetch={prefetch} assigned=preset"))
        })
    };
    assert!(bar(0, "mem32", "0x100", 0), "{out}");
    assert!(bar(2, "mem64", "0x100000", 1), "{out}");
    assert!(bar(4, "io", "0x20", 0), "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with(
            "msix 00:01.0 table_size=4 table_bar=1 table_offset=0x0 pba_bar=1 pba_offset=0x800"
        )),
        "{out}"
    );
    // MMIO reads reach the device through the VMM's MMIO bus.
    assert!(
        lines.contains(&"mmio 00:01.0 index=0 offset=0x0 value=0xa0a0a0a0"),
        "{out}"
    );
    assert!(
        lines.contains(&"mmio 00:01.0 index=2 offset=0x0 value=0xa2a2a2a2"),
        "{out}"
    );
    assert_eq!(lines.last(), Some(&"done status=0"), "{out}");
}

#[test]
fn bars_relocated_by_the_guest_still_decode() {
    if skip_without_kvm("bars_relocated_by_the_guest_still_decode") {
        return;
    }
    let (reason, out) = run_with_demo_device("test=pci-enum assign=all probe_mmio=1");
    assert_eq!(reason, ExitReason::DebugExit(0), "{out}");
    let lines = lines_with_prefix(&out);
    let moved: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("bar 00:01.0") && l.ends_with("assigned=guest"))
        .collect();
    assert_eq!(moved.len(), 4, "{out}");
    assert!(
        lines.contains(&"mmio 00:01.0 index=0 offset=0x0 value=0xa0a0a0a0"),
        "{out}"
    );
    assert!(
        lines.contains(&"mmio 00:01.0 index=2 offset=0x0 value=0xa2a2a2a2"),
        "{out}"
    );
}

#[test]
fn doorbell_ioeventfd_reaches_the_guest_as_msix_interrupt() {
    if skip_without_kvm("doorbell_ioeventfd_reaches_the_guest_as_msix_interrupt") {
        return;
    }
    // Also with the BARs moved by the guest: the ioeventfd must follow BAR0.
    for extra in ["", " assign=all"] {
        let (reason, out) =
            run_with_demo_device(&format!("test=doorbell mode=self vector=0 count=5{extra}"));
        assert_eq!(reason, ExitReason::DebugExit(0), "{out}");
        let lines = lines_with_prefix(&out);
        if let Some(result) = lines.iter().find(|l| l.starts_with("doorbell-result")) {
            eprintln!("doorbell{extra}: {result}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("doorbell-result sent=5 expected=5 received=5")),
            "{out}"
        );
    }
}
