#!/usr/bin/env bash
# The README's main command: builds everything that is missing, then runs the
# main job (two VMs exchanging data over ivc channels).
source "$(dirname "$0")/lib.sh"
cd "$IVC_ROOT"
mkdir -p "$IVC_ROOT/target"
IVC_OUT="$IVC_OUT" "$IVC_ROOT/scripts/build-guest.sh"
# An explicit target directory: the binary is run from there below, whatever
# CARGO_TARGET_DIR the caller has set (ivc-run builds ivc-vmm the same way).
run_with_progress "building ivc-run (release)" "$IVC_ROOT/target/ivc-run-build.log" \
    cargo build --release -p ivc-runner --target-dir "$IVC_ROOT/target"
IVC_GUEST_DIR="$IVC_OUT" exec "$IVC_ROOT/target/release/ivc-run" "$@"
