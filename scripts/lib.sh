# Shared helpers for the build scripts. Sourced, never executed.
# shellcheck shell=bash

set -euo pipefail

IVC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Expensive artifacts (kernel source, kernel builds) live outside the clone so a
# fresh clone, and CI, can reuse them. Every entry is keyed by its inputs.
IVC_CACHE="${IVC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ivc}"
# Where per-checkout build products go (module, initramfs, binaries).
IVC_OUT="${IVC_OUT:-$IVC_ROOT/target/guest}"
# The guest tools (the binaries of userspace/tools) that go into the guest
# initramfs as /bin/<name>.
GUEST_TOOLS=(ivc-xfer ivc-polltest ivc-bench ivc-maptest)
KERNEL_VERSION="${KERNEL_VERSION:-7.3}"
LLVM_SUFFIX="${LLVM_SUFFIX:--19}"

export PATH="$HOME/.cargo/bin:$PATH"

_ts() { date +%H:%M:%S; }
log()  { printf '\033[1;34m[%s ivc]\033[0m %s\n' "$(_ts)" "$*" >&2; }
warn() { printf '\033[1;33m[%s ivc] warning:\033[0m %s\n' "$(_ts)" "$*" >&2; }
die()  { printf '\033[1;31m[%s ivc] error:\033[0m %s\n' "$(_ts)" "$*" >&2; exit 1; }

need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; run scripts/install-prereqs.sh first"
}

# Hash of the given files/directories' contents (paths sorted, names included).
hash_inputs() {
    local p
    for p in "$@"; do
        if [ -d "$p" ]; then
            (cd "$p" && find . -type f ! -name '*.o' ! -name '*.ko' ! -name '.*.cmd' -print0 \
                | LC_ALL=C sort -z | xargs -0 sha256sum)
        elif [ -e "$p" ]; then
            # Content and name only: the key must not depend on where the
            # clone lives, or every fresh clone (CI) would miss the cache.
            printf '%s  %s\n' "$(sha256sum <"$p" | cut -d' ' -f1)" "$(basename "$p")"
        else
            echo "missing:$(basename "$p")"
        fi
    done | sha256sum | cut -c1-16
}

# Run a long command, showing a heartbeat with elapsed time and the last line of
# its log so a multi-minute step never looks hung. Full output goes to $log.
run_with_progress() {
    local what="$1" logfile="$2"; shift 2
    local start=$SECONDS
    log "$what (log: $logfile)"
    "$@" >"$logfile" 2>&1 &
    local pid=$!
    local interactive=0
    [ -t 2 ] && interactive=1
    local last_report=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        sleep 2
        if [ $interactive = 1 ]; then
            printf '\r\033[K  %4ds  %s' $((SECONDS - start)) "$(tail -n1 "$logfile" 2>/dev/null | cut -c1-100)" >&2
        elif [ $((SECONDS - last_report)) -ge 30 ]; then
            last_report=$SECONDS
            printf '  %4ds  %s\n' $((SECONDS - start)) "$(tail -n1 "$logfile" 2>/dev/null | cut -c1-100)" >&2
        fi
    done
    local rc=0
    wait "$pid" || rc=$?
    [ $interactive = 1 ] && printf '\r\033[K' >&2
    if [ $rc -ne 0 ]; then
        tail -n 40 "$logfile" >&2
        die "$what failed (exit $rc); full log: $logfile"
    fi
    log "$what done in $((SECONDS - start))s"
}

# Points IVC_L1_QEMU, the QEMU the nested host's L1 runs under, at QEMU with
# our fix for a lost interrupt request (scripts/build-qemu.sh; docs/testing.md,
# "An L1 that stops taking interrupts"), built or taken from the cache, unless
# IVC_L1_QEMU already names one. Tier 3 keeps the packaged QEMU. The packaged
# QEMU loses the L1's timer interrupt now and then, which hangs tier-4 tests.
use_patched_qemu() {
    if [ -n "${IVC_L1_QEMU:-}" ]; then
        log "the nested host's QEMU from IVC_L1_QEMU: $IVC_L1_QEMU"
        return 0
    fi
    local q
    if q="$("$IVC_ROOT/scripts/build-qemu.sh")"; then
        export IVC_L1_QEMU="$q"
    else
        warn "building the patched QEMU failed (above): the nested host runs under ${IVC_QEMU:-$(command -v qemu-system-x86_64)}, whose L1 can lose its timer interrupt (docs/testing.md)"
    fi
}

# True when Linux guests cannot run in ivc-vmm on this host's own /dev/kvm
# (none, a paravirtual KVM, or a CPU without VMX/SVM), so tier 4 and the
# main job's linux-in-ivc-vmm suite run inside the nested host
# (scripts/build-nested.sh). The harness decides the same way
# (ivc_guest_harness::vmm::hardware_virtualization); IVC_VMM_BACKEND forces it.
nested_kvm_needed() {
    case "${IVC_VMM_BACKEND:-}" in
        nested) return 0 ;;
        direct) return 1 ;;
    esac
    [ -e /dev/kvm ] || return 0
    [ -e /sys/module/kvm_pvm ] && return 0
    grep -qwE 'vmx|svm' /proc/cpuinfo && return 1
    return 0
}

# The main Debian archive URI apt is configured with (not -security, not a
# third party), from apt's own configuration: no host name is written in the
# repository. Empty if there is none.
debian_mirror() {
    apt-cache policy 2>/dev/null | awk '
        /^ *[0-9]+ (http|https|file):/ { uri=$2; next }
        /release .*o=Debian,.*l=Debian,/ { if (uri != "" && !found) { print uri; found=1 } }'
}

# private_apt DIR LINE...: sets the array APT_OPTS for an apt whose sources
# are the given sources.list LINEs and whose package lists, archives and
# preferences live under DIR, so the system's apt state is never touched;
# then updates those lists. Packages installed with it are installed in the
# system as usual (dpkg's database is the system's).
private_apt() {
    local dir="$1"; shift
    mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/etc/preferences.d"
    printf '%s\n' "$@" >"$dir/etc/sources.list"
    APT_OPTS=(
        -o "Dir::Etc::SourceList=$dir/etc/sources.list"
        -o "Dir::Etc::SourceParts=-"
        -o "Dir::Etc::Preferences=$dir/etc/preferences"
        -o "Dir::Etc::PreferencesParts=$dir/etc/preferences.d"
        -o "Dir::State::Lists=$dir/lists"
        -o "Dir::Cache::Archives=$dir/archives"
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
        -o "APT::Get::List-Cleanup=0"
    )
    apt-get "${APT_OPTS[@]}" update -q >"$dir/update.log" 2>&1 \
        || { cat "$dir/update.log" >&2; return 1; }
}
