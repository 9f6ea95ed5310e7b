//! Tier 4, Linux in ivc-vmm: the guest kernel boots to userspace in our VMM
//! with one and with two vCPUs, and `ivc.ko` binds every ivc-vmm device kind
//! (`ivc-pio`, `ivc-shm` polled, `ivc-shm` with MSI-X) and unloads cleanly.
//! On hosts without hardware virtualization ivc-vmm runs in the nested host
//! (see `ivc_guest_harness::vmm`).

use std::time::Duration;

use ivc_guest_harness::{require_vmm_env, run_scenario, GuestSpec, Scenario};
use ivc_guest_tests::guest_sh::{script, INSMOD, RMMOD, SHOW_BINDINGS};
use ivc_guest_tests::report::{bindings, value};
use ivc_guest_tests::vmm_channel::Channel;

/// Prints the CPU count, the uptime at the command's start and the ivc
/// character devices.
const FACTS: &str = "echo IVC_NPROC=$(nproc)\necho IVC_UPTIME=$(cut -d' ' -f1 /proc/uptime)\n";
const DEVICES: &str = "echo IVC_DEVS=$(ls /dev | grep -c '^ivc[0-9]')\n";

#[test]
fn linux_boots_with_one_and_two_cpus_and_binds_every_device_kind() {
    let Some(backend) = require_vmm_env() else {
        return;
    };
    let cmd = script(&[FACTS, INSMOD, SHOW_BINDINGS, DEVICES, RMMOD]);
    let mut scenario = Scenario::new();
    for ch in Channel::ALL {
        scenario = ch.with_server(scenario);
    }
    for (name, cpus) in [("one", 1), ("two", 2)] {
        let mut spec = GuestSpec::new(name, cmd.clone())
            .cpus(cpus)
            .timeout(Duration::from_secs(240));
        for ch in Channel::ALL {
            spec = spec.device(ch.device());
        }
        scenario = scenario.guest(spec).expect("valid guest");
    }
    let outcome = run_scenario(&backend, &scenario).expect("scenario runs");
    outcome.assert_ran();
    for (name, cpus) in [("one", "1"), ("two", "2")] {
        let g = outcome.guest(name);
        g.assert_success();
        assert_eq!(value(&g.serial, "IVC_NPROC"), Some(cpus), "{}", g.report());
        let b = bindings(&g.serial);
        let ids: Vec<&str> = b.iter().map(|b| b.id.as_str()).collect();
        let want: Vec<String> = Channel::ALL.iter().map(|c| c.pci_id()).collect();
        assert_eq!(ids, want, "devices in slot order:\n{}", g.report());
        assert!(b.iter().all(|b| b.driver == "ivc"), "{b:?}\n{}", g.report());
        assert_eq!(value(&g.serial, "IVC_DEVS"), Some("3"), "{}", g.report());
        assert_eq!(value(&g.serial, "IVC_RMMOD"), Some("ok"), "{}", g.report());
        assert!(
            g.vm_status.success(),
            "ivc-vmm ends with status 0 after the guest's reboot: {}\n{}",
            g.vm_status,
            g.vm_stderr
        );
        eprintln!(
            "vmm_boot: guest {name} ({cpus} vCPU) at userspace after {} s of guest uptime, whole run {:.1?}; {}",
            value(&g.serial, "IVC_UPTIME").unwrap_or("?"),
            g.elapsed,
            outcome.backend
        );
    }
    if let Some(l1) = &outcome.l1 {
        eprintln!(
            "vmm_boot: L1 /dev/kvm ready after {:.1?} wall ({:?} s of L1 uptime)",
            l1.ready_after.unwrap_or_default(),
            l1.kvm_s
        );
    }
}
