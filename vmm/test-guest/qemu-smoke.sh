#!/usr/bin/env bash
# Smoke test of ivc-test-guest under QEMU: builds the guest, boots every test
# program and checks its exit status and key output lines. This checks the
# guest itself (boot, console, PCI, CPL3, exit) independently of ivc-vmm.
#
# Usage: vmm/test-guest/qemu-smoke.sh [--kvm] [--no-build]
#   --kvm        run under -accel kvm (PVM here) instead of TCG
#   --no-build   use the existing ELF
# The doorbell (MSI-X) cases need the rendezvous server: $IVC_RENDEZVOUS, or
# target/{debug,release}/ivc-rendezvous, or it is built with cargo; if none
# can be had they are skipped with a warning.
# Exit status 0 when every case passes.

# shellcheck source=../../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

run_args=()
build=1
for arg in "$@"; do
    case "$arg" in
        --kvm) run_args+=(--kvm) ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

if [ $build = 1 ]; then
    "$IVC_ROOT/scripts/build-test-guest.sh" >/dev/null
fi
run="$IVC_ROOT/vmm/test-guest/qemu-run.sh"
out="$(mktemp "${TMPDIR:-/tmp}/ivc-smoke.XXXXXX")"
# Memory two VMs (run one after the other) share through ivshmem-plain.
shm_file="$(mktemp "${TMPDIR:-/tmp}/ivc-smoke-shm.XXXXXX")"
work="$(mktemp -d "${TMPDIR:-/tmp}/ivc-smoke.XXXXXX")"
server_pid=""
waiter=""
cleanup() {
    if [ -n "$waiter" ]; then kill "$waiter" 2>/dev/null || true; fi
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$out" "$shm_file" "$work"
}
trap cleanup EXIT

# An ivshmem-plain device (the register layout ivc-shm copies) and a
# virtio-rng device (MSI-X, 64-bit BAR) give the PCI code something to chew on.
pci_devices=(
    -object memory-backend-ram,id=shm,size=4M,share=on
    -device ivshmem-plain,memdev=shm
    -device virtio-rng-pci
)

passed=0
failed=0
# verdict NAME OUTPUT_FILE STATUS EXPECTED_STATUS "EGREP PATTERN"...: counts
# and reports one case; on failure shows why and the VM's output.
verdict() {
    local name="$1" output="$2" status="$3" want="$4"; shift 4
    local problem=""
    [ "$status" = "$want" ] || problem="status $status, expected $want"
    local p
    for p in "$@"; do
        grep -Eq "$p" "$output" || problem="${problem:+$problem; }no line matching /$p/"
    done
    if [ -z "$problem" ]; then
        log "PASS $name"
        passed=$((passed + 1))
    else
        warn "FAIL $name: $problem"
        sed 's/^/    /' "$output" >&2
        failed=$((failed + 1))
    fi
}
# check NAME EXPECTED_STATUS "CMDLINE" "EGREP PATTERN..." -- [QEMU ARGS...]
check() {
    local name="$1" want="$2" cmdline="$3"; shift 3
    local patterns=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do patterns+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    local status=0
    "$run" "${run_args[@]}" "$cmdline" "$@" >"$out" 2>/dev/null || status=$?
    verdict "$name" "$out" "$status" "$want" "${patterns[@]}"
}

P='^ivc-test-guest: '
check "pci-enum finds ivshmem, sizes BARs, reads MSI-X" 0 "test=pci-enum expect=1af4:1110,1af4:1005" \
    "${P}pci 00:[0-9a-f]{2}\.0 vendor=1af4 device=1110 class=050000 rev=01\$" \
    "${P}bar 00:[0-9a-f]{2}\.0 index=2 kind=mem64 addr=0x[0-9a-f]+ size=0x400000 prefetch=1" \
    "${P}msix 00:[0-9a-f]{2}\.0 table_size=[0-9]+ table_bar=[0-9] table_offset=0x[0-9a-f]+ pba_bar=[0-9]" \
    "${P}done status=0\$" -- "${pci_devices[@]}"
check "pci-enum assigns every BAR itself and reads MMIO" 0 "test=pci-enum assign=all probe_mmio=1" \
    "${P}bar .* kind=mem32 addr=0xe0000000 .* assigned=guest\$" \
    "${P}bar .* kind=io addr=0xc000 .* assigned=guest\$" \
    "${P}mmio .* value=0x[0-9a-f]{8}\$" -- "${pci_devices[@]}"
check "pci-enum maps a 64-bit BAR at 64 GiB (ivc-vmm's window)" 0 \
    "test=pci-enum assign=all probe_mmio=1 pci_mem64=0x1000000000" \
    "${P}bar .* kind=mem64 addr=0x1000000000 size=0x400000 prefetch=1 assigned=guest\$" \
    "${P}mmio 00:[0-9a-f]{2}\.0 index=2 offset=0x0 value=" -- "${pci_devices[@]}"
check "pci-enum reports a missing device" 1 "test=pci-enum expect=dead:beef" \
    "${P}error: expected device dead:beef not found"
check "default test is pci-enum" 0 "" "${P}test=pci-enum start"
check "cpl3 runs at CPL3 and checksums memory" 0 "test=cpl3 bytes=256k rounds=2" \
    "${P}cpl=3\$" "${P}memloop bytes=262144 rounds=2 checksum=(0x[0-9a-f]+) expected=\\1 cycles=[0-9]+\$"
check "pio-cost measures CPL0 and CPL3" 0 "test=pio-cost n=100" \
    "${P}pio-cost op=out port=0x80 cpl=0 n=100 cycles=[0-9]+ cycles_per_op=[0-9]+\.[0-9]{2}" \
    "${P}pio-cost op=out port=0x80 cpl=3 n=100 cycles=[0-9]+ cycles_per_op=[0-9]+\.[0-9]{2}"
check "pio-cost in from 0xcfc" 0 "test=pio-cost n=50 op=in port=0xcfc cpl=3" \
    "${P}pio-cost op=in port=0xcfc cpl=3 n=50 "
shared=(
    -object "memory-backend-file,id=shm,size=4M,share=on,mem-path=$shm_file"
    -device ivshmem-plain,memdev=shm
)
check "shm-rw writes and verifies the whole shared BAR" 0 "test=shm-rw" \
    "${P}shm 00:[0-9a-f]{2}\.0 bar=2 addr=0x[0-9a-f]+ size=0x400000 offset=0x0 bytes=4194304 mode=rw seed=1\$" \
    "${P}shm-result written=4194304 verified=4194304 mismatches=0 " -- "${shared[@]}"
check "shm-rw: VM A writes" 0 "test=shm-rw mode=write seed=42 offset=0x1000 bytes=64k" \
    "${P}shm-result written=65536 verified=0 mismatches=0 " -- "${shared[@]}"
check "shm-rw: VM B reads what A wrote" 0 "test=shm-rw mode=read seed=42 offset=0x1000 bytes=64k" \
    "${P}shm-result written=0 verified=65536 mismatches=0 " -- "${shared[@]}"
check "shm-rw: a wrong seed is a mismatch" 1 "test=shm-rw mode=read seed=43 offset=0x1000 bytes=64k" \
    "${P}shm-result written=0 verified=65536 mismatches=8192 " "${P}error: first mismatch at offset=0x0 " -- "${shared[@]}"
# check_waiter NAME OUTPUT PATTERN: waits for the VM started in the
# background ($waiter) and checks its exit status and output.
check_waiter() {
    local name="$1" output="$2" pattern="$3"
    local status=0
    wait "$waiter" || status=$?
    waiter=""
    verdict "$name" "$output" "$status" 0 "$pattern"
}
# two_vms NAME "CMDLINE B" "PATTERN B" "CMDLINE A" "PATTERN A": both at once
# over a fresh 1 MiB ivshmem-plain file; B starts first, A is the checked case.
two_vms() {
    local name="$1" cmd_b="$2" pat_b="$3" cmd_a="$4" pat_a="$5"
    local file="$work/$name.shm"
    rm -f "$file"
    truncate -s 1M "$file"
    local mem=(-object "memory-backend-file,id=shm,size=1M,share=on,mem-path=$file" -device ivshmem-plain,memdev=shm)
    "$run" "${run_args[@]}" --timeout 300 "$cmd_b" "${mem[@]}" >"$work/$name-b.out" 2>&1 &
    waiter=$!
    check "$name: VM A" 0 "$cmd_a" "$pat_a" -- "${mem[@]}"
    check_waiter "$name: VM B" "$work/$name-b.out" "$pat_b"
}
# An ivc channel both ways, then the bare-metal benchmarks' two sides.
two_vms chan-duplex \
    "test=chan-duplex tx=1m rx=1m seed=2 peer_seed=1" "${P}chan-result outcome=complete sent=1048576 received=1048576 " \
    "test=chan-duplex tx=1m rx=1m seed=1 peer_seed=2" "${P}chan-result outcome=complete sent=1048576 received=1048576 "
two_vms shm-pingpong-ring \
    "test=shm-pingpong role=b iters=300 warmup=10" "${P}pingpong-result role=b echoed=310 " \
    "test=shm-pingpong role=a iters=300 warmup=10 tsc_khz=2600000" \
    "${P}pingpong-result role=a proto=ring size=64 samples=300 batch=1 min_cycles=[0-9]+ median_cycles=[0-9]+ "
two_vms shm-pingpong-line \
    "test=shm-pingpong role=b proto=line iters=100 warmup=10 batch=4" "${P}pingpong-result role=b echoed=410 " \
    "test=shm-pingpong role=a proto=line iters=100 warmup=10 batch=4" \
    "${P}pingpong-result role=a proto=line size=64 samples=100 batch=4 "
two_vms shm-stream \
    "test=shm-stream role=rx bytes=2m chunk=64k" "${P}stream-result role=rx outcome=complete bytes=2097152 " \
    "test=shm-stream role=tx bytes=2m chunk=64k" "${P}stream-result role=tx outcome=complete bytes=2097152 "
check "garbage at every offset and width of every ivshmem BAR" 0 "test=garbage" \
    "${P}garbage bar=0 kind=mem32 bytes=256\$" "${P}garbage-result accesses=[0-9]+ device_ok=1\$" \
    -- "${shared[@]}"
# ---- doorbell -> MSI-X, through the rendezvous server ----
rendezvous="${IVC_RENDEZVOUS:-}"
if [ -z "$rendezvous" ]; then
    for candidate in "$IVC_ROOT/target/debug/ivc-rendezvous" "$IVC_ROOT/target/release/ivc-rendezvous"; do
        [ -x "$candidate" ] && rendezvous="$candidate" && break
    done
fi
if [ -z "$rendezvous" ]; then
    log "building ivc-rendezvous for the doorbell cases"
    if (cd "$IVC_ROOT" && cargo build -q -p ivc-rendezvous) >&2; then
        rendezvous="$IVC_ROOT/target/debug/ivc-rendezvous"
    fi
fi
if [ -z "$rendezvous" ] || ! [ -x "$rendezvous" ]; then
    warn "SKIP doorbell cases: no ivc-rendezvous binary (set IVC_RENDEZVOUS)"
else
    socket="$work/ivshmem.sock"
    "$rendezvous" --socket "$socket" --vectors 2 -q 2>"$work/rendezvous.log" &
    server_pid=$!
    for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
    doorbell=(-chardev "socket,path=$socket,id=ivs" -device ivshmem-doorbell,chardev=ivs,vectors=2)
    check "doorbell: own doorbell arrives as MSI-X (vector 0)" 0 "test=doorbell count=5" \
        "${P}doorbell 00:[0-9a-f]{2}\.0 ivposition=[0-9]+ mode=self vector=0 count=5( |\$)" \
        "${P}doorbell-result sent=5 expected=5 received=5 latency_cycles_avg=[0-9]+ " -- "${doorbell[@]}"
    check "doorbell: vector 1" 0 "test=doorbell vector=1 count=2" \
        "${P}doorbell-result sent=2 expected=2 received=2 " -- "${doorbell[@]}"
    check "doorbell: vector beyond the MSI-X table is a usage error" 2 "test=doorbell vector=5" \
        "${P}error: vector=5 but the MSI-X table has 2 entries" -- "${doorbell[@]}"

    # Two VMs: B waits, A rings B once B has said who it is.
    "$run" "${run_args[@]}" --timeout 300 --serial-file "$work/b.serial" \
        "test=doorbell mode=wait count=1 timeout_ms=60000" "${doorbell[@]}" >"$work/b.out" 2>&1 &
    waiter=$!
    peer=""
    for _ in $(seq 600); do
        peer="$(sed -n 's/^ivc-test-guest: doorbell .* ivposition=\([0-9]*\) .*/\1/p' "$work/b.serial" 2>/dev/null || true)"
        [ -n "$peer" ] && break
        kill -0 "$waiter" 2>/dev/null || break
        sleep 0.2
    done
    if [ -z "$peer" ]; then
        warn "FAIL doorbell across VMs: the waiting VM never reported its ivposition"
        sed 's/^/    /' "$work/b.serial" >&2
        failed=$((failed + 1))
    else
        check "doorbell: VM A rings VM B (peer $peer)" 0 "test=doorbell mode=ring peer=$peer count=3" \
            "${P}doorbell-result sent=3 " -- "${doorbell[@]}"
        check_waiter "doorbell: VM B received the interrupt" "$work/b.out" \
            "${P}doorbell-result sent=0 expected=1 received=[1-9]"
    fi
fi

check "CPU exception at CPL3 is reported" 102 "test=fault kind=pf cpl=3" \
    "${P}exception vector=14 .* cpl=3 .* cr2=0x1000000000\$" "${P}done status=102\$"
check "panic is reported" 101 "test=fault kind=panic" "${P}panic: " "${P}done status=101\$"
check "unknown test is a usage error" 2 "test=no-such-test" "${P}unknown test \"no-such-test\""
check "malformed parameter is a usage error" 2 "test=cpl3 bytes=lots" "${P}bad parameter bytes="

if [ $failed = 0 ]; then
    log "all $passed smoke cases passed"
else
    die "$failed of $((passed + failed)) smoke cases failed"
fi
