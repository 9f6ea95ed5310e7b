#!/usr/bin/env bash
# Boot ivc-test-guest under QEMU (PVH via -kernel) and return the guest's
# exit status, so the guest can be tried without ivc-vmm.
#
# Usage: vmm/test-guest/qemu-run.sh [options] [--] "KERNEL CMDLINE" [QEMU ARGS...]
#   --kvm          use -accel kvm (on these hosts: PVM) instead of TCG
#   --timeout S    give up after S seconds (default 120), exit 124
#   --elf PATH     guest ELF (default: the release build in target/)
#   --raw          show the whole serial output (SeaBIOS included), not
#                  only the guest's "ivc-test-guest: " lines
#   --serial-file F  keep the raw serial log in F (written live, kept
#                  afterwards): lets a caller react to lines while it runs
# Example:
#   vmm/test-guest/qemu-run.sh "test=pci-enum expect=1af4:1110" \
#       -object memory-backend-ram,id=m,size=4M,share=on -device ivshmem-plain,memdev=m
#
# QEMU's isa-debug-exit ends QEMU with status (V << 1) | 1 when the guest
# writes V; this script turns that back into V. Statuses:
#   V     the guest's status (0 pass, 1 fail, 2 usage, 3 bad boot info,
#         101 panic, 102 CPU exception)
#   124   timeout
#   125   QEMU ended without the guest writing a status, or QEMU failed

# shellcheck source=../../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

accel=tcg
timeout_s=120
elf="$IVC_ROOT/vmm/test-guest/target/x86_64-unknown-none/release/ivc-test-guest"
raw=0
serial_keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --kvm) accel=kvm ;;
        --timeout) timeout_s="${2:?--timeout needs a value}"; shift ;;
        --elf) elf="${2:?--elf needs a path}"; shift ;;
        --raw) raw=1 ;;
        --serial-file) serial_keep="${2:?--serial-file needs a path}"; shift ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option '$1' (try --help)" ;;
        *) break ;;
    esac
    shift
done
[ $# -ge 1 ] || die "missing the kernel command line (try --help)"
cmdline="$1"; shift

need_cmd qemu-system-x86_64
[ -f "$elf" ] || die "$elf not found; build it with scripts/build-test-guest.sh"
if [ $accel = kvm ] && ! [ -r /dev/kvm ] && ! [ -w /dev/kvm ]; then
    die "/dev/kvm is not accessible"
fi

if [ -n "$serial_keep" ]; then
    serial="$serial_keep"
    : >"$serial"
else
    serial="$(mktemp "${TMPDIR:-/tmp}/ivc-test-guest.XXXXXX")"
    trap 'rm -f "$serial"' EXIT
fi

# maxcpus=2 keeps TCG in its multi-threaded mode, which honours guest memory
# barriers and atomics (ivshmem memory is shared with another process; with
# maxcpus=1 TCG drops mfence and makes lock-prefixed RMWs plain).
# -nic none/-vga none keep bus 0 small and predictable; -no-reboot turns a
# triple fault into a QEMU exit instead of an endless reboot loop.
timeout "$timeout_s" qemu-system-x86_64 \
    -M pc -accel "$accel" -m 128M -smp 1,sockets=2,maxcpus=2 \
    -display none -monitor none -nic none -vga none -no-reboot \
    -serial "file:$serial" \
    -device isa-debug-exit,iobase=0xf4,iosize=4 \
    -kernel "$elf" -append "$cmdline" \
    "$@" >&2 &
qemu_pid=$!
# Stopping this script stops the VM: `timeout` passes the signal on to QEMU.
trap 'kill -TERM "$qemu_pid" 2>/dev/null; exit 143' TERM INT HUP
rc=0
wait "$qemu_pid" || rc=$?

if [ $raw = 1 ]; then
    cat "$serial"
else
    grep -a '^ivc-test-guest: ' "$serial" || true
fi

if [ $rc = 124 ]; then
    warn "timeout after ${timeout_s}s"
    exit 124
fi
if [ $((rc & 1)) = 1 ]; then
    status=$((rc >> 1))
    grep -aq "^ivc-test-guest: done status=$status\$" "$serial" \
        || warn "status $status without a matching 'done status=$status' line"
    exit "$status"
fi
warn "QEMU exited with status $rc without a debug-exit write (guest crashed or QEMU failed)"
exit 125
