//! The command line of the `ivc-rendezvous` program, the one rendezvous
//! server binary; [`ServerArgs`] flattens into any clap parser:
//!
//! ```
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     server: ivc_rendezvous::ServerArgs,
//! }
//!
//! let cli = Cli::parse_from(["ivc-rendezvous", "--socket", "/tmp/s", "--shm-size", "4M", "--vectors", "2"]);
//! assert_eq!((cli.server.shm_size, cli.server.vectors), (4 << 20, 2));
//! // ivc_rendezvous::run_server(&cli.server)?;  // runs until SIGINT/SIGTERM
//! ```

use std::path::PathBuf;

use ivc_kit::size::parse_size;

use crate::peer_ids::IdPolicy;
use crate::protocol::MAX_VECTORS;
use crate::server::{Server, ServerConfig, ServerError};
use crate::shm::{check_size, ShmBacking};
use crate::signals::TerminationSignals;

/// Options of the rendezvous server.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServerArgs {
    /// UNIX socket to listen on (QEMU: -chardev socket,path=PATH,id=ID
    /// -device ivshmem-doorbell,chardev=ID,vectors=N). A stale socket file is
    /// replaced; a live one is an error.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,

    /// Shared memory size: bytes, or with a unit K, M, G or T (powers of
    /// 1024; also KiB, MB, ...; 0x hex is accepted). Must be a power of two of at least 4K: it becomes a PCI BAR.
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_shm_size)]
    pub shm_size: u64,

    /// Interrupt vectors per peer (1-64). Every client must use the same
    /// number (QEMU: ivshmem-doorbell's vectors=).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VECTORS)))]
    pub vectors: u32,

    /// Back the shared memory by this file (created if missing, kept
    /// afterwards) or, if it is a directory, by an unlinked file in it (e.g.
    /// a hugetlbfs mount). Default: an anonymous, sealed memfd.
    #[arg(long, value_name = "PATH")]
    pub shm_path: Option<PathBuf>,

    /// How peer ids are handed out: next-free continues after the last id
    /// given (what QEMU's ivshmem-server does), lowest-free reuses ids.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = IdPolicy::NextFree)]
    pub id_policy: IdPolicy,
}

impl ServerArgs {
    /// The server configuration these options describe.
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            socket_path: self.socket.clone(),
            shm_size: self.shm_size,
            vectors: self.vectors,
            shm_backing: self
                .shm_path
                .as_deref()
                .map(ShmBacking::from_path)
                .unwrap_or_default(),
            id_policy: self.id_policy,
        }
    }
}

/// Runs the server in the calling thread until SIGINT or SIGTERM, then
/// closes every connection and removes the socket. Joins and leaves are
/// logged through the `log` crate.
pub fn run_server(args: &ServerArgs) -> Result<(), ServerError> {
    let server = Server::bind(args.config())?;
    // Lives until run() returns: the server's epoll watches it.
    let signals = TerminationSignals::new().map_err(|source| ServerError::Io {
        context: "blocking SIGINT/SIGTERM into a signalfd",
        source,
    })?;
    server.stop_when_readable(&signals)?;
    server.run()
}

/// A size (`ivc_kit::size`: a bare number is bytes) that is usable as a BAR.
pub fn parse_shm_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text).map_err(|e| e.to_string())?;
    check_size(size).map_err(|e| e.to_string())?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2 MB"), Ok(2 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("-4M").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("17179869184G").is_err());
    }

    #[test]
    fn shm_sizes_must_fit_a_bar() {
        assert_eq!(parse_shm_size("4K"), Ok(4096));
        assert!(parse_shm_size("3M").unwrap_err().contains("power of two"));
        assert!(parse_shm_size("1K").is_err());
    }

    #[test]
    fn defaults_and_full_command_line() {
        let cli = Cli::try_parse_from(["x", "--socket", "/tmp/s"]).unwrap();
        assert_eq!(cli.server.shm_size, 4 << 20);
        assert_eq!(cli.server.vectors, 1);
        assert_eq!(cli.server.id_policy, IdPolicy::NextFree);
        assert_eq!(cli.server.config().shm_backing, ShmBacking::Memfd);

        let cli = Cli::try_parse_from([
            "x",
            "--socket",
            "/tmp/s",
            "--shm-size",
            "1G",
            "--vectors",
            "4",
            "--shm-path",
            "/nonexistent/file",
            "--id-policy",
            "lowest-free",
        ])
        .unwrap();
        let config = cli.server.config();
        assert_eq!(config.shm_size, 1 << 30);
        assert_eq!(config.vectors, 4);
        assert_eq!(config.id_policy, IdPolicy::LowestFree);
        assert_eq!(
            config.shm_backing,
            ShmBacking::File("/nonexistent/file".into())
        );
    }

    #[test]
    fn bad_command_lines_are_rejected() {
        assert!(Cli::try_parse_from(["x"]).is_err(), "socket is required");
        for bad in [
            &["--vectors", "0"][..],
            &["--vectors", "65"],
            &["--shm-size", "3M"],
            &["--shm-size", "lots"],
            &["--id-policy", "random"],
        ] {
            let mut argv = vec!["x", "--socket", "/tmp/s"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(&argv).is_err(), "{bad:?}");
        }
    }
}
