#!/usr/bin/env bash
# Build ivc-test-guest, the bare-metal PVH test guest (vmm/test-guest), for
# x86_64-unknown-none. Progress goes to stderr; the ELF path is the only thing
# printed on stdout, so callers can do: ELF=$(scripts/build-test-guest.sh)
#
# Usage: scripts/build-test-guest.sh [--lint] [--help]
#   --lint   also run cargo fmt --check and clippy -D warnings on the guest
#
# The output path is fixed (vmm/test-guest/target/x86_64-unknown-none/release/
# ivc-test-guest): other tools rely on it, so CARGO_TARGET_DIR is ignored here.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET=x86_64-unknown-none
GUEST_DIR="$IVC_ROOT/vmm/test-guest"
ELF="$GUEST_DIR/target/$TARGET/release/ivc-test-guest"

lint=0
for arg in "$@"; do
    case "$arg" in
        --lint) lint=1 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

need_cmd cargo
[ -f "$GUEST_DIR/Cargo.toml" ] || die "$GUEST_DIR/Cargo.toml not found: is this an ivc checkout?"

# The target's precompiled core library comes from rustup.
if command -v rustup >/dev/null 2>&1; then
    # Ask the toolchain that will build the guest (cargo runs from GUEST_DIR).
    if ! (cd "$GUEST_DIR" && rustup target list --installed 2>/dev/null) | grep -qx "$TARGET"; then
        die "Rust target $TARGET is not installed; run: rustup target add $TARGET (or scripts/install-prereqs.sh)"
    fi
else
    warn "rustup not found; assuming the $TARGET standard library is installed"
fi

# Settings from the environment would override vmm/test-guest/.cargo/config.toml
# (relocation-model=static is required) or move the output away from the
# documented path.
for var in RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR CARGO_BUILD_TARGET; do
    if [ -n "${!var:-}" ]; then
        warn "ignoring $var=${!var} for the test guest build"
        unset "$var"
    fi
done

# cargo reads .cargo/config.toml from the working directory, not from
# --manifest-path: build from inside the guest's directory.
cd "$GUEST_DIR"

if [ $lint = 1 ]; then
    log "cargo fmt --check (test guest)"
    cargo fmt --check >&2 || die "test guest is not rustfmt-clean; run: (cd vmm/test-guest && cargo fmt)"
    log "cargo clippy -D warnings (test guest)"
    cargo clippy --locked --target "$TARGET" -- -D warnings >&2 || die "clippy found problems in vmm/test-guest"
fi

log "building ivc-test-guest for $TARGET (release)"
start=$SECONDS
cargo build --locked --release --target "$TARGET" >&2 || die "cargo build of vmm/test-guest failed (output above)"

[ -f "$ELF" ] || die "build reported success but $ELF is missing"
# The PVH note is what makes the ELF bootable by ivc-vmm and QEMU -kernel.
if command -v readelf >/dev/null 2>&1; then
    readelf -n "$ELF" 2>/dev/null | grep -Eq 'Xen.*(0x00000012|PHYS32)' \
        || die "$ELF has no XEN_ELFNOTE_PHYS32_ENTRY note (check linker.ld / src/boot.S)"
fi
# The PVM instruction emulator runs our CPL0 code and cannot execute SSE,
# x87, XSAVE, POPCNT, CLAC/STAC (nor INT3, which LLVM only emits as padding
# between functions, never executed). Catch a toolchain or code change that
# brings them in before it turns into a mysterious failure under /dev/kvm.
if command -v objdump >/dev/null 2>&1; then
    bad="$(objdump -d --no-show-raw-insn "$ELF" \
        | grep -E '\b(popcnt|tzcnt|lzcnt|fld|fstp|fst|fninit|fnclex|emms|xsave[a-z]*|xrstor[a-z]*|clac|stac|syscall|sysenter)\b|%[xyz]mm[0-9]|%st\b' \
        | head -n 5 || true)"
    [ -z "$bad" ] || die "ivc-test-guest contains instructions PVM cannot emulate at CPL0:
$bad"
fi
log "ivc-test-guest ready in $((SECONDS - start))s ($(stat -c %s "$ELF") bytes)"
echo "$ELF"
