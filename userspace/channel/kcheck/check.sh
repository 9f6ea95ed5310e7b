#!/usr/bin/env bash
# Builds src/chan/ the way the kernel module does (plain rustc, one #[path]
# include, no_std, x86_64-unknown-none, optimised, overflow checks ON as with
# CONFIG_RUST_OVERFLOW_CHECKS=y) and fails if the object references any
# panic machinery. Needs: rustup target add x86_64-unknown-none.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/ivc-channel-kcheck.$$"
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
rustc --edition 2021 --crate-type lib --emit obj -O \
    -C overflow-checks=on -C panic=abort -C debug-assertions=off \
    --target x86_64-unknown-none \
    -D warnings -D unsafe_op_in_unsafe_fn \
    -o "$out/kcheck.o" "$here/root.rs"
undef="$(nm -u "$out/kcheck.o" | awk '{print $2}')"
echo "undefined symbols in the object:"
printf '%s\n' "${undef:-(none)}" | sed 's/^/  /'
if echo "$undef" | grep -qiE 'panic|unwrap_failed|expect_failed|slice_index|slice_end|slice_start|str_index|len_mismatch|overflow'; then
    echo "FAIL: panic paths are reachable" >&2
    exit 1
fi
echo "OK: no panic paths in the kernel-style build"
