#!/usr/bin/env bash
# Builds every guest artifact into $IVC_OUT (default target/guest):
#   bzImage, vmlinux       the guest kernel (cached in $IVC_CACHE)
#   ivc.ko                 the driver
#   initramfs.cpio.gz      busybox + /init + ivc.ko + the static guest tools
source "$(dirname "$0")/lib.sh"

"$IVC_ROOT/scripts/install-prereqs.sh"
mkdir -p "$IVC_OUT"
kbuild="$("$IVC_ROOT/scripts/build-kernel.sh")"
ko="$("$IVC_ROOT/scripts/build-kmod.sh")"
tools="$("$IVC_ROOT/scripts/build-userspace.sh")"

busybox="$(command -v busybox || true)"
[ -n "$busybox" ] && file -L "$busybox" 2>/dev/null | grep -q "statically linked" || busybox=/bin/busybox
[ -x "$busybox" ] || die "no static busybox (install busybox-static)"

log "packing initramfs"
list="$IVC_OUT/initramfs.list"
{
    echo "dir /bin 0755 0 0"
    echo "dir /sbin 0755 0 0"
    echo "dir /dev 0755 0 0"
    echo "nod /dev/console 0600 0 0 c 5 1"
    echo "nod /dev/null 0666 0 0 c 1 3"
    for d in proc sys tmp root lib lib/ivc; do echo "dir /$d 0755 0 0"; done
    echo "file /init $IVC_ROOT/scripts/initramfs/init 0755 0 0"
    echo "file /bin/busybox $busybox 0755 0 0"
    echo "file /lib/ivc/ivc.ko $ko 0644 0 0"
    # The guest tools by name: the directory also holds the host programs
    # that scripts/build-nested.sh builds for the L1 (ivc-vmm, ...).
    for b in "${GUEST_TOOLS[@]}"; do
        [ -x "$tools/$b" ] || die "guest tool $tools/$b missing (scripts/build-userspace.sh)"
        echo "file /bin/$b $tools/$b 0755 0 0"
    done
} >"$list"
"$kbuild/usr/gen_init_cpio" "$list" | gzip -1 >"$IVC_OUT/initramfs.cpio.gz.tmp"
mv "$IVC_OUT/initramfs.cpio.gz.tmp" "$IVC_OUT/initramfs.cpio.gz"
cp "$ko" "$IVC_OUT/ivc.ko"
cp "$kbuild/arch/x86/boot/bzImage" "$IVC_OUT/bzImage"
ln -sf "$kbuild/vmlinux" "$IVC_OUT/vmlinux"
log "guest artifacts ready in $IVC_OUT: bzImage, vmlinux, initramfs.cpio.gz ($(du -h "$IVC_OUT/initramfs.cpio.gz" | cut -f1)), ivc.ko"
