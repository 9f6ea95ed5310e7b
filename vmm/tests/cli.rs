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
        "--ivc",
        "--halt-poll-ns",
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
        &["run", "--kernel", vmm(), "--initrd", "/nonexistent/initrd"],
        &["run", "--kernel", vmm(), "--mem", "12Q"],
        &["run", "--kernel", vmm(), "--cpus", "0"],
        &["run", "--kernel", vmm(), "--cpus", "many"],
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
            vmm(),
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

#[test]
fn bad_ivc_specs_exit_2_with_the_reason() {
    for (spec, reason) in [
        ("shm-poll", "needs socket=PATH or path=FILE,size=SIZE"),
        ("virtio,socket=/s", "unknown ivc device kind 'virtio'"),
        ("pio,socket=/s,vectors=99", "vectors=99: expected 1..=64"),
        ("shm-poll,path=/f,size=3000", "must be a power of two"),
        ("shm-irq,socket=/s,colour=blue", "unknown key 'colour'"),
    ] {
        let out = run_vmm(&["run", "--kernel", vmm(), "--ivc", spec], T);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", out.stderr);
        assert!(out.stderr.contains(reason), "{spec}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{spec}: {}", out.stderr);
    }
}
