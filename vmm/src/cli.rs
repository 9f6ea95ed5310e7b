//! The command line: `ivc-vmm run --kernel ... [--initrd ...] [--cmdline ...]
//! [--mem ...] [--cpus ...] [--serial FILE]`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ivc_kit::size::{parse_size_in, Unit};

use crate::layout::MAX_VCPUS;

/// Shown under both `--help` and `run --help`.
const EXIT_STATUS_HELP: &str = "Exit status: the value the guest wrote to port 0xf4; 0 when the guest resets \
(i8042 0xfe to port 0x64, or port 0xcf9), powers off or triple-faults; 128+N after signal N (SIGINT/SIGTERM); \
1 when the VMM fails; 2 for bad arguments.\n\
COM1 input comes from stdin. Set IVC_VMM_LOG=debug|info|warn|error for VMM diagnostics on stderr.\n\
SIGUSR1 logs each vCPU's state (run state, IF, local APIC IRR/ISR/PPR and timer, TSC deadline) and the guest goes on.";

#[derive(Debug, Parser)]
#[command(
    name = "ivc-vmm",
    version,
    about = "A small KVM VMM: boots a PVH ELF kernel (Linux vmlinux or a bare-metal test guest) or a Linux bzImage with a serial console and a PCI bus.",
    after_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest and run it until it exits.
    #[command(after_help = EXIT_STATUS_HELP)]
    Run(RunArgs),
    // The rendezvous server that `--ivc ...,socket=PATH` devices connect to
    // is its own program, ivc-rendezvous: one binary, not two.
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kernel: an ELF image with a PVH entry note (vmlinux built with CONFIG_PVH=y, or ivc-test-guest), or a Linux bzImage (boot protocol 2.10 or later); the format is read from the file.
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    pub kernel: PathBuf,

    /// Initramfs loaded at the top of low RAM and passed as PVH module 0 (bzImage: as the ramdisk in the zero page).
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    pub initrd: Option<PathBuf>,

    /// Kernel command line (at most 2047 bytes).
    #[arg(long, value_name = "STRING", default_value = "")]
    pub cmdline: String,

    /// Guest RAM: a bare number is MiB (as QEMU's -m); or a size with a unit
    /// K, M, G (powers of 1024; e.g. 512M, 2G, 0x200M).
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_mem_size)]
    pub mem: u64,

    /// Number of vCPUs (1-32).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=MAX_VCPUS as i64))]
    pub cpus: u8,

    /// Where the guest's serial console (COM1) goes: a file path, or "-" for stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub serial: PathBuf,

    /// An ivc device (repeatable): pio,socket=PATH | shm-poll,socket=PATH |
    /// shm-poll,path=FILE,size=SIZE | shm-irq,socket=PATH; socket kinds take
    /// vectors=N (default 1, must match the server's --vectors).
    #[arg(long = "ivc", value_name = "SPEC", value_parser = crate::ivc_spec::parse_ivc_spec)]
    pub ivc: Vec<crate::ivc_spec::IvcSpec>,

    /// How long KVM polls a halted vCPU for a wake-up before its thread
    /// sleeps, in nanoseconds (KVM_CAP_HALT_POLL; 0 = sleep at once).
    /// Default: the kvm module's halt_poll_ns.
    #[arg(long, value_name = "NS")]
    pub halt_poll_ns: Option<u32>,
}

/// Smallest and largest RAM we accept.
pub const MIN_MEM: u64 = 2 << 20;
pub const MAX_MEM: u64 = 512 << 30;

/// Guest RAM size: `ivc_kit::size`'s grammar with a bare number in MiB, as
/// in QEMU's `-m`; a multiple of 4 KiB between the limits.
pub fn parse_mem_size(s: &str) -> Result<u64, String> {
    let bytes = parse_size_in(s, Unit::MiB).map_err(|e| format!("'{}': {e}", s.trim()))?;
    let s = s.trim();
    if bytes % 4096 != 0 {
        return Err(format!("'{s}' is not a multiple of 4 KiB"));
    }
    if !(MIN_MEM..=MAX_MEM).contains(&bytes) {
        return Err(format!(
            "'{s}' is outside {} MiB..{} GiB",
            MIN_MEM >> 20,
            MAX_MEM >> 30
        ));
    }
    Ok(bytes)
}

fn existing_file(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(p),
        Ok(_) => Err(format!("{s} is not a regular file")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut v = vec!["ivc-vmm", "run"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| match c.command {
            Command::Run(r) => r,
        })
    }

    fn kernel() -> String {
        // Any existing regular file will do for parsing.
        std::env::current_exe()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn defaults() {
        let k = kernel();
        let r = parse(&["--kernel", &k]).unwrap();
        assert_eq!(r.mem, 512 << 20);
        assert_eq!(r.cpus, 1);
        assert_eq!(r.cmdline, "");
        assert_eq!(r.serial, PathBuf::from("-"));
        assert!(r.initrd.is_none());
    }

    #[test]
    fn all_flags() {
        let k = kernel();
        let r = parse(&[
            "--kernel",
            &k,
            "--initrd",
            &k,
            "--cmdline",
            "console=ttyS0 x=1",
            "--mem",
            "2G",
            "--cpus",
            "4",
            "--serial",
            "/tmp/s",
        ])
        .unwrap();
        assert_eq!((r.mem, r.cpus), (2 << 30, 4));
        assert_eq!(r.cmdline, "console=ttyS0 x=1");
        assert_eq!(r.serial, PathBuf::from("/tmp/s"));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let k = kernel();
        assert_eq!(
            parse(&[]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["--kernel", "/nonexistent/vmlinux"])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["--kernel", "/"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["--kernel", &k, "--cpus", "0"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["--kernel", &k, "--cpus", "33"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["--kernel", &k, "--mem", "lots"])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["--kernel", &k, "--bogus"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
        assert!(Cli::try_parse_from(["ivc-vmm"]).is_err());
    }

    #[test]
    fn ivc_devices_repeat_and_bad_specs_are_usage_errors() {
        let k = kernel();
        let r = parse(&[
            "--kernel",
            &k,
            "--ivc",
            "pio,socket=/a",
            "--ivc",
            "shm-irq,socket=/b,vectors=2",
        ])
        .unwrap();
        assert_eq!(r.ivc.len(), 2);
        assert_eq!(r.ivc[1].kind(), "shm-irq");
        let e = parse(&["--kernel", &k, "--ivc", "shm-poll"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("needs socket=PATH or path"), "{e}");
    }

    #[test]
    fn mem_sizes() {
        assert_eq!(parse_mem_size("256"), Ok(256 << 20));
        assert_eq!(parse_mem_size("256M"), Ok(256 << 20));
        assert_eq!(parse_mem_size("4096k"), Ok(4 << 20));
        assert_eq!(parse_mem_size("1g"), Ok(1 << 30));
        assert_eq!(parse_mem_size("0x200M"), Ok(512 << 20));
        assert_eq!(parse_mem_size("0x200"), Ok(512 << 20));
        assert!(parse_mem_size("1M").is_err(), "below the minimum");
        assert!(parse_mem_size("1T").is_err());
        assert!(parse_mem_size("513G").is_err());
        assert!(parse_mem_size("18446744073709551615G").is_err());
        assert!(parse_mem_size("4097K").is_err());
        assert!(parse_mem_size("").is_err());
        assert!(parse_mem_size("-5M").is_err());
    }
}
