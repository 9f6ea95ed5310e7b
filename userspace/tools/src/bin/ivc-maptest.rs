//! ivc-maptest: checks the rules of the mapped path of an ivc device
//! (docs/driver.md, "Mapping the ring") from inside a guest.
//!
//! ```text
//! ivc-maptest rules    /dev/ivc0   # exclusive open, EBUSY, mmap checks, poll
//! ivc-maptest scribble /dev/ivc0   # break our own mapped ring: EIO, then reopen
//! ivc-maptest pio      /dev/ivc0   # an ivc-pio device refuses the mapped path
//! ```
//!
//! Every check prints `IVC_MAPCHECK <name>=ok` or `IVC_MAPCHECK
//! <name>=FAIL <why>`; the exit status is 1 if any failed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ivc_abi::layout::{ring_ctrl, HDR_RING0_OFFSET, HDR_RING0_SIZE, RING_CONS};
use ivc_abi::SharedMemory;
use ivc_mapped::{Device, PeerState, Wait, IVC_IOC_DOORBELL};

#[derive(Parser)]
#[command(version, about = "Check the mapped (mmap) path of an ivc device")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Exclusive open, EBUSY for the others, the mmap checks, poll; needs
    /// no peer.
    Rules { dev: String },
    /// Connect through the mapping (the other guest reads with
    /// `ivc-xfer recv`), scribble over the ring, expect EIO, then check the
    /// device opens again both ways.
    Scribble { dev: String },
    /// The device has no shared memory (ivc-pio): the mapped path is
    /// refused with ENODEV.
    Pio { dev: String },
}

struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => println!("IVC_MAPCHECK {name}=ok"),
            Err(e) => {
                self.failed += 1;
                println!("IVC_MAPCHECK {name}=FAIL {e}");
            }
        }
    }
}

fn errno_of<T>(r: io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn expect_errno<T>(r: io::Result<T>, want: i32, what: &str) -> Result<(), String> {
    match errno_of(r) {
        Some(e) if e == want => Ok(()),
        Some(e) => Err(format!("{what}: errno {e}, expected {want}")),
        None => Err(format!("{what}: succeeded, expected errno {want}")),
    }
}

fn open_plain(dev: &str) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(dev)
}

fn open_excl(dev: &str) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
}

/// `mmap` of `f` with the given protection, flags, length and offset;
/// unmaps at once on success.
fn try_map(f: &File, prot: i32, flags: i32, len: usize, off: i64) -> io::Result<()> {
    // SAFETY: a fresh mapping at an address the kernel picks; unmapped
    // below and never accessed.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, f.as_raw_fd(), off) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping made just above.
    unsafe { libc::munmap(p, len) };
    Ok(())
}

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

/// `poll(2)` for POLLIN on `f`; the revents.
fn poll_once(f: &File, ms: i32) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(p.revents)
}

fn rules(dev: &str, c: &mut Checks) {
    let info = match open_plain(dev).and_then(|f| ivc_mapped::info(&f)) {
        Ok(i) => i,
        Err(e) => return c.check("info", Err(format!("IVC_IOC_INFO: {e}"))),
    };
    c.check(
        "info",
        if info.mem_len >= 4096 {
            Ok(())
        } else {
            Err(format!("mem_len {}", info.mem_len))
        },
    );
    // A plain file cannot map, and an exclusive open fails while it is open.
    match open_plain(dev) {
        Ok(f) => {
            c.check(
                "mmap_needs_exclusive_open",
                expect_errno(
                    try_map(&f, RW, libc::MAP_SHARED, 4096, 0),
                    libc::EINVAL,
                    "mmap",
                ),
            );
            c.check(
                "exclusive_open_while_open_is_ebusy",
                expect_errno(open_excl(dev), libc::EBUSY, "O_EXCL open"),
            );
            // SAFETY: an integer ioctl argument.
            let r =
                unsafe { libc::ioctl(f.as_raw_fd(), IVC_IOC_DOORBELL as _, 0 as libc::c_ulong) };
            let r = if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            };
            c.check(
                "doorbell_needs_exclusive_open",
                expect_errno(r, libc::EINVAL, "IVC_IOC_DOORBELL"),
            );
        }
        Err(e) => c.check("plain_open", Err(e.to_string())),
    }
    let ex = match open_excl(dev) {
        Ok(f) => f,
        Err(e) => return c.check("exclusive_open", Err(e.to_string())),
    };
    c.check("exclusive_open", Ok(()));
    c.check(
        "plain_open_while_exclusive_is_ebusy",
        expect_errno(open_plain(dev), libc::EBUSY, "open"),
    );
    c.check(
        "second_exclusive_open_is_ebusy",
        expect_errno(open_excl(dev), libc::EBUSY, "O_EXCL open"),
    );
    let mut rw: &File = &ex;
    c.check(
        "read_on_exclusive_file_is_ebusy",
        expect_errno(rw.read(&mut [0u8; 8]), libc::EBUSY, "read"),
    );
    c.check(
        "write_on_exclusive_file_is_ebusy",
        expect_errno(rw.write(&[0u8; 8]), libc::EBUSY, "write"),
    );
    c.check(
        "map_private_is_einval",
        expect_errno(
            try_map(&ex, RW, libc::MAP_PRIVATE, 4096, 0),
            libc::EINVAL,
            "MAP_PRIVATE",
        ),
    );
    c.check(
        "map_exec_is_eperm",
        expect_errno(
            try_map(&ex, RW | libc::PROT_EXEC, libc::MAP_SHARED, 4096, 0),
            libc::EPERM,
            "PROT_EXEC",
        ),
    );
    c.check(
        "map_past_the_end_is_einval",
        expect_errno(
            try_map(&ex, RW, libc::MAP_SHARED, info.mem_len + 4096, 0),
            libc::EINVAL,
            "mmap of mem_len + 4096",
        ),
    );
    c.check(
        "map_at_an_offset_is_einval",
        expect_errno(
            try_map(&ex, RW, libc::MAP_SHARED, 4096, 4096),
            libc::EINVAL,
            "offset 4096",
        ),
    );
    c.check(
        "map_whole_region",
        try_map(&ex, RW, libc::MAP_SHARED, info.mem_len, 0).map_err(|e| e.to_string()),
    );
    if !info.doorbell {
        // SAFETY: an integer ioctl argument.
        let r = unsafe { libc::ioctl(ex.as_raw_fd(), IVC_IOC_DOORBELL as _, 0 as libc::c_ulong) };
        let r = if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        c.check(
            "doorbell_when_polled_is_eopnotsupp",
            expect_errno(r, libc::EOPNOTSUPP, "IVC_IOC_DOORBELL"),
        );
    }
    // poll reports wake-ups as edges: after the pending one (if any) is
    // consumed, a poll without doorbells sleeps until its timeout (with
    // doorbells; polled, the driver's tick ends it within poll_max_ms).
    let _ = poll_once(&ex, 0);
    let t0 = Instant::now();
    let r = poll_once(&ex, 300);
    let slept = t0.elapsed();
    c.check(
        "poll_on_exclusive_file",
        match r {
            Ok(rev) if rev & libc::POLLERR != 0 => Err(format!("POLLERR ({rev:#x})")),
            Ok(rev) if info.doorbell && rev != 0 => {
                Err(format!("woke without a doorbell ({rev:#x})"))
            }
            Ok(rev) if !info.doorbell && rev & libc::POLLIN == 0 => {
                Err(format!("no tick within 300 ms ({rev:#x}, {slept:?})"))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    );
    drop(ex);
    c.check(
        "plain_open_after_exclusive_close",
        open_plain(dev).map(drop).map_err(|e| e.to_string()),
    );
}

fn scribble(dev: &str, c: &mut Checks) {
    let mut ep = match ivc_mapped::open(dev) {
        Ok(ep) => ep,
        Err(e) => return c.check("map", Err(e.to_string())),
    };
    // Connect: the peer guest opens for reading.
    let t0 = Instant::now();
    loop {
        match ep.peer_state() {
            Ok(PeerState::Connected) => break,
            Ok(_) if t0.elapsed() < Duration::from_secs(60) => {
                let _ = ep.wait(ivc_mapped::Direction::Write, Wait::Sleep(Duration::ZERO));
            }
            Ok(s) => return c.check("connect", Err(format!("still {s:?} after 60 s"))),
            Err(e) => return c.check("connect", Err(e.to_string())),
        }
    }
    c.check(
        "send_before_scribbling",
        ep.write_all(&[0x5a; 4096], Wait::Sleep(Duration::ZERO))
            .map_err(|e| e.to_string()),
    );
    // The length word where we read next in our receive ring (the peer's
    // to write; layout version 2 polls it) says more than the ring holds:
    // a broken protocol.
    let rx = (ep.endpoint().slot() ^ 1) as usize;
    let m = ep.memory();
    let r = (|| {
        let ring = m.load_u32_relaxed(HDR_RING0_OFFSET + 8 * rx)? as usize;
        let size = m.load_u32_relaxed(HDR_RING0_SIZE + 8 * rx)?;
        let cons = m.load_u32_relaxed(ring_ctrl(rx as u32) + RING_CONS)?;
        let at = ring.wrapping_add((cons & size.wrapping_sub(1)) as usize);
        m.store_u32_relaxed(at, 0x7fff_fff0)
    })();
    c.check("scribble", r.map_err(|_| "out of bounds".to_string()));
    let mut buf = [0u8; 64];
    c.check(
        "read_after_scribble_is_eio",
        expect_errno(ep.read(&mut buf, Wait::Spin), libc::EIO, "read"),
    );
    c.check(
        "eio_stays",
        expect_errno(ep.try_write(&[1]), libc::EIO, "write"),
    );
    drop(ep);
    // The kernel is untouched: both kinds of open work again.
    c.check(
        "plain_open_after_breakage",
        open_plain(dev).map(drop).map_err(|e| e.to_string()),
    );
    c.check(
        "exclusive_open_after_breakage",
        Device::open(dev).map(drop).map_err(|e| e.to_string()),
    );
}

fn pio(dev: &str, c: &mut Checks) {
    c.check(
        "pio_exclusive_open_is_enodev",
        expect_errno(open_excl(dev), libc::ENODEV, "O_EXCL open"),
    );
    match open_plain(dev) {
        Ok(f) => {
            c.check(
                "pio_mmap_is_enodev",
                expect_errno(
                    try_map(&f, RW, libc::MAP_SHARED, 4096, 0),
                    libc::ENODEV,
                    "mmap",
                ),
            );
            c.check(
                "pio_info_is_enodev",
                expect_errno(ivc_mapped::info(&f), libc::ENODEV, "IVC_IOC_INFO"),
            );
        }
        Err(e) => c.check("pio_plain_open", Err(e.to_string())),
    }
}

fn main() -> ExitCode {
    let mut c = Checks { failed: 0 };
    match Cli::parse().mode {
        Mode::Rules { dev } => rules(&dev, &mut c),
        Mode::Scribble { dev } => scribble(&dev, &mut c),
        Mode::Pio { dev } => pio(&dev, &mut c),
    }
    if c.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
