#!/usr/bin/env bash
# Builds guest-kmod/ivc.ko against the cached guest kernel, with the kernel's
# clippy lint set (CLIPPY=1); any warning fails the build. Objects go to
# $IVC_OUT/kmod (Kbuild's MO=), so the source tree stays clean and a rebuild
# after a module change only recompiles the module. Prints the .ko path.
source "$(dirname "$0")/lib.sh"

kbuild="$("$IVC_ROOT/scripts/build-kernel.sh")"
out="$IVC_OUT/kmod"
mkdir -p "$out"
# Kbuild under make < 4.4 marks every file .SECONDARY, and make then leaves a
# prerequisite that no longer exists out of the "changed" set: a module source
# that was deleted or moved (ffi.rs -> ffi/mod.rs) would leave the old ivc.o
# standing. If a source the last build read is gone, drop that object.
if [ -f "$out/.ivc.o.cmd" ]; then
    while read -r src; do
        if [ ! -e "$src" ]; then
            log "$src is gone since the last module build: rebuilding ivc.o"
            rm -f "$out/ivc.o"
            break
        fi
    done < <(sed -n 's|^ *\(/.*\.rs\) *\\$|\1|p' "$out/.ivc.o.cmd")
fi
run_with_progress "building ivc.ko" "$out/build.log" \
    make -C "$kbuild" M="$IVC_ROOT/guest-kmod" MO="$out" ARCH=x86_64 LLVM="$LLVM_SUFFIX" CLIPPY=1 -j"$(nproc)" modules
[ -f "$out/ivc.ko" ] || die "module build produced no ivc.ko (see $out/build.log)"
# Warnings are errors for our own code: the kernel's build only warns.
if grep -E "^(warning|error)(\[|:)" "$out/build.log" >/dev/null; then
    grep -E -A6 "^(warning|error)(\[|:)" "$out/build.log" >&2
    die "ivc.ko built with warnings (see above)"
fi
echo "$out/ivc.ko"
