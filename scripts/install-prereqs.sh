#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently:
# Debian packages (LLVM 19 toolchain, kernel build deps, busybox, QEMU and
# what building our patched QEMU needs),
# rustup components/targets and bindgen-cli. Safe to run repeatedly.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(
    clang-19 libclang-19-dev lld-19 llvm-19
    bc flex bison make libelf-dev libssl-dev cpio xz-utils
    busybox-static qemu-system-x86 python3 binutils
    # scripts/build-qemu.sh: the nested host's QEMU with our interrupt fix
    curl python3-venv ninja-build pkg-config libglib2.0-dev libpixman-1-dev
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

# Nested KVM (tier 4, the main job's linux-in-ivc-vmm suite) runs its L1 under
# QEMU's multi-threaded TCG, which needs QEMU >= 10: 7.2 (bookworm) livelocks
# now and then when the L1 kernel live-patches code, and does not trap XSETBV
# for the nested guest (docs/testing.md, "Tier 4"). On bookworm it comes from
# the backports suite of the Debian archive apt already uses, through a
# private package list (scripts/lib.sh, private_apt); it replaces the system's
# qemu-system-x86, so tier 3 runs on it too. If it cannot be had, this warns
# and tier 4 fails naming what is missing; the other tiers still run.
qemu_major() { qemu-system-x86_64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1; }
qemu_now="$(qemu_major)"
if [ "${qemu_now:-0}" -lt 10 ]; then
    # shellcheck disable=SC1091
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    mirror="$(debian_mirror)"
    suite="$codename-backports"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    if [ -z "$codename" ] || [ -z "$mirror" ]; then
        warn "QEMU ${qemu_now:-(none)} is older than 10 and no Debian archive/codename was found in apt's configuration: tier 4 (nested KVM) will fail; install QEMU >= 10 or set IVC_QEMU"
    else
        log "QEMU ${qemu_now:-(none)} is too old for nested KVM: installing qemu-system-x86 from $suite ($mirror, from apt configuration)"
        if private_apt "$IVC_CACHE/apt-$suite" \
                "deb [signed-by=$keyring] $mirror $codename main" \
                "deb [signed-by=$keyring] $mirror $codename-updates main" \
                "deb [signed-by=$keyring] $mirror $suite main" \
            && DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends \
                "qemu-system-x86/$suite" >"$IVC_CACHE/apt-$suite/install.log" 2>&1; then
            log "installed $(qemu-system-x86_64 --version | head -n1)"
        else
            tail -n 20 "$IVC_CACHE/apt-$suite/install.log" "$IVC_CACHE/apt-$suite/update.log" 2>/dev/null >&2 || true
            warn "could not install qemu-system-x86 from $suite: tier 4 (nested KVM) will fail; install QEMU >= 10 or set IVC_QEMU"
        fi
    fi
else
    log "QEMU $qemu_now.x present (nested KVM needs >= 10)"
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
