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
//!
//! `--mmap` moves the stream through the mapped ring instead of
//! `read`/`write` (the `ivc-mapped` crate: exclusive open, the process runs
//! the endpoint); the other side may use either.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use ivc_kit::size::parse_size;
use ivc_kit::stream::{fill, verify, Fnv64};
use ivc_mapped::{DeviceEndpoint, Wait};

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
    /// Use the mapped ring (exclusive open + mmap) instead of read/write.
    #[arg(long)]
    mmap: bool,
    /// With `--mmap`: microseconds to spin before sleeping in poll(2).
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
}

/// Where the bytes go: the device file, or the mapped ring.
trait Chan {
    /// As `read(2)`: at least one byte, 0 at end of file.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// As `write(2)`: how many bytes were taken.
    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize>;
}

impl Chan for &File {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }
    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

/// The mapped ring, blocking as the device file would.
struct Mapped {
    ep: DeviceEndpoint,
    wait: Wait,
}

impl Mapped {
    fn open(c: &Common) -> Result<Self, String> {
        let ep = ivc_mapped::open(&c.path).map_err(|e| format!("cannot map {}: {e}", c.path))?;
        Ok(Self {
            ep,
            wait: Wait::Sleep(std::time::Duration::from_micros(c.spin_us)),
        })
    }
}

impl Chan for Mapped {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ep.read(buf, self.wait)
    }
    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ep.write_all(buf, self.wait).map(|()| buf.len())
    }
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

fn send(f: &mut impl Chan, c: &Common) -> Result<Summary, String> {
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
            match f.write_some(&buf[done..n]) {
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

fn recv(f: &mut impl Chan, c: &Common, seed: u64) -> Result<Summary, String> {
    let chunk = chunk_len(c)?;
    let mut buf = vec![0u8; chunk];
    let mut fnv = Fnv64::default();
    let start = Instant::now();
    let mut off = 0u64;
    while off < c.bytes {
        let want = chunk.min((c.bytes - off) as usize);
        match f.read_some(&mut buf[..want]) {
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
            match f.read_some(&mut extra) {
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

/// Both directions at once over one mapped endpoint (which one thread
/// owns): non-blocking steps each way, spinning while neither moves.
fn duplex_mapped(m: &mut Mapped, c: &Common, rx_seed: u64) -> Result<(Summary, Summary), String> {
    let chunk = chunk_len(c)?;
    let (mut tx_buf, mut rx_buf) = (vec![0u8; chunk], vec![0u8; chunk]);
    let (mut tx_fnv, mut rx_fnv) = (Fnv64::default(), Fnv64::default());
    let start = Instant::now();
    let (mut sent, mut got) = (0u64, 0u64);
    let (mut tx_secs, mut rx_secs) = (None, None);
    // Bytes of the current chunk already written.
    let mut staged = 0usize;
    let mut tx_len = 0usize;
    while sent < c.bytes || got < c.bytes {
        let mut moved = false;
        if sent < c.bytes {
            if staged == tx_len {
                tx_len = chunk.min((c.bytes - sent) as usize);
                fill(c.seed, sent, &mut tx_buf[..tx_len]);
                staged = 0;
            }
            match m.ep.try_write(&tx_buf[staged..tx_len]) {
                Ok(k) => {
                    tx_fnv.update(&tx_buf[staged..staged + k]);
                    staged += k;
                    sent += k as u64;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("write at offset {sent}: {e}")),
            }
            if sent == c.bytes {
                tx_secs = Some(start.elapsed().as_secs_f64());
            }
        }
        if got < c.bytes {
            let want = chunk.min((c.bytes - got) as usize);
            match m.ep.try_read(&mut rx_buf[..want]) {
                Ok(0) => {
                    return Err(format!(
                        "unexpected end of file after {got} of {} bytes",
                        c.bytes
                    ))
                }
                Ok(n) => {
                    if let Some(bad) = verify(rx_seed, got, &rx_buf[..n]) {
                        return Err(format!("data mismatch at stream offset {bad}"));
                    }
                    rx_fnv.update(&rx_buf[..n]);
                    got += n as u64;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read after {got} bytes: {e}")),
            }
            if got == c.bytes {
                rx_secs = Some(start.elapsed().as_secs_f64());
            }
        }
        if !moved {
            std::thread::yield_now();
        }
    }
    let end = start.elapsed().as_secs_f64();
    Ok((
        Summary {
            bytes: sent,
            fnv: tx_fnv.value(),
            secs: tx_secs.unwrap_or(end),
        },
        Summary {
            bytes: got,
            fnv: rx_fnv.value(),
            secs: rx_secs.unwrap_or(end),
        },
    ))
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
        Mode::Send(c) if c.mmap => report("sent", &send(&mut Mapped::open(&c)?, &c)?),
        Mode::Recv(c) if c.mmap => report("received", &recv(&mut Mapped::open(&c)?, &c, c.seed)?),
        Mode::Duplex { common, rx_seed } if common.mmap => {
            let (tx, rx) = duplex_mapped(&mut Mapped::open(&common)?, &common, rx_seed)?;
            report("sent", &tx);
            report("received", &rx);
        }
        Mode::Send(c) => {
            // create(true) so a plain file works too; devices just open.
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&c.path)
                .map_err(|e| format!("cannot open {} for writing: {e}", c.path))?;
            report("sent", &send(&mut &f, &c)?);
        }
        Mode::Recv(c) => {
            let f = open(&c)?;
            report("received", &recv(&mut &f, &c, c.seed)?);
        }
        Mode::Duplex { common, rx_seed } => {
            let f = open(&common)?;
            let (tx, rx) = std::thread::scope(|s| {
                let tx = s.spawn(|| send(&mut &f, &common));
                let rx = recv(&mut &f, &common, rx_seed);
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
