//! Shell snippets run inside the guest (busybox `sh`).
//!
//! Each snippet prints machine-readable lines starting with `IVC_` so a test
//! asserts on what the guest itself observed (sysfs, dmesg), not on what the
//! host expects.

/// Loads the driver; prints `IVC_INSMOD=ok` or fails the command.
pub const INSMOD: &str = "insmod /lib/ivc/ivc.ko || { echo IVC_INSMOD=failed; exit 10; }\n\
                          echo IVC_INSMOD=ok\n";

/// [`INSMOD`] with module parameters (`"irq_spin_us=50"`).
pub fn insmod_with(params: &str) -> String {
    format!(
        "insmod /lib/ivc/ivc.ko {params} || {{ echo IVC_INSMOD=failed; exit 10; }}\n\
         echo IVC_INSMOD=ok\n"
    )
}

/// Prints, for every PCI function the driver can bind (ivshmem 1af4:1110 and
/// ivc-pio 1234:1c1c), `IVC_BOUND <bdf> <vendor>:<device> driver=<name>`
/// where `<name>` is the sysfs driver link's target (`none` if unbound).
pub const SHOW_BINDINGS: &str = r#"for d in /sys/bus/pci/devices/*; do
  id="$(cat "$d/vendor"):$(cat "$d/device")"
  case "$id" in
    0x1af4:0x1110|0x1234:0x1c1c)
      drv=none
      [ -e "$d/driver" ] && drv="$(basename "$(readlink "$d/driver")")"
      echo "IVC_BOUND $(basename "$d") ${id} driver=${drv}"
      ;;
  esac
done
"#;

/// Unloads the driver and checks that no device is left bound to it; prints
/// `IVC_RMMOD=ok` or fails the command.
pub const RMMOD: &str = r#"rmmod ivc || { echo IVC_RMMOD=failed; exit 11; }
for d in /sys/bus/pci/devices/*; do
  if [ -e "$d/driver" ] && [ "$(basename "$(readlink "$d/driver")")" = ivc ]; then
    echo "IVC_RMMOD=still-bound $(basename "$d")"; exit 12
  fi
done
[ -e /sys/module/ivc ] && { echo IVC_RMMOD=module-still-present; exit 13; }
echo IVC_RMMOD=ok
"#;

/// Prints the driver's kernel log lines, prefixed `IVC_DMESG `.
pub const DMESG_IVC: &str = "dmesg | grep -i ivc | sed 's/^/IVC_DMESG /'\n";

/// Prints `IVC_IRQS <count>`: interrupts taken on the driver's vectors (the
/// `/proc/interrupts` lines whose name is `ivc` or `ivcN`).
pub const COUNT_IRQS: &str = "awk '$NF ~ /^ivc[0-9]*$/ { n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i; print \"IVC_IRQS \" n }' /proc/interrupts\n";

/// Concatenates snippets into one command (each already ends in a newline).
pub fn script(parts: &[&str]) -> String {
    parts.concat()
}

/// Runs `cmd` with its stderr kept apart from the console (kernel messages
/// printed meanwhile would otherwise split its lines), then prints
/// `IVC_RC=<status>` and each stderr line prefixed `IVC_STDERR `.
pub fn run_reporting(cmd: &str) -> String {
    format!("{cmd} 2>/tmp/ivc-cmd.err; echo IVC_RC=$?\nsed 's/^/IVC_STDERR /' /tmp/ivc-cmd.err\n")
}
