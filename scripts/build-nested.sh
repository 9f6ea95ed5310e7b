#!/usr/bin/env bash
# Builds the nested host ("L1") that runs ivc-vmm with Linux guests on hosts
# whose /dev/kvm cannot (docs/testing.md, "Tier 4"), and prints the directory
# holding it on stdout:
#
#   vmlinuz      the L1 kernel: a Debian-packaged cloud kernel (downloaded with
#                apt-get download, cached in $IVC_CACHE/nested, never built)
#   l1.cpio      the L1 initramfs: busybox, the KVM modules (kvm-amd: QEMU TCG
#                emulates an AMD CPU with SVM), scripts/nested/init, and the
#                payload: ivc-vmm, ivc-rendezvous and ivc-scenario (static musl),
#                the guest kernel (vmlinux and bzImage: tier 4 boots both) and
#                initramfs, and the tier-2 test programs
#   manifest     what went in, for the harness's reports
#
# Usage: scripts/build-nested.sh [--help]
# Environment: IVC_L1_KERNEL_PKG (default linux-image-cloud-amd64) picks
# another Debian kernel package (a meta package is resolved to its image).
source "$(dirname "$0")/lib.sh"

case "${1:-}" in
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    "") ;;
    *) die "unknown argument '$1' (try --help)" ;;
esac

L1_PKG="${IVC_L1_KERNEL_PKG:-linux-image-cloud-amd64}"
# The modules the L1 loads, in order: KVM for the emulated AMD CPU, and
# qemu_fw_cfg, through which the harness hands over the scenario. Every
# module's own dependencies are checked against this list below.
L1_MODULES=(irqbypass kvm kvm-amd qemu_fw_cfg)
musl=x86_64-unknown-linux-musl
out="$IVC_ROOT/target/nested"
mkdir -p "$out" "$IVC_CACHE/nested"

# --- the guest side: kernel, module, initramfs (cached kernel build) --------
IVC_OUT="$IVC_OUT" "$IVC_ROOT/scripts/build-guest.sh"
kbuild="$("$IVC_ROOT/scripts/build-kernel.sh")"
for f in vmlinux bzImage initramfs.cpio.gz; do
    [ -f "$IVC_OUT/$f" ] || die "$IVC_OUT/$f missing after scripts/build-guest.sh"
done

# --- the L1 kernel and its modules, from Debian ------------------------------
# Resolve a meta package to the image package it depends on, from the system's
# package lists (no network needed when the result is cached).
resolve_l1_pkg() {
    local dep
    dep="$(apt-cache depends "$L1_PKG" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')"
    echo "${dep:-$L1_PKG}"
}
pkg="$(resolve_l1_pkg)"
ver="$(apt-cache show "$pkg" 2>/dev/null | awk '/^Version:/ { print $2; exit }')"
if [ -z "$ver" ]; then
    log "apt knows no '$pkg': updating the package lists"
    $([ "$(id -u)" -ne 0 ] && echo sudo) apt-get update -q >/dev/null || die "apt-get update failed"
    pkg="$(resolve_l1_pkg)"
    ver="$(apt-cache show "$pkg" 2>/dev/null | awk '/^Version:/ { print $2; exit }')"
fi
[ -n "$ver" ] || die "the L1 kernel package '$pkg' is not in this machine's Debian archive \
(apt-cache show found nothing); set IVC_L1_KERNEL_PKG to a linux-image-*-amd64 package apt knows"
kdir="$IVC_CACHE/nested/$pkg-$ver"
if [ ! -f "$kdir/.ivc-complete" ]; then
    log "downloading the L1 kernel: $pkg $ver (Debian package, no build)"
    tmp="$(mktemp -d "$IVC_CACHE/nested/download.XXXXXX")"
    # apt drops privileges to _apt for downloads; let it write here.
    chmod 0777 "$tmp"
    (cd "$tmp" && apt-get download -q "$pkg=$ver" >"$tmp/download.log" 2>&1) \
        || { cat "$tmp/download.log" >&2; rm -rf "$tmp"; die "apt-get download $pkg=$ver failed (the L1 kernel); is the Debian archive reachable?"; }
    mkdir -p "$tmp/x"
    dpkg-deb -x "$tmp"/*.deb "$tmp/x" || die "cannot unpack $(ls "$tmp"/*.deb)"
    rm -rf "$kdir.tmp"; mkdir -p "$kdir.tmp/modules"
    cp "$tmp"/x/boot/vmlinuz-* "$kdir.tmp/vmlinuz" || die "no /boot/vmlinuz-* in $pkg"
    for m in "${L1_MODULES[@]}"; do
        f="$(find "$tmp/x/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)"
        [ -n "$f" ] || die "$pkg has no module $m (needed for nested KVM)"
        case "$f" in
            *.ko) cp "$f" "$kdir.tmp/modules/$m.ko" ;;
            *.ko.xz) xz -dc "$f" >"$kdir.tmp/modules/$m.ko" ;;
            *.ko.zst) zstd -qdc "$f" >"$kdir.tmp/modules/$m.ko" || die "zstd needed to unpack $m" ;;
        esac
    done
    rm -rf "$tmp" "$kdir"
    mv "$kdir.tmp" "$kdir"
    echo "$pkg $ver" >"$kdir/.ivc-complete"
fi
log "L1 kernel: $pkg $ver (cached in $kdir)"
# Each module's depends= must be loaded before it, by this list.
loaded=" "
for m in "${L1_MODULES[@]}"; do
    deps="$(strings -a "$kdir/modules/$m.ko" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' ')"
    for d in $deps; do
        case "$loaded" in *" ${d//_/-} "*|*" ${d//-/_} "*) ;; *) die "L1 module $m needs $d, which is not loaded before it (L1_MODULES in $0)" ;; esac
    done
    loaded="$loaded$m "
done

# --- the payload: static host programs and tier-2 test programs --------------
run_with_progress "building ivc-vmm, ivc-rendezvous and ivc-scenario for the L1 (static, $musl)" "$out/build-bins.log" \
    cargo build --manifest-path "$IVC_ROOT/Cargo.toml" --profile guest-tools --target "$musl" \
        -p ivc-vmm -p ivc-rendezvous -p ivc-guest-harness --bins --target-dir "$IVC_ROOT/target"
bins="$IVC_ROOT/target/$musl/guest-tools"

# The tier-2 programs that need only /dev/kvm (not QEMU, not this host's PVM):
# they run once under the L1's SVM KVM.
TIER2_TESTS=(test_guest ivc_devices hand_assembled_guests)
run_with_progress "building the tier-2 tests for the L1 (static, $musl)" "$out/build-tier2.log" \
    cargo test --manifest-path "$IVC_ROOT/Cargo.toml" --release --target "$musl" -p ivc-vmm \
        "${TIER2_TESTS[@]/#/--test=}" --no-run --message-format=json-render-diagnostics --target-dir "$IVC_ROOT/target"
test_guest_elf="$("$IVC_ROOT/scripts/build-test-guest.sh")"

stage="$out/stage"
rm -rf "$stage"; mkdir -p "$stage/tier2"
for t in "${TIER2_TESTS[@]}"; do
    exe="$(grep -o '"executable":"[^"]*/'"$t"'-[0-9a-f]*"' "$out/build-tier2.log" | tail -n1 | sed 's/"executable":"//; s/"$//')"
    [ -n "$exe" ] && [ -x "$exe" ] || die "no executable for tier-2 test $t in $out/build-tier2.log"
    strip -o "$stage/tier2/$t" "$exe"
done
cp "$test_guest_elf" "$stage/tier2/ivc-test-guest"
# Symbols are of no use to the L1; the ELF notes (PVH entry) stay.
strip -o "$stage/vmlinux" "$IVC_OUT/vmlinux"

list="$out/l1.list"
{
    for d in /bin /sbin /dev /proc /sys /tmp /run /lib /lib/ivc-l1 /lib/ivc-l1/modules \
        /opt /opt/ivc /opt/ivc/bin /opt/ivc/guest /opt/ivc/tier2; do
        echo "dir $d 0755 0 0"
    done
    echo "nod /dev/console 0600 0 0 c 5 1"
    echo "nod /dev/null 0666 0 0 c 1 3"
    echo "file /init $IVC_ROOT/scripts/nested/init 0755 0 0"
    echo "file /bin/busybox $(command -v busybox) 0755 0 0"
    for m in "${L1_MODULES[@]}"; do echo "file /lib/ivc-l1/modules/$m.ko $kdir/modules/$m.ko 0644 0 0"; done
    echo "file /lib/ivc-l1/modules.order $out/modules.order 0644 0 0"
    echo "file /opt/ivc/bin/ivc-vmm $bins/ivc-vmm 0755 0 0"
    echo "file /opt/ivc/bin/ivc-rendezvous $bins/ivc-rendezvous 0755 0 0"
    echo "file /opt/ivc/bin/ivc-scenario $bins/ivc-scenario 0755 0 0"
    echo "file /opt/ivc/guest/vmlinux $stage/vmlinux 0644 0 0"
    echo "file /opt/ivc/guest/bzImage $IVC_OUT/bzImage 0644 0 0"
    echo "file /opt/ivc/guest/initramfs.cpio.gz $IVC_OUT/initramfs.cpio.gz 0644 0 0"
    for f in "$stage"/tier2/*; do echo "file /opt/ivc/tier2/$(basename "$f") $f 0755 0 0"; done
} >"$list"
printf '%s\n' "${L1_MODULES[@]}" >"$out/modules.order"
file -L "$(command -v busybox)" | grep -q "statically linked" || die "busybox is not static (install busybox-static)"

# Uncompressed: the emulated L1 unpacks it faster than it would gunzip it.
"$kbuild/usr/gen_init_cpio" "$list" >"$out/l1.cpio.tmp" || die "gen_init_cpio failed on $list"
mv "$out/l1.cpio.tmp" "$out/l1.cpio"
cp "$kdir/vmlinuz" "$out/vmlinuz"
{
    echo "l1_kernel=$pkg $ver"
    echo "l1_modules=${L1_MODULES[*]}"
    echo "tier2=${TIER2_TESTS[*]}"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$out/manifest"
log "nested host ready in $out: vmlinuz ($pkg $ver), l1.cpio ($(du -h "$out/l1.cpio" | cut -f1))"
echo "$out"
