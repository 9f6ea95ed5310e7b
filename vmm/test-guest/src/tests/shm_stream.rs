//! `test=shm-stream`: one-way throughput through the `ivc-abi` ring in
//! ivc-shm's BAR2, polled, at CPL3, with cheap data so that the ring's own
//! cost shows (`chan-duplex` computes a SplitMix64 and an FNV-1a step per
//! byte, which bounds it instead).
//!
//! The data is a fixed pattern with an odd period (256 KiB - 1, as in
//! `ivc-bench`): the sender hands the ring slices of it (no per-byte work),
//! the receiver compares what it reads with the pattern eight bytes at a
//! time. A lost, repeated or reordered power-of-two block cannot line up
//! with an odd period, so it shows as a mismatch.

use ivc_abi::shm::SharedMemory;
use ivc_abi::{AtomicMem, AttachOptions, ChannelError, Endpoint, PeerState};

use super::samples;
use super::shm_dev::{self, ShmDev, Want};
use super::{bad_param, stream, Context, Test, GUESS_TSC_KHZ};
use crate::cmdline::ParamError;
use crate::exit::{exit, status};
use crate::pci;
use crate::{cpl3, println, tsc};

pub const TEST: Test = Test {
    name: "shm-stream",
    params: concat!(
        "role=tx|rx [bytes=64m] [chunk=64k] [check=1] [seed=1] [timeout_ms=20000] [tsc_khz=auto] ",
        "[dev=1af4:1110] ",
        crate::allocator_params!()
    ),
    about: "one-way throughput through the ivc ring in ivc-shm BAR2, cheap checked pattern, CPL3",
    run,
};

/// Pattern period: odd, so power-of-two blocks never line up with it.
const PERIOD: usize = (256 << 10) - 1;
const MAX_CHUNK: u64 = 1 << 20;

struct Params {
    dev: ShmDev,
    tx: bool,
    bytes: u64,
    chunk: usize,
    /// Receiver: compare every byte with the pattern (1, the default) or
    /// only count them (0: the ring and its copies alone, the same work as
    /// the memcpy floor it is compared with).
    check: bool,
    seed: u64,
    khz: Option<u64>,
    timeout: u64,
    /// RAM for the receive buffer (chunk bytes) and the pattern (PERIOD +
    /// chunk).
    ram: u64,
}

fn run(ctx: &Context) -> u8 {
    let c = &ctx.cmdline;
    let parsed = (|| -> Result<_, ParamError> {
        let tx = c.required_choice("role", &[("tx", true), ("rx", false)], "tx or rx")?;
        let khz = super::tsc_khz(ctx)?;
        let want = Want {
            id: c.pci_id_or("dev", pci::IVSHMEM)?,
            via_io: false,
            vector: None,
        };
        Ok((
            want,
            Params {
                dev: ShmDev::UNOPENED,
                tx,
                bytes: c.u64_or("bytes", 64 << 20)?,
                chunk: c.u64_or("chunk", 64 << 10)?.clamp(1, MAX_CHUNK) as usize,
                check: c.choice("check", true, &[("1", true), ("0", false)], "1 or 0")?,
                seed: c.u64_or("seed", 1)?,
                khz,
                timeout: c
                    .u64_or("timeout_ms", 20_000)?
                    .saturating_mul(khz.unwrap_or(GUESS_TSC_KHZ)),
                ram: 0,
            },
        ))
    })();
    let (want, mut p) = match parsed {
        Ok(v) => v,
        Err(e) => return bad_param(e),
    };
    p.dev = match shm_dev::open(ctx, &want) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let ram_bytes = (PERIOD + 2 * p.chunk) as u64;
    let Some(ram) = samples::reserve(ctx.start_info, ram_bytes) else {
        println!("error: no {ram_bytes} bytes of RAM for the pattern");
        return status::FAILURE;
    };
    p.ram = ram;
    println!(
        "stream ivposition={} role={} bytes={} chunk={} check={}",
        p.dev.ivposition,
        if p.tx { "tx" } else { "rx" },
        p.bytes,
        p.chunk,
        u8::from(p.check)
    );
    cpl3::run(user_main, &p)
}

/// Copy costs without a peer, in this VM's RAM (cache-warm), before the
/// transfer: the ring's word-by-word atomic copies in and out (what
/// `Endpoint::write`/`read` do to shared memory) next to a plain slice
/// copy. They bound the stream from above.
fn calibrate(p: &Params, pattern: &mut [u8], rx_buf: &mut [u8]) {
    let chunk = p.chunk;
    // At least 16 MiB per figure.
    let rounds = ((16u64 << 20) / chunk as u64).max(1);
    let bytes = rounds * chunk as u64;
    let (copy_in, copy_out) = {
        // SAFETY: `rx_buf` is RAM of this VM that only this code uses
        // (`samples::reserve`), page-aligned (AtomicMem::new checks), and
        // within this block it is accessed only through `mem`, atomically.
        let mem = unsafe { AtomicMem::new(rx_buf.as_mut_ptr(), chunk) };
        let Some(mem) = mem else {
            println!("stream-calib skipped: buffer not 4-byte aligned");
            return;
        };
        let t0 = tsc::rdtsc();
        for _ in 0..rounds {
            if mem.write_bytes(0, &pattern[..chunk]).is_err() {
                fail("calibration copy", None);
            }
        }
        let t1 = tsc::rdtsc();
        // Reads the same bytes back over the pattern's wrap-around copy of
        // them (pattern[PERIOD..] == pattern[..chunk]), which stays valid.
        for _ in 0..rounds {
            if mem
                .read_bytes(0, &mut pattern[PERIOD..PERIOD + chunk])
                .is_err()
            {
                fail("calibration copy", None);
            }
        }
        (t1.wrapping_sub(t0), tsc::rdtsc().wrapping_sub(t1))
    };
    let t0 = tsc::rdtsc();
    for _ in 0..rounds {
        rx_buf[..chunk].copy_from_slice(&pattern[..chunk]);
        core::hint::black_box(&mut rx_buf[..chunk]);
    }
    let plain = tsc::rdtsc().wrapping_sub(t0);
    let rate = |cycles: u64| match p.khz {
        // bytes / (cycles / (khz * 1000)) / 2^20, in integers.
        Some(khz) if cycles > 0 => {
            ((u128::from(bytes) * u128::from(khz) * 1000 / u128::from(cycles)) >> 20) as u64
        }
        _ => 0,
    };
    println!(
        "stream-calib chunk={chunk} bytes={bytes} ring_copy_in_cycles={copy_in} ring_copy_out_cycles={copy_out} memcpy_cycles={plain} ring_copy_in_mib_s={} ring_copy_out_mib_s={} memcpy_mib_s={}",
        rate(copy_in),
        rate(copy_out),
        rate(plain)
    );
}

fn fail(what: &str, e: Option<ChannelError>) -> ! {
    match e {
        Some(e) => println!("error: {what}: {e}"),
        None => println!("error: {what}"),
    }
    exit(status::FAILURE)
}

/// Whether `a == b`. The guest's `memcmp` goes byte by byte and this
/// target has no vector registers, so eight bytes per load, in 64-byte
/// blocks whose length the compiler knows (no bounds checks in the loop).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (ba, bb) = (a.chunks_exact(64), b.chunks_exact(64));
    let (ra, rb) = (ba.remainder(), bb.remainder());
    let word = |blk: &[u8], i: usize| {
        blk.get(i * 8..i * 8 + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    };
    ba.zip(bb)
        .all(|(x, y)| (0..8).fold(0, |d, i| d | (word(x, i) ^ word(y, i))) == 0)
        && ra == rb
}

/// The endpoint over this test's BAR2.
type Ep = Endpoint<AtomicMem<'static>>;

fn user_main(p: &Params) -> ! {
    let (rx_buf, pattern) = buffers(p);
    calibrate(p, pattern, rx_buf);
    let mut ep = connect(p);
    println!("stream-connected slot={}", ep.slot());
    let tally = transfer(p, &mut ep, pattern, rx_buf);
    let end = tsc::rdtsc();
    ep.close();
    report(p, &tally, end);
    exit(status::SUCCESS)
}

/// The receive buffer and the pattern, in the RAM `run` reserved.
fn buffers(p: &Params) -> (&'static mut [u8], &'static mut [u8]) {
    // SAFETY: `ram..ram + PERIOD + 2 * chunk` is RAM above the image from
    // the memory map (`samples::reserve`), identity-mapped, user-accessible
    // and used by nothing else.
    let ram = unsafe { core::slice::from_raw_parts_mut(p.ram as *mut u8, PERIOD + 2 * p.chunk) };
    // The receive buffer first: page-aligned, as AtomicMem (calibration)
    // needs 4-byte alignment.
    let (rx_buf, pattern) = ram.split_at_mut(p.chunk);
    // The pattern repeats: bytes PERIOD.. equal bytes 0.., so any offset
    // modulo PERIOD has `chunk` contiguous bytes.
    stream::fill(p.seed, 0, &mut pattern[..PERIOD]);
    pattern.copy_within(..p.chunk, PERIOD);
    (rx_buf, pattern)
}

/// Attaches to the channel in BAR2 and waits for the peer, both within
/// `timeout_ms`.
fn connect(p: &Params) -> Ep {
    // SAFETY: BAR2 is mapped (identity, user-accessible, write-back) for
    // the rest of the VM's life and only accessed atomically from here.
    let Some(mem) = (unsafe { AtomicMem::new(p.dev.shm as *mut u8, p.dev.shm_size as usize) })
    else {
        fail("BAR2 is not aligned", None)
    };
    let opts = AttachOptions {
        doorbell_id: u16::try_from(p.dev.ivposition).ok(),
        ..AttachOptions::default()
    };
    let start = tsc::rdtsc();
    let timed_out = || tsc::rdtsc().wrapping_sub(start) > p.timeout;
    let mut ep = loop {
        match Endpoint::attach_any(mem, &opts) {
            Ok(ep) => break ep,
            Err(ChannelError::Busy) if !timed_out() => {}
            Err(e) => fail("attach", Some(e)),
        }
    };
    loop {
        match ep.peer_state() {
            Ok(PeerState::Connected) => return ep,
            Ok(_) if !timed_out() => {}
            Ok(_) => fail("no peer within timeout_ms", None),
            Err(e) => fail("peer state", Some(e)),
        }
    }
}

/// What the transfer loop counted.
struct Tally {
    /// TSC and size of the first bytes moved.
    first: Option<(u64, u64)>,
    /// Reads or writes, including those that moved nothing.
    calls: u64,
    /// Cycles spent checking received bytes against the pattern: the
    /// receiver's own work, not the channel's, reported apart.
    verify: u64,
}

/// Sends (`tx=1`) or receives and checks `bytes` bytes of the pattern.
fn transfer(p: &Params, ep: &mut Ep, pattern: &[u8], rx_buf: &mut [u8]) -> Tally {
    let mut off: u64 = 0;
    let mut last_progress = tsc::rdtsc();
    let mut t = Tally {
        first: None,
        calls: 0,
        verify: 0,
    };
    while off < p.bytes {
        let at = (off % PERIOD as u64) as usize;
        let n = (p.bytes - off).min(p.chunk as u64) as usize;
        let k = if p.tx {
            match ep.write(&pattern[at..at + n]) {
                Ok(k) => k,
                Err(e) => fail("write", Some(e)),
            }
        } else {
            let k = match ep.read(&mut rx_buf[..n]) {
                Ok(k) => k,
                Err(e) => fail("read", Some(e)),
            };
            if p.check {
                let cycles = verify(off, &rx_buf[..k], &pattern[at..at + k]);
                t.verify = t.verify.wrapping_add(cycles);
            }
            k
        };
        t.calls += 1;
        if k == 0 {
            // Polls are cheap; read the clock only now and then.
            if t.calls & 1023 == 0 && tsc::rdtsc().wrapping_sub(last_progress) > p.timeout {
                fail("no progress within timeout_ms", None);
            }
            continue;
        }
        let now = tsc::rdtsc();
        last_progress = now;
        off += k as u64;
        if t.first.is_none() {
            t.first = Some((now, k as u64));
        }
    }
    t
}

/// Checks bytes received at stream offset `off` against the pattern's;
/// the TSC cycles the comparison took. A mismatch ends the test.
fn verify(off: u64, got: &[u8], want: &[u8]) -> u64 {
    let v0 = tsc::rdtsc();
    let ok = same(got, want);
    let cycles = tsc::rdtsc().wrapping_sub(v0);
    if !ok {
        let bad = (0..got.len()).find(|&i| got[i] != want[i]).unwrap_or(0);
        println!(
            "stream-result role=rx outcome=corrupt received={off} mismatch_at={}",
            off + bad as u64
        );
        exit(status::FAILURE);
    }
    cycles
}

/// The `stream-result` line of a complete transfer that ended at TSC `end`.
fn report(p: &Params, t: &Tally, end: u64) {
    // The clock starts when the first bytes arrived (or were accepted), so
    // those bytes are not part of the timed transfer.
    let (t0, first_bytes) = t.first.unwrap_or((end, 0));
    let cycles = end.wrapping_sub(t0);
    let timed = p.bytes - first_bytes;
    println!(
        "stream-result role={} outcome=complete bytes={} timed_bytes={timed} cycles={cycles} calls={} checked={} verify_cycles={}{}",
        if p.tx { "tx" } else { "rx" },
        p.bytes,
        t.calls,
        u8::from(p.check && !p.tx),
        t.verify,
        match p.khz {
            Some(khz) => Ns(samples::ns(cycles, khz)),
            None => Ns(u64::MAX),
        }
    );
}

/// ` ns=N`, or nothing when the TSC rate is unknown.
struct Ns(u64);

impl core::fmt::Display for Ns {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == u64::MAX {
            Ok(())
        } else {
            write!(f, " ns={}", self.0)
        }
    }
}
