//! Declares the `loom` cfg used by tests/loom.rs
//! (`RUSTFLAGS="--cfg loom" cargo test -p ivc-abi --release --test loom`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
