#!/usr/bin/env bash
# The README's main command: builds everything that is missing, then runs the
# main job (two VMs exchanging data over ivc channels).
source "$(dirname "$0")/lib.sh"
cd "$IVC_ROOT"
mkdir -p "$IVC_ROOT/target"
IVC_OUT="$IVC_OUT" "$IVC_ROOT/scripts/build-guest.sh"
# Linux guests in ivc-vmm (the linux-in-ivc-vmm suite) run in the nested host
# where this host's /dev/kvm cannot run them; if it cannot be built, that
# suite says why and the others still run.
if nested_kvm_needed; then
    use_patched_qemu
    IVC_NESTED_DIR="$(IVC_OUT="$IVC_OUT" "$IVC_ROOT/scripts/build-nested.sh")" \
        || { warn "building the nested host failed (above): the linux-in-ivc-vmm suite will not run"; IVC_NESTED_DIR="$IVC_ROOT/target/nested"; }
    export IVC_NESTED_DIR
fi
# An explicit target directory: the binaries are run from there below, whatever
# CARGO_TARGET_DIR the caller has set (ivc-run builds ivc-vmm the same way;
# ivc-scenario runs Linux guests in ivc-vmm on hosts that need no nesting).
run_with_progress "building ivc-run, ivc-vmm, ivc-rendezvous and ivc-scenario (release)" "$IVC_ROOT/target/ivc-run-build.log" \
    cargo build --release -p ivc-run -p ivc-vmm -p ivc-rendezvous -p ivc-guest-harness --bins --target-dir "$IVC_ROOT/target"
IVC_GUEST_DIR="$IVC_OUT" exec "$IVC_ROOT/target/release/ivc-run" "$@"
