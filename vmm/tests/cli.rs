//! The command line as a user meets it: help, and errors for bad input.
//! No KVM needed.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn help_lists_flags_and_exit_statuses() {
    let out = run_vmm(&["run", "--help"], T);
    assert_eq!(out.status.code(), Some(0));
    for flag in [
        "--kernel",
        "--initrd",
        "--cmdline",
        "--mem",
        "--cpus",
        "--serial",
    ] {
        assert!(
            out.stdout.contains(flag),
            "{flag} missing in:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("Exit status"), "{}", out.stdout);
    let top = run_vmm(&["--help"], T);
    assert_eq!(top.status.code(), Some(0));
    assert!(top.stdout.contains("Exit status"), "{}", top.stdout);
}

#[test]
fn missing_files_and_bad_values_exit_2_without_panic() {
    let cases: &[&[&str]] = &[
        &["run"],
        &["run", "--kernel", "/nonexistent/vmlinux"],
        &["run", "--kernel", VMM, "--initrd", "/nonexistent/initrd"],
        &["run", "--kernel", VMM, "--mem", "12Q"],
        &["run", "--kernel", VMM, "--cpus", "0"],
        &["run", "--kernel", VMM, "--cpus", "many"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = run_vmm(args, T);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("error"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
    }
    let out = run_vmm(&["run", "--kernel", "/nonexistent/vmlinux"], T);
    assert!(
        out.stderr.contains("/nonexistent/vmlinux"),
        "{}",
        out.stderr
    );
}

#[test]
fn unwritable_serial_file_is_an_error() {
    let out = run_vmm(
        &[
            "run",
            "--kernel",
            VMM,
            "--serial",
            "/nonexistent/dir/serial.txt",
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .contains("cannot create /nonexistent/dir/serial.txt"),
        "{}",
        out.stderr
    );
}
