#!/usr/bin/env bash
# Builds src/chan/ the way the kernel module does (plain rustc, one #[path]
# include, no_std, x86_64-unknown-none, optimised, overflow checks ON as with
# CONFIG_RUST_OVERFLOW_CHECKS=y) and fails if the object references any
# panic machinery. Needs: rustup target add x86_64-unknown-none.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/ivc-abi-kcheck.$$"
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
rustc --edition 2021 --crate-type lib --emit obj -O \
    -C overflow-checks=on -C panic=abort -C debug-assertions=off \
    --target x86_64-unknown-none \
    -D warnings -D unsafe_op_in_unsafe_fn \
    -W missing_docs -W rust_2018_idioms -W unreachable_pub \
    -o "$out/kcheck.o" "$here/root.rs"
# The kernel's CLIPPY=1 lint set (Linux's Makefile), if clippy is installed.
if command -v clippy-driver >/dev/null; then
    clippy-driver --edition 2021 --crate-type lib --emit metadata \
        --target x86_64-unknown-none -o "$out/kcheck.rmeta" \
        -D warnings -D unsafe_op_in_unsafe_fn \
        -W clippy::all -W clippy::ignored_unit_patterns -W clippy::mut_mut \
        -W clippy::needless_bitwise_bool -W clippy::needless_continue \
        -A clippy::needless_lifetimes -W clippy::no_mangle_with_rust_abi \
        -W clippy::undocumented_unsafe_blocks \
        -W clippy::unnecessary_safety_comment -W clippy::unnecessary_safety_doc \
        "$here/root.rs"
    echo "clippy (kernel lint set): clean"
fi
undef="$(nm -u "$out/kcheck.o" | awk '{print $2}')"
echo "undefined symbols in the object:"
printf '%s\n' "${undef:-(none)}" | sed 's/^/  /'
if echo "$undef" | grep -qiE 'panic|unwrap_failed|expect_failed|slice_index|slice_end|slice_start|str_index|len_mismatch|overflow'; then
    echo "FAIL: panic paths are reachable" >&2
    exit 1
fi
echo "OK: no panic paths in the kernel-style build"
