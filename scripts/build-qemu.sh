#!/usr/bin/env bash
# Builds the QEMU the nested host (tier 4) runs under, and prints the
# binary's path: Debian's QEMU 10.0.2 source with one fix of ours applied,
# x86_64-softmmu only, TCG only.
#
# The fix (docs/testing.md, "An L1 that stops taking interrupts"): QEMU 10.0's
# emulated VMRUN sets CPU_INTERRUPT_VIRQ in the vCPU's interrupt_request word
# with a plain read-modify-write on the vCPU thread, without the big QEMU
# lock (BQL), while the I/O thread sets other bits of the same word under
# that lock (cpu_interrupt from the emulated APIC). When the two overlap,
# one update is lost. The one that matters is the APIC's poll request for
# the L1's own timer interrupt: the interrupt then waits in the L1's IRR and
# no request ever makes the CPU take it, so the L1's timer stops until some
# other interrupt comes, and for good if the L1 is idle. We take the BQL
# around that one update, as cpu_reset_interrupt() does for its own.
#
# The binary looks for its firmware where Debian's QEMU does (/usr/share/qemu,
# /usr/share/seabios, /usr/lib/ipxe/qemu), which the qemu-system-x86 package
# that install-prereqs.sh installs (same version) fills. Cached in
# $IVC_CACHE/qemu/<version>-<key>, keyed by the source tarball's checksum,
# the fix and the configure options; a cold build took 22 minutes on this
# machine's two cores while other work ran (2026-12-07).
#
# Env: IVC_QEMU_SOURCE_URL overrides where the source tarball comes from.

source "$(dirname "$0")/lib.sh"

QEMU_VERSION=10.0.2
QEMU_TARBALL="qemu_${QEMU_VERSION}+ds.orig.tar.xz"
QEMU_SHA256_FILE="$IVC_ROOT/scripts/qemu/$QEMU_TARBALL.sha256"
QEMU_SHA256="$(cut -d' ' -f1 "$QEMU_SHA256_FILE")"

FIX="$IVC_ROOT/scripts/qemu/fix-vmrun-virq.py"
# What the binary is built from and with; the cache key covers exactly this.
QEMU_CONFIGURE=(
    --prefix=/usr --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
    --target-list=x86_64-softmmu --enable-tcg
    --disable-docs --disable-werror --disable-user --disable-tools --disable-guest-agent
    --disable-install-blobs --disable-gtk --disable-sdl --disable-vnc --disable-opengl
    --disable-spice --disable-xen --disable-curl --disable-libusb --disable-usb-redir
    --disable-slirp --disable-capstone --disable-fdt
)
key="$({ hash_inputs "$QEMU_SHA256_FILE" "$FIX"; printf '%s\n' "${QEMU_CONFIGURE[@]}"; } | sha256sum | cut -c1-16)"
dest="$IVC_CACHE/qemu/$QEMU_VERSION-$key"
bin="$dest/bin/qemu-system-x86_64"
# QEMU is relocatable: it looks for firmware relative to its own directory
# (../share/qemu, ../share/seabios, ../lib/ipxe/qemu for the paths above), so
# the cache entry links those to Debian's directories.
FIRMWARE_DIRS=(share/qemu share/seabios lib/ipxe/qemu)
cached() {
    local d
    [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1 || return 1
    for d in "${FIRMWARE_DIRS[@]}"; do [ -L "$dest/$d" ] || return 1; done
}
if cached; then
    log "patched QEMU $QEMU_VERSION cached: $bin"
    echo "$bin"
    exit 0
fi

mkdir -p "$IVC_CACHE/qemu"
tarball="$IVC_CACHE/qemu/$QEMU_TARBALL"
if ! echo "$QEMU_SHA256  $tarball" | sha256sum -c --status 2>/dev/null; then
    url="${IVC_QEMU_SOURCE_URL:-http://deb.debian.org/debian/pool/main/q/qemu/$QEMU_TARBALL}"
    log "downloading QEMU $QEMU_VERSION source ($url)"
    curl -fsSL --retry 3 -o "$tarball.part" "$url" || die "could not download $url"
    echo "$QEMU_SHA256  $tarball.part" | sha256sum -c --status \
        || die "$url: checksum mismatch (expected $QEMU_SHA256, see $QEMU_SHA256_FILE)"
    mv "$tarball.part" "$tarball"
fi

# Build tools: meson >= 1.5 (QEMU 10 refuses older ones; Debian 12 has 1.0),
# in a virtual environment of our own so the system's Python stays as it is.
venv="$IVC_CACHE/qemu/venv"
if ! "$venv/bin/python3" -c 'import mesonbuild' 2>/dev/null; then
    log "installing meson 1.5 into $venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q "meson==1.5.0" pycotap \
        || die "could not install meson into $venv"
fi
need_cmd ninja
need_cmd bison
need_cmd flex
pkg-config --exists glib-2.0 pixman-1 || die "glib-2.0 or pixman-1 development files missing; run scripts/install-prereqs.sh"

work="$IVC_CACHE/qemu/build-$key"
rm -rf "$work"
mkdir -p "$work/src"
log "unpacking QEMU $QEMU_VERSION"
tar -xJf "$tarball" -C "$work/src" --strip-components=1
python3 "$FIX" "$work/src" \
    || die "could not apply the VMRUN fix to QEMU $QEMU_VERSION"
# Debian's +ds source drops the prebuilt EDK2 images; we need none of them
# (the L1 boots with SeaBIOS from qemu-system-data).
sed -i 's/^    unpack_edk2_blobs = bzip2.found()$/    unpack_edk2_blobs = false/' "$work/src/meson.build"

mkdir -p "$work/src/build"
(
    cd "$work/src/build"
    run_with_progress "configuring QEMU $QEMU_VERSION (x86_64-softmmu, TCG)" "$work/configure.log" \
        ../configure --python="$venv/bin/python3" "${QEMU_CONFIGURE[@]}"
    run_with_progress "building qemu-system-x86_64 (15-25 min cold on two cores)" "$work/build.log" \
        ninja -j"$(nproc)" qemu-system-x86_64
)
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/bin"
cp "$work/src/build/qemu-system-x86_64" "$dest.tmp/bin/"
for d in "${FIRMWARE_DIRS[@]}"; do
    mkdir -p "$(dirname "$dest.tmp/$d")"
    ln -s "/usr/$d" "$dest.tmp/$d"
done
"$dest.tmp/bin/qemu-system-x86_64" --version >/dev/null || die "the built QEMU does not run"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
rm -rf "$work"
log "patched QEMU $QEMU_VERSION ready: $bin"
echo "$bin"
