//! Build script: link with our linker script and refuse a build that would
//! produce a position-independent image (see .cargo/config.toml).

use std::env;

fn main() {
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");

    let target = env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-none" {
        panic!(
            "ivc-test-guest must be built for x86_64-unknown-none (got '{target}'); \
             run scripts/build-test-guest.sh or `cargo build --release` inside vmm/test-guest"
        );
    }
    // CARGO_ENCODED_RUSTFLAGS carries the flags cargo passes to rustc,
    // separated by 0x1f. Without relocation-model=static the link fails with
    // obscure relocation errors, so say what went wrong instead.
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    let static_reloc =
        flags.contains(&"relocation-model=static") || flags.contains(&"-Crelocation-model=static");
    if !static_reloc {
        panic!(
            "ivc-test-guest needs `-C relocation-model=static` from vmm/test-guest/.cargo/config.toml; \
             cargo only reads that file when run from inside vmm/test-guest \
             (use scripts/build-test-guest.sh), and RUSTFLAGS in the environment override it"
        );
    }
}
