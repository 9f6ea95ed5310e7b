//! The ivc ring's own round trip, on the host: the `shm-poll` protocol
//! without the VMs.
//!
//! Two processes on two cores attach [`ivc_abi::Endpoint`]s to one
//! anonymous shared mapping, formatted as ivc-vmm's shared memory is (1 MiB),
//! and ping-pong `size`-byte messages through it: the parent writes one, the
//! child reads it and writes it back, the parent reads the echo and checks
//! it. The code is the code the guests run (ivc.ko and the bare-metal test
//! guest link the same `ivc-abi` source); only the VM is missing.
//!
//! Set beside the cache-line floor, this shows what the protocol itself
//! costs: a message needs its data line and the producer index line to move
//! (two dependent transfers each way, where the floor moves one line), plus
//! the endpoint's bookkeeping. Set beside the ring between two VMs, it shows
//! what the VMs add.

use std::io;
use std::time::{Duration, Instant};

use ivc_abi::{format, AtomicMem, ChannelError, Endpoint, FormatOptions};
use ivc_tools::clock::Clock;

use crate::fork::{spawn_pinned, CpuPair, Pinned};
use crate::model::Latency;
use crate::shared::SharedMap;

/// Shared memory per measurement: what ivc-vmm's device benchmarks use.
const SHM_BYTES: usize = 1 << 20;
/// Largest message measured.
pub const MAX_SIZE: usize = 4096;
/// Round trips before the timed ones.
const WARMUP: u64 = 1000;
/// How long either side waits for the other before giving up.
const PATIENCE: Duration = Duration::from_secs(10);

/// Exit codes of the echoing child.
const CHILD_ATTACH_FAILED: i32 = 3;
const CHILD_CHANNEL_FAILED: i32 = 4;

/// Measures `size`-byte round trips for about `budget` (at least
/// `min_samples` of them, after [`WARMUP`] untimed ones).
pub fn measure(
    cpus: CpuPair,
    size: usize,
    budget: Duration,
    min_samples: usize,
) -> io::Result<Latency> {
    if size == 0 || size > MAX_SIZE {
        return Err(io::Error::other(format!(
            "message size {size} is not in 1..={MAX_SIZE}"
        )));
    }
    let map = SharedMap::new(SHM_BYTES)?;
    // SAFETY: the mapping is page-aligned, `len` bytes long and outlives
    // `mem` (both live until the end of this function); this process and
    // the child touch it only through `mem`, atomically.
    let mem = unsafe { AtomicMem::new(map.ptr(), map.len()) }
        .ok_or_else(|| io::Error::other("shared mapping is not aligned"))?;
    format(&mem, &FormatOptions::default()).map_err(channel_error)?;
    // SAFETY: the child only runs the channel on the shared mapping (atomics
    // and copies into a stack buffer): no allocation, locks, I/O or panics.
    let child = unsafe {
        spawn_pinned(cpus.b, move || {
            let Ok(mut ep) = Endpoint::attach(mem, 1) else {
                return CHILD_ATTACH_FAILED;
            };
            let mut buf = [0u8; MAX_SIZE];
            loop {
                // Read one message, then echo it; the parent closing its
                // end (PeerGone) is the signal to stop.
                let mut got = 0;
                while got < size {
                    match ep.read(&mut buf[got..size]) {
                        Ok(k) => got += k,
                        Err(ChannelError::PeerGone) => return 0,
                        Err(_) => return CHILD_CHANNEL_FAILED,
                    }
                }
                let mut sent = 0;
                while sent < size {
                    match ep.write(&buf[sent..size]) {
                        Ok(k) => sent += k,
                        Err(ChannelError::PeerGone) => return 0,
                        Err(_) => return CHILD_CHANNEL_FAILED,
                    }
                }
            }
        })
    }?;
    let _pinned = Pinned::to(cpus.a)?;
    let mut ep = Endpoint::attach(mem, 0).map_err(channel_error)?;
    let mut msg = vec![0u8; size];
    let mut echo = vec![0u8; size];
    // Every round trip timed on its own with the TSC, as the guests time
    // theirs, so the medians compare like with like (a batch average would
    // fold the rare slow round trips into every sample).
    let clock = Clock::calibrate(Duration::from_millis(20));
    let mut samples = Vec::new();
    let start = Instant::now();
    // Untimed round trips first: the connection handshake, caches, TLB.
    for i in 0u64.. {
        if i >= WARMUP + min_samples as u64 && start.elapsed() >= budget {
            break;
        }
        // Stamped with the round-trip number (as the guests do), so an echo
        // of a stale message fails the check.
        for (d, s) in msg.iter_mut().zip(i.to_le_bytes()) {
            *d = s;
        }
        let t0 = clock.now();
        round_trip(&mut ep, &msg, &mut echo)?;
        let t1 = clock.now();
        if echo != msg {
            return Err(io::Error::other("the echoed message differs"));
        }
        if i >= WARMUP {
            samples.push(clock.ns_between(t0, t1));
        }
    }
    ep.close();
    match child.wait(Duration::from_secs(5))? {
        0 => {}
        code => return Err(io::Error::other(format!("echo process failed ({code})"))),
    }
    Latency::from_samples(size as u64, 1, &mut samples)
        .ok_or_else(|| io::Error::other("no samples"))
}

/// Writes `msg`, then reads `echo.len()` bytes, spinning on the ring; an
/// error after [`PATIENCE`] without progress.
fn round_trip(ep: &mut Endpoint<AtomicMem<'_>>, msg: &[u8], echo: &mut [u8]) -> io::Result<()> {
    let mut idle = Idle::new();
    let mut sent = 0;
    while sent < msg.len() {
        let k = ep.write(&msg[sent..]).map_err(channel_error)?;
        sent += k;
        idle.step(k)?;
    }
    let mut got = 0;
    while got < echo.len() {
        let k = ep.read(&mut echo[got..]).map_err(channel_error)?;
        got += k;
        idle.step(k)?;
    }
    Ok(())
}

/// Counts calls without progress; reads the clock only every 64 Ki of them.
struct Idle {
    spins: u32,
    since: Option<Instant>,
}

impl Idle {
    fn new() -> Self {
        Idle {
            spins: 0,
            since: None,
        }
    }

    fn step(&mut self, progress: usize) -> io::Result<()> {
        if progress > 0 {
            self.spins = 0;
            self.since = None;
            return Ok(());
        }
        self.spins = self.spins.wrapping_add(1);
        if self.spins & 0xffff != 0 {
            return Ok(());
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > PATIENCE {
            return Err(io::Error::other("the echo process stopped answering"));
        }
        Ok(())
    }
}

fn channel_error(e: ChannelError) -> io::Error {
    io::Error::other(format!("ivc channel: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_pair;

    #[test]
    fn ring_round_trips_are_checked_and_counted() {
        let l = measure(cpu_pair(), 64, Duration::from_millis(20), 3).expect("ring ping-pong");
        assert_eq!(l.size, 64);
        assert!(l.iters >= 3 && l.batch == 1, "{l:?}");
        assert!(l.min_ns > 0.0 && l.min_ns <= l.median_ns, "{l:?}");
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(measure(cpu_pair(), 0, Duration::from_millis(1), 1).is_err());
        assert!(measure(cpu_pair(), MAX_SIZE + 1, Duration::from_millis(1), 1).is_err());
    }
}
