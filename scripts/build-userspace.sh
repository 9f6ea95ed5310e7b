#!/usr/bin/env bash
# Builds the guest tools in userspace/tools as static musl binaries and prints
# the directory holding them (GUEST_TOOLS names them: the directory is shared
# with the L1's host programs).
source "$(dirname "$0")/lib.sh"

target=x86_64-unknown-linux-musl
run_with_progress "building guest tools (static, $target)" "$IVC_OUT/userspace-build.log" \
    cargo build --manifest-path "$IVC_ROOT/Cargo.toml" -p ivc-tools --profile guest-tools --target "$target" \
        --target-dir "$IVC_ROOT/target"
echo "$IVC_ROOT/target/$target/guest-tools"
