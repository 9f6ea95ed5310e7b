#!/usr/bin/env bash
# Builds the guest kernel (bzImage for QEMU, vmlinux with a PVH note for ivc-vmm)
# from kernel-config/ivc-guest.config and kernel-config/patches/, and prints the
# build directory on stdout. The build is cached in $IVC_CACHE/kernel/<key>, the
# key covering the source, the fragment, the patches and the toolchain, so it is
# built once per input change and shared by every clone on the machine.
source "$(dirname "$0")/lib.sh"

need_cmd clang$LLVM_SUFFIX
need_cmd rustc
need_cmd bindgen

src="$("$IVC_ROOT/scripts/fetch-kernel.sh")"
fragment="$IVC_ROOT/kernel-config/ivc-guest.config"
patches="$IVC_ROOT/kernel-config/patches"

src_id="$(cat "$src/.ivc-unpacked" 2>/dev/null || echo "$src")"
toolchain="$(rustc --version) $(bindgen --version) $(clang$LLVM_SUFFIX --version | head -n1)"
key="$( { echo "$src_id"; echo "$toolchain"; hash_inputs "$fragment" "$patches"; } | sha256sum | cut -c1-16)"
build="$IVC_CACHE/kernel/build-$key"

# What a finished build must contain (Module.symvers and the kernel crate's
# metadata are what out-of-tree Rust modules link against).
outputs=(arch/x86/boot/bzImage vmlinux Module.symvers rust/libkernel.rmeta usr/gen_init_cpio)
complete() {
    [ -f "$build/.ivc-complete" ] || return 1
    local o
    for o in "${outputs[@]}"; do [ -e "$build/$o" ] || return 1; done
}
if complete; then
    log "guest kernel cached: $build"
    echo "$build"
    exit 0
fi

# A patched copy of the source made of hard links: patch(1) replaces the files
# it changes, so the original tree (which may be the user's KERNEL_SRC) is
# never modified.
psrc="$IVC_CACHE/kernel/src-$key"
if [ ! -f "$psrc/.ivc-patched" ]; then
    log "preparing patched source tree $psrc"
    rm -rf "$psrc"
    mkdir -p "$IVC_CACHE/kernel"
    cp -al "$src" "$psrc" 2>/dev/null || cp -a "$src" "$psrc"
    for p in "$patches"/*.patch; do
        [ -e "$p" ] || continue
        log "applying $(basename "$p")"
        patch -s -p1 -d "$psrc" <"$p" || die "patch $(basename "$p") does not apply to $src"
    done
    touch "$psrc/.ivc-patched"
fi

mkdir -p "$build"
mk=(make -C "$psrc" O="$build" ARCH=x86_64 LLVM="$LLVM_SUFFIX" -j"$(nproc)")

run_with_progress "checking Rust toolchain against the kernel" "$build/rustavailable.log" \
    "${mk[@]}" rustavailable

log "configuring: allnoconfig + $(basename "$fragment")"
"${mk[@]}" allnoconfig >"$build/config.log" 2>&1 || { cat "$build/config.log" >&2; die "allnoconfig failed"; }
"$psrc/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment" >>"$build/config.log" 2>&1 \
    || { cat "$build/config.log" >&2; die "merging the config fragment failed"; }
"${mk[@]}" olddefconfig >>"$build/config.log" 2>&1 || { cat "$build/config.log" >&2; die "olddefconfig failed"; }

# Every symbol the fragment asks for must have stuck.
bad=0
while IFS= read -r line; do
    case "$line" in CONFIG_*=*) ;; *) continue ;; esac
    grep -qxF "$line" "$build/.config" || { warn "config: wanted '$line', got '$(grep "^${line%%=*}=" "$build/.config" || echo "${line%%=*} unset")'"; bad=1; }
done <"$fragment"
[ $bad = 0 ] || die "the config fragment did not apply cleanly (see warnings above)"

run_with_progress "building guest kernel $KERNEL_VERSION ($(nproc) jobs; about 5 min cold on 2 idle cores)" "$build/build.log" \
    "${mk[@]}" bzImage vmlinux modules
for o in "${outputs[@]}"; do
    [ -e "$build/$o" ] || die "kernel build has no $o (CONFIG_RUST or CONFIG_MODULES did not take effect?)"
done
touch "$build/.ivc-complete"
log "guest kernel ready: $build/arch/x86/boot/bzImage"
echo "$build"
