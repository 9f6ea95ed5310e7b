#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently:
# Debian packages (LLVM 19 toolchain, kernel build deps, busybox, QEMU),
# rustup components/targets and bindgen-cli. Safe to run repeatedly.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(
    clang-19 libclang-19-dev lld-19 llvm-19
    bc flex bison make libelf-dev libssl-dev cpio xz-utils
    busybox-static qemu-system-x86 python3
)
BINDGEN_VERSION=0.72.1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install Debian packages"
    SUDO=sudo
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install failed for: ${missing[*]}"
else
    log "Debian packages present"
fi

need_cmd rustup
components="$(rustup component list --installed 2>/dev/null)"
echo "$components" | grep -q '^rust-src' || { log "rustup: adding rust-src"; rustup component add rust-src; }
echo "$components" | grep -q '^rustfmt' || { log "rustup: adding rustfmt"; rustup component add rustfmt; }
echo "$components" | grep -q '^clippy' || { log "rustup: adding clippy"; rustup component add clippy; }
targets="$(rustup target list --installed)"
for t in x86_64-unknown-linux-musl x86_64-unknown-none; do
    echo "$targets" | grep -qx "$t" || { log "rustup: adding target $t"; rustup target add "$t"; }
done

if ! bindgen --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
    run_with_progress "cargo install bindgen-cli $BINDGEN_VERSION" "${TMPDIR:-/tmp}/ivc-bindgen-install.log" \
        cargo install --locked bindgen-cli --version "$BINDGEN_VERSION"
else
    log "bindgen-cli $BINDGEN_VERSION present"
fi
log "prerequisites ready"
