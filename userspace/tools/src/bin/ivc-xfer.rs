//! ivc-xfer: moves a deterministic byte stream through a channel device and
//! verifies it, so tests can prove that data arrives intact.
//!
//! ```text
//! ivc-xfer send   /dev/ivc0 --bytes 2M --chunk 4K --seed 1
//! ivc-xfer recv   /dev/ivc0 --bytes 2M --chunk 32 --seed 1
//! ivc-xfer duplex /dev/ivc0 --bytes 2M --chunk 4K --tx-seed 1 --rx-seed 2
//! ```
//!
//! Every run prints one summary line per direction with the byte count, the
//! FNV-1a checksum of the bytes and the rate; a receiver also checks each byte
//! against the stream and exits with status 1 at the first wrong byte.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use ivc_kit::size::parse_size;
use ivc_kit::stream::{fill, verify, Fnv64};

#[derive(Parser)]
#[command(
    version,
    about = "Send, receive and verify a deterministic byte stream over an ivc device"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Write the stream to the device.
    Send(Common),
    /// Read the stream from the device and verify every byte.
    Recv(Common),
    /// Send and receive at the same time (two threads, one open file).
    Duplex {
        #[command(flatten)]
        common: Common,
        /// Seed of the stream this side receives.
        #[arg(long, default_value_t = 2)]
        rx_seed: u64,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Device (or any file/pipe) to use.
    path: String,
    /// Total bytes to move (e.g. 4K, 2M, 64M).
    #[arg(long, value_parser = parse_size)]
    bytes: u64,
    /// Bytes per read()/write() call.
    #[arg(long, value_parser = parse_size, default_value = "4K")]
    chunk: u64,
    /// Seed of the stream (the one this side sends, for duplex).
    #[arg(long, alias = "tx-seed", default_value_t = 1)]
    seed: u64,
    /// After receiving, also require end-of-file (peer closed).
    #[arg(long)]
    expect_eof: bool,
}

struct Summary {
    bytes: u64,
    fnv: u64,
    secs: f64,
}

fn report(dir: &str, s: &Summary) {
    let mib_s = if s.secs > 0.0 {
        s.bytes as f64 / s.secs / (1 << 20) as f64
    } else {
        0.0
    };
    println!(
        "ivc-xfer: {dir} {} bytes fnv64={:016x} in {:.3} s ({:.2} MiB/s)",
        s.bytes, s.fnv, s.secs, mib_s
    );
}

fn chunk_len(c: &Common) -> Result<usize, String> {
    match usize::try_from(c.chunk) {
        Ok(0) | Err(_) => Err(format!("--chunk must be between 1 and {}", usize::MAX)),
        Ok(n) => Ok(n),
    }
}

fn send(mut f: &File, c: &Common) -> Result<Summary, String> {
    let chunk = chunk_len(c)?;
    let mut buf = vec![0u8; chunk];
    let mut fnv = Fnv64::default();
    let start = Instant::now();
    let mut off = 0u64;
    while off < c.bytes {
        let n = chunk.min((c.bytes - off) as usize);
        fill(c.seed, off, &mut buf[..n]);
        let mut done = 0;
        while done < n {
            match f.write(&buf[done..n]) {
                Ok(0) => return Err(format!("write returned 0 at offset {}", off + done as u64)),
                Ok(k) => done += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write at offset {}: {e}", off + done as u64)),
            }
        }
        fnv.update(&buf[..n]);
        off += n as u64;
    }
    Ok(Summary {
        bytes: off,
        fnv: fnv.value(),
        secs: start.elapsed().as_secs_f64(),
    })
}

fn recv(mut f: &File, c: &Common, seed: u64) -> Result<Summary, String> {
    let chunk = chunk_len(c)?;
    let mut buf = vec![0u8; chunk];
    let mut fnv = Fnv64::default();
    let start = Instant::now();
    let mut off = 0u64;
    while off < c.bytes {
        let want = chunk.min((c.bytes - off) as usize);
        match f.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(format!(
                    "unexpected end of file after {off} of {} bytes",
                    c.bytes
                ))
            }
            Ok(n) => {
                if let Some(bad) = verify(seed, off, &buf[..n]) {
                    return Err(format!("data mismatch at stream offset {bad}"));
                }
                fnv.update(&buf[..n]);
                off += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {off} bytes: {e}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if c.expect_eof {
        let mut extra = [0u8; 1];
        loop {
            match f.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(format!(
                        "expected end of file after {off} bytes, got more data"
                    ))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read while expecting end of file: {e}")),
            }
        }
    }
    Ok(Summary {
        bytes: off,
        fnv: fnv.value(),
        secs,
    })
}

fn open(c: &Common) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&c.path)
        .or_else(|_| OpenOptions::new().read(true).open(&c.path))
        .map_err(|e| format!("cannot open {}: {e}", c.path))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.mode {
        Mode::Send(c) => {
            // create(true) so a plain file works too; devices just open.
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&c.path)
                .map_err(|e| format!("cannot open {} for writing: {e}", c.path))?;
            report("sent", &send(&f, &c)?);
        }
        Mode::Recv(c) => {
            let f = open(&c)?;
            report("received", &recv(&f, &c, c.seed)?);
        }
        Mode::Duplex { common, rx_seed } => {
            let f = open(&common)?;
            let (tx, rx) = std::thread::scope(|s| {
                let tx = s.spawn(|| send(&f, &common));
                let rx = recv(&f, &common, rx_seed);
                (
                    tx.join()
                        .unwrap_or_else(|_| Err("sender thread panicked".into())),
                    rx,
                )
            });
            report("sent", &tx?);
            report("received", &rx?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ivc-xfer: error: {e}");
            ExitCode::FAILURE
        }
    }
}
