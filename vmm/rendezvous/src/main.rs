//! `ivc-rendezvous`: the rendezvous server as a standalone program.

// A silent truncation of a guest- or peer-supplied value is a bug class these lints catch.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::process::ExitCode;

use clap::Parser;
use ivc_rendezvous::{run_server, ServerArgs};
use log::LevelFilter;

/// ivshmem-server compatible rendezvous server.
///
/// Creates the shared memory, gives every client that connects an id, the
/// shared-memory fd and one eventfd per interrupt vector, and tells all
/// clients when peers join and leave. QEMU's ivshmem-doorbell can connect:
///
///   qemu-system-x86_64 ... -chardev socket,path=SOCKET,id=ivs
///   -device ivshmem-doorbell,chardev=ivs,vectors=N
///
/// Joins and leaves are logged to stderr (IVC_VMM_LOG, in env_logger's filter
/// syntax, overrides -v/-q). SIGINT or SIGTERM stops the server and removes
/// the socket.
#[derive(Debug, Parser)]
#[command(name = "ivc-rendezvous", version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Log more (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Log only warnings and errors.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => LevelFilter::Warn,
        (false, 0) => LevelFilter::Info,
        (false, 1) => LevelFilter::Debug,
        (false, _) => LevelFilter::Trace,
    };
    ivc_rendezvous::logging::init("ivc-rendezvous", level);
    match run_server(&cli.server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ivc-rendezvous: {e}");
            ExitCode::FAILURE
        }
    }
}
