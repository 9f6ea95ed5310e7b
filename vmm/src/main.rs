//! ivc-vmm: parse the command line, build the machine, run it, and exit
//! with the status the guest chose.

// A silent truncation of a guest- or peer-supplied value is a bug class these lints catch.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::fs::File;
use std::process::ExitCode;

use clap::Parser;
use ivc_vmm::cli::{Cli, Command, RunArgs};
use ivc_vmm::devices::serial::SerialOutput;
use ivc_vmm::machine::{Machine, MachineConfig};

fn run(args: RunArgs) -> Result<i32, String> {
    let serial: SerialOutput = if args.serial.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        let f = File::create(&args.serial)
            .map_err(|e| format!("cannot create {}: {e}", args.serial.display()))?;
        Box::new(f)
    };
    let config = MachineConfig {
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline: args.cmdline,
        mem_size: args.mem,
        cpus: args.cpus,
        serial,
        serial_input: Some(Box::new(std::io::stdin())),
        halt_poll_ns: args.halt_poll_ns,
    };
    let machine = Machine::new(config).map_err(|e| e.to_string())?;
    let mut summaries = Vec::new();
    for spec in &args.ivc {
        summaries.push(
            ivc_vmm::devices::ivc_setup::add_ivc_device(&machine, spec)
                .map_err(|e| e.to_string())?,
        );
    }
    let reason = machine.run().map_err(|e| e.to_string())?;
    for line in summaries.iter().filter_map(|s| s()) {
        log::info!("{line}");
    }
    match reason {
        // A PC resets on a triple fault, and so do we (status 0), but a
        // guest that means to reboot goes through the i8042 or 0xcf9 first:
        // this one crashed too hard to say so. Say it for it.
        ivc_vmm::exit::ExitReason::TripleFault => log::warn!("{reason}"),
        _ => log::info!("{reason}"),
    }
    if let ivc_vmm::exit::ExitReason::Error(e) = &reason {
        eprintln!("ivc-vmm: error: {e}");
    }
    Ok(reason.exit_status())
}

fn main() -> ExitCode {
    ivc_rendezvous::logging::init("ivc-vmm", log::LevelFilter::Warn);
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Run(args) => match run(args) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ivc-vmm: error: {e}");
                ivc_vmm::exit::VMM_ERROR_STATUS
            }
        },
    };
    // The guest chooses the status: saturate what does not fit an exit code.
    let code = u8::try_from(status).unwrap_or(if status < 0 { 0 } else { u8::MAX });
    ExitCode::from(code)
}
