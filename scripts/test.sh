#!/usr/bin/env bash
# The README's test command: builds everything that is missing, then runs
# every test tier this host can run. A tier that cannot run says why.
#
#   scripts/test.sh            all tiers
#   scripts/test.sh -- ARGS    extra arguments for `cargo test` (e.g. a filter)
source "$(dirname "$0")/lib.sh"
cd "$IVC_ROOT"
mkdir -p "$IVC_ROOT/target"

extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi

"$IVC_ROOT/scripts/install-prereqs.sh"

log "checking formatting and lints"
cargo fmt --all --check || die "cargo fmt --check failed: run 'cargo fmt --all'"
if [ -f vmm/test-guest/Cargo.toml ]; then
    (cd vmm/test-guest && cargo fmt --check) || die "cargo fmt --check failed in vmm/test-guest"
fi
rustfmt --check --edition 2021 guest-kmod/*.rs || die "rustfmt --check failed in guest-kmod"
run_with_progress "cargo clippy (workspace, -D warnings)" "$IVC_ROOT/target/clippy.log" \
    cargo clippy --workspace --all-targets -- -D warnings

log "checking the channel code the way the kernel compiles it (no panic paths, kernel lints)"
bash "$IVC_ROOT/abi/kcheck/check.sh" >"$IVC_ROOT/target/kcheck.log" 2>&1 \
    || { cat "$IVC_ROOT/target/kcheck.log" >&2; die "kcheck failed"; }
# Model-checked concurrency of the ring protocol (loom); own target dir so the
# --cfg does not invalidate the main build.
run_with_progress "loom model checks of the channel (ivc-abi --cfg loom)" "$IVC_ROOT/target/loom.log" \
    env RUSTFLAGS="--cfg loom" cargo test -p ivc-abi --release --test loom --target-dir "$IVC_ROOT/target/loom"
grep -E "^test result" "$IVC_ROOT/target/loom.log" >&2 || true

IVC_OUT="$IVC_OUT" "$IVC_ROOT/scripts/build-guest.sh"
if [ -x "$IVC_ROOT/scripts/build-test-guest.sh" ]; then
    IVC_TEST_GUEST="$("$IVC_ROOT/scripts/build-test-guest.sh")"
    export IVC_TEST_GUEST
fi

# Tier 4 (Linux guests in ivc-vmm) runs directly where /dev/kvm has VMX/SVM and
# in the nested host everywhere else; build that host where it is needed. A
# failure to build it is not fatal here: tier 4 then fails naming what is
# missing, and the other tiers still run.
if nested_kvm_needed; then
    use_patched_qemu
    IVC_NESTED_DIR="$(IVC_OUT="$IVC_OUT" "$IVC_ROOT/scripts/build-nested.sh")" \
        || { warn "building the nested host failed (above): tier 4 will fail"; IVC_NESTED_DIR="$IVC_ROOT/target/nested"; }
    export IVC_NESTED_DIR
fi

# The guest tiers must not skip silently in this script: missing artifacts,
# QEMU or a tier-4 backend are failures here, not skips.
export IVC_REQUIRE_GUEST=1 IVC_REQUIRE_QEMU=1 IVC_REQUIRE_TIER4=1 IVC_GUEST_DIR="$IVC_OUT"
# Tier 2 (ivc-vmm on /dev/kvm) must run wherever /dev/kvm exists; only a host
# without it may skip those tests, and each says so.
if [ -e /dev/kvm ]; then
    export IVC_REQUIRE_KVM=1
else
    warn "no /dev/kvm on this host: tier 2 tests will be skipped (each prints why)"
fi
log "running cargo test (all tiers; tier 2 needs /dev/kvm, tier 3 boots guests under QEMU TCG, tier 4 runs Linux in ivc-vmm$(nested_kvm_needed && echo ' inside a nested host under QEMU TCG'))"
cargo test --workspace --release --no-fail-fast "${extra[@]}" 2>&1 | tee "$IVC_ROOT/target/test.log"
rc=${PIPESTATUS[0]}
# One closing line over every test binary (cargo prints one per binary, the
# last of which is often an empty doc-test run). A test that could not run
# here prints `skipped <test>: <why>` and returns, which cargo counts as a
# pass: those count as skips here, and are listed.
# (A skip line can follow a "test x ... " that cargo printed before the result.)
runtime_skips="$(grep -oE '^(test [^ ]+ \.\.\. )?skipped [^ ]+: .*' "$IVC_ROOT/target/test.log" \
    | sed -E 's/^test [^ ]+ \.\.\. //' || true)"
nskips=0
[ -n "$runtime_skips" ] && nskips="$(printf '%s\n' "$runtime_skips" | wc -l)"
totals="$(grep -E '^test result:' "$IVC_ROOT/target/test.log" | awk -v rs="$nskips" '
    { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) g += $i } }
    END { printf "%d passed, %d failed, %d skipped", p - rs, f, g + rs }')"
if [ -n "$runtime_skips" ]; then
    log "tests that could not run here (counted as skipped):"
    printf '  %s\n' "$runtime_skips" >&2
fi
[ "$rc" = 0 ] || { echo "summary: $totals"; die "tests failed (exit $rc); log: target/test.log"; }
log "all tests passed"
echo "summary: $totals"
