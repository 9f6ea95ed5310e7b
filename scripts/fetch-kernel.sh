#!/usr/bin/env bash
# Obtains the Linux source tree and prints its path on stdout.
#
# With KERNEL_SRC=/path set, that tree is used as is. Otherwise the Debian
# package linux-source-$KERNEL_VERSION is downloaded from the trixie-backports
# suite of the Debian mirror this machine's apt already uses (found in apt's
# own configuration, so no host name is written here) through a private sources
# list that never touches the system's apt state, and unpacked into the cache.
source "$(dirname "$0")/lib.sh"

if [ -n "${KERNEL_SRC:-}" ]; then
    [ -f "$KERNEL_SRC/Makefile" ] && [ -d "$KERNEL_SRC/rust" ] \
        || die "KERNEL_SRC=$KERNEL_SRC does not look like a Linux tree with Rust support (no Makefile or rust/)"
    echo "$KERNEL_SRC"
    exit 0
fi

dest="$IVC_CACHE/src/linux-source-$KERNEL_VERSION"
if [ -f "$dest/.ivc-unpacked" ]; then
    log "kernel source cached: $dest"
    echo "$dest"
    exit 0
fi

mirror="$(debian_mirror)"
[ -n "$mirror" ] || die "could not find a Debian archive in apt's configuration (apt-cache policy); set KERNEL_SRC=/path/to/linux instead"
log "using Debian archive $mirror (from apt configuration), suite trixie-backports"

keyring=/usr/share/keyrings/debian-archive-trixie-automatic.gpg
[ -f "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg

apt_dir="$IVC_CACHE/apt"
mkdir -p "$IVC_CACHE/src"
log "updating private package list for trixie-backports"
private_apt "$apt_dir" "deb [signed-by=$keyring] $mirror trixie-backports main" \
    || die "apt-get update of trixie-backports failed"
apt_opts=("${APT_OPTS[@]}")

pkg="linux-source-$KERNEL_VERSION"
cd "$apt_dir/archives"
rm -f "$apt_dir"/archives/linux-source-*.deb
log "downloading $pkg"
apt-get "${apt_opts[@]}" download -q "$pkg" >&2 \
    || die "apt-get download $pkg failed (is $pkg in trixie-backports?)"
deb="$(ls "$apt_dir"/archives/"$pkg"_*.deb | head -n1)"
log "unpacking $(basename "$deb")"
tmp="$(mktemp -d "$IVC_CACHE/src/unpack.XXXXXX")"
dpkg-deb -x "$deb" "$tmp"
tarball="$(ls "$tmp"/usr/src/linux-source-"$KERNEL_VERSION".tar.* | head -n1)"
[ -f "$tarball" ] || die "no source tarball inside $deb"
rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
tar -xf "$tarball" -C "$dest.tmp" --strip-components=1
rm -rf "$tmp" "$dest"
mv "$dest.tmp" "$dest"
basename "$deb" >"$dest/.ivc-unpacked"
rm -f "$deb"
log "kernel source ready: $dest"
echo "$dest"
