//! `test=shm-pingpong`: round-trip latency between two VMs over ivc-shm's
//! shared memory, timed with RDTSC at CPL3 (native under PVM).
//!
//! `proto=ring` (the product): guest A writes `size` bytes into the
//! `ivc-abi` ring, B reads them and writes them back, A reads them; one
//! round trip, the same `Endpoint` code the kernel module compiles. With
//! `irq=1` a side that finds nothing to read arms its wake-up and waits for
//! the peer's doorbell (an MSI-X interrupt counted by `irq`, at CPL3 with
//! IF=1), so a round trip is two doorbell -> interrupt hops.
//! `proto=line`: one 64-bit flag in BAR2, A stores an odd counter and B
//! answers with the next even one: the same protocol as the host's
//! cache-line floor, the lower bound any ring protocol over this memory has.
//! `proto=interleaved`: both in the same two VMs, in alternating blocks
//! (flag line, ring, flag line, ring, ...: `blocks` repetitions of one block
//! each), so every ring block has a floor block measured a moment before it
//! on the same placement of the vCPUs; A prints the ratio of the two block
//! medians per repetition (see [`interleaved_main`]).
//!
//! Both sides run `warmup + iters * batch` round trips (`proto=interleaved`:
//! per block); A records one sample per `batch` round trips and prints the
//! summary.

use core::sync::atomic::{AtomicU64, Ordering};

use ivc_abi::{AtomicMem, AttachOptions, ChannelError, Endpoint, PeerState, Readiness};

use super::samples::{self, Region};
use super::shm_dev::{self, ShmDev, Want};
use super::{bad_param, Context, Test, GUESS_TSC_KHZ};
use crate::cmdline::ParamError;
use crate::exit::{exit, status};
use crate::pci;
use crate::{cpl0_io, cpl3, irq, println, tsc};

pub const TEST: Test = Test {
    name: "shm-pingpong",
    params: concat!(
        "role=a|b [proto=ring|line|interleaved] [size=64] [iters=10000] [warmup=1000] [batch=1] [blocks=25] ",
        "[irq=0] [wait=spin|hlt] ",
        "[vector=0] [via=mmio|io] [timeout_ms=20000] [tsc_khz=auto] [dev=1af4:1110] ",
        crate::allocator_params!()
    ),
    about: "round-trip latency between two VMs over ivc-shm (ring or cache-line flag), CPL3",
    run,
};

/// Largest message: both buffers live on the 64 KiB CPL3 stack.
const MAX_SIZE: usize = 4096;
/// Most samples kept (8 MiB of guest RAM).
const MAX_SAMPLES: u64 = 1 << 20;
/// How long a CPL3 wait for an interrupt lasts before polling anyway.
const IRQ_WAIT_MS: u64 = 20;
/// Byte offset in BAR2 of the `proto=line` ready word (its own cache line).
const LINE_READY: u64 = 128;
const READY_MAGIC: u64 = 0x6976_632d_7070_6f6e;
/// `proto=interleaved`: the last page of BAR2 holds the flag line and the
/// two sides' plans; the ring's region ends before it.
const FLAG_PAGE: u64 = 4096;
/// Offsets in that page of the words A and B publish their plan in (each
/// its own cache line, and not the flag's).
const PLAN_A: u64 = 64;
const PLAN_B: u64 = 128;
/// Most repetitions of `proto=interleaved` (their ratios live on the CPL3
/// stack).
const MAX_BLOCKS: u64 = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Ring,
    Line,
    Interleaved,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Ring => "ring",
            Proto::Line => "line",
            Proto::Interleaved => "interleaved",
        }
    }
}

struct Params {
    dev: ShmDev,
    role_a: bool,
    proto: Proto,
    size: usize,
    iters: u64,
    warmup: u64,
    batch: u64,
    /// `proto=interleaved`: repetitions of (flag line block, ring block).
    blocks: u64,
    irq: bool,
    /// `irq=1`: wait by halting the vCPU (`wait=hlt`) instead of spinning.
    halt: bool,
    vector: u16,
    khz: Option<u64>,
    /// Cycles without progress before giving up.
    timeout: u64,
    irq_wait: u64,
    samples: Option<Region>,
}

fn run(ctx: &Context) -> u8 {
    let c = &ctx.cmdline;
    let parsed = (|| -> Result<_, ParamError> {
        let role_a = c.required_choice("role", &[("a", true), ("b", false)], "a or b")?;
        let proto = c.choice(
            "proto",
            Proto::Ring,
            &[
                ("ring", Proto::Ring),
                ("line", Proto::Line),
                ("interleaved", Proto::Interleaved),
            ],
            "ring, line or interleaved",
        )?;
        let size = c.u64_in("size", 64, 1..=MAX_SIZE as u64, "1 to 4096 bytes")?;
        let vector = super::vector(ctx)?;
        let iters = c.u64_or("iters", 10_000)?.clamp(1, MAX_SAMPLES);
        let khz = super::tsc_khz(ctx)?;
        let irq = c.bool_or("irq", false)?;
        let halt = c.choice(
            "wait",
            false,
            &[("spin", false), ("hlt", true)],
            "spin or hlt",
        )?;
        let want = Want {
            id: c.pci_id_or("dev", pci::IVSHMEM)?,
            via_io: c.choice("via", false, &[("mmio", false), ("io", true)], "mmio or io")?,
            vector: irq.then_some(vector),
        };
        let guess = khz.unwrap_or(GUESS_TSC_KHZ);
        Ok((
            want,
            Params {
                dev: ShmDev::UNOPENED,
                role_a,
                proto,
                size: size as usize,
                iters,
                warmup: c.u64_or("warmup", 1000)?,
                batch: c.u64_or("batch", 1)?.max(1),
                blocks: c.u64_in("blocks", 25, 1..=MAX_BLOCKS, "1 to 1000")?,
                irq,
                halt,
                vector,
                khz,
                timeout: c.u64_or("timeout_ms", 20_000)?.saturating_mul(guess),
                irq_wait: IRQ_WAIT_MS * guess,
                samples: None,
            },
        ))
    })();
    let (want, mut p) = match parsed {
        Ok(v) => v,
        Err(e) => return bad_param(e),
    };
    if p.irq && p.proto != Proto::Ring {
        println!("error: irq=1 needs proto=ring (the flag protocol has no doorbell)");
        return status::USAGE;
    }
    // Samples A keeps: `iters` per block, two blocks per repetition.
    let kept = match p.proto {
        Proto::Interleaved => p.iters.saturating_mul(2 * p.blocks),
        _ => p.iters,
    };
    if kept > MAX_SAMPLES {
        println!("error: blocks x iters x 2 = {kept} samples, at most {MAX_SAMPLES}");
        return status::USAGE;
    }
    p.dev = match shm_dev::open(ctx, &want) {
        Ok(d) => d,
        Err(code) => return code,
    };
    if p.role_a {
        let Some(addr) = samples::reserve(ctx.start_info, kept * 8) else {
            println!("error: no RAM for {kept} samples");
            return status::FAILURE;
        };
        p.samples = Some(Region {
            addr,
            cap: kept as usize,
        });
    }
    println!(
        "pingpong ivposition={} role={} proto={} size={} iters={} warmup={} batch={} irq={}",
        p.dev.ivposition,
        if p.role_a { "a" } else { "b" },
        p.proto.name(),
        p.size,
        p.iters,
        p.warmup,
        p.batch,
        p.irq as u8
    );
    if p.proto == Proto::Interleaved {
        println!(
            "pingpong-interleaved blocks={} round_trips_per_block={} order=line,ring",
            p.blocks,
            p.warmup + p.iters * p.batch
        );
    }
    match (p.proto, p.irq) {
        (Proto::Line, _) => cpl3::run(line_main, &p),
        (Proto::Interleaved, _) => cpl3::run(interleaved_main, &p),
        (Proto::Ring, false) => cpl3::run(ring_main, &p),
        (Proto::Ring, true) => {
            if p.halt {
                cpl0_io::install();
            }
            cpl3::run_with_interrupts(ring_main, &p)
        }
    }
}

/// Counts the timeout check: reads the clock only every 1024 empty polls,
/// so a poll costs no RDTSC on the fast path.
struct Patience {
    spins: u32,
    since: u64,
}

impl Patience {
    fn new() -> Self {
        Patience { spins: 0, since: 0 }
    }

    /// One more empty poll; `true` once `timeout` cycles passed without
    /// progress.
    fn exhausted(&mut self, timeout: u64) -> bool {
        self.spins = self.spins.wrapping_add(1);
        if self.spins & 1023 != 0 {
            return false;
        }
        let now = tsc::rdtsc();
        if self.since == 0 {
            self.since = now;
        }
        now.wrapping_sub(self.since) > timeout
    }
}

#[derive(Default)]
struct Counters {
    rings: u64,
    waits: u64,
}

struct Ring<'a> {
    p: &'a Params,
    ep: Endpoint<AtomicMem<'a>>,
    peer: Option<u16>,
    n: Counters,
}

impl Ring<'_> {
    fn fail(&self, what: &str, e: Option<ChannelError>) -> ! {
        match e {
            Some(e) => println!("error: {what}: {e}"),
            None => println!("error: {what}"),
        }
        exit(status::FAILURE)
    }

    fn ring_if_asked(&mut self) {
        if self.p.irq && self.ep.needs_doorbell() {
            if let Some(peer) = self.peer {
                self.p.dev.ring(peer, self.p.vector);
                self.n.rings += 1;
            }
        }
    }

    /// Waits for an interrupt after arming a wake-up, unless `armed` says
    /// the condition already holds.
    fn wait_irq(&mut self, seen: u64, armed: Result<Readiness, ChannelError>) {
        match armed {
            Ok(Readiness::MaySleep) => {}
            Ok(_) => return,
            Err(e) => self.fail("arming a wake-up", Some(e)),
        }
        self.n.waits += 1;
        let v = usize::from(self.p.vector);
        if self.p.halt {
            // No timeout: the arm/re-check protocol guarantees the doorbell,
            // and a lost one hangs the VM, which the runner reports.
            cpl0_io::halt_until_changed(irq::count_ptr(v), seen);
            return;
        }
        // A bounded wait: a doorbell that never comes costs irq_wait, then
        // the caller looks at the ring again.
        let _ = irq::spin_until(v, seen + 1, tsc::rdtsc(), self.p.irq_wait);
    }

    fn send(&mut self, msg: &[u8]) {
        let mut off = 0;
        let mut patience = Patience::new();
        loop {
            let k = match self.ep.write(&msg[off..]) {
                Ok(k) => k,
                Err(e) => self.fail("write", Some(e)),
            };
            off += k;
            self.ring_if_asked();
            if off == msg.len() {
                return;
            }
            if k == 0 {
                if patience.exhausted(self.p.timeout) {
                    self.fail("no space in the ring within timeout_ms", None);
                }
                if self.p.irq {
                    let seen = irq::count(usize::from(self.p.vector));
                    let armed = self.ep.arm_write_wakeup(1);
                    self.wait_irq(seen, armed);
                }
            }
        }
    }

    /// B's turn: receives message `i` (its stamp checked: a peer out of
    /// step ends the VM) and sends it back.
    fn echo_stamped(&mut self, back: &mut [u8], i: u64) {
        self.recv(back);
        let mut want = [0u8; 8];
        stamp(&mut want, i);
        if back.iter().zip(want).any(|(&a, b)| a != b) {
            self.fail("message out of order", None);
        }
        self.send(back);
    }

    fn recv(&mut self, buf: &mut [u8]) {
        let mut off = 0;
        let mut patience = Patience::new();
        loop {
            let k = match self.ep.read(&mut buf[off..]) {
                Ok(k) => k,
                Err(e) => self.fail("read", Some(e)),
            };
            off += k;
            self.ring_if_asked();
            if off == buf.len() {
                return;
            }
            if k == 0 {
                if patience.exhausted(self.p.timeout) {
                    self.fail("no data within timeout_ms", None);
                }
                if self.p.irq {
                    let seen = irq::count(usize::from(self.p.vector));
                    let armed = self.ep.arm_read_wakeup(1);
                    self.wait_irq(seen, armed);
                }
            }
        }
    }
}

/// Reads of the empty ring timed before the first message (B sends
/// nothing until it has one, so every read finds the ring empty): the cost
/// of one `Endpoint::read` call without data, which a polling round trip
/// pays at least twice.
fn calibrate(r: &mut Ring, buf: &mut [u8]) {
    const CALLS: u64 = 1024;
    let t0 = tsc::rdtsc();
    for _ in 0..CALLS {
        match r.ep.read(buf) {
            Ok(0) => {}
            Ok(_) => r.fail("data before the first message", None),
            Err(e) => r.fail("read", Some(e)),
        }
    }
    let per_call = tsc::rdtsc().wrapping_sub(t0) / CALLS;
    match r.p.khz {
        Some(khz) => println!(
            "pingpong-calib empty_read_cycles={per_call} empty_read_ns={}",
            samples::ns(per_call, khz)
        ),
        None => println!("pingpong-calib empty_read_cycles={per_call}"),
    }
}

/// Marks message `i`: its first bytes carry the round-trip number, so an
/// echo of a stale message cannot pass the check.
fn stamp(msg: &mut [u8], i: u64) {
    for (d, s) in msg.iter_mut().zip(i.to_le_bytes()) {
        *d = s;
    }
}

fn ring_main(p: &Params) -> ! {
    // SAFETY: BAR2 is mapped (identity, user-accessible, write-back) for
    // the rest of the VM's life and only accessed atomically from here.
    let Some(mem) = (unsafe { AtomicMem::new(p.dev.shm as *mut u8, p.dev.shm_size as usize) })
    else {
        println!("error: BAR2 is not aligned");
        exit(status::FAILURE)
    };
    let mut r = connect(p, mem);
    let mut msg = [0u8; MAX_SIZE];
    let mut back = [0u8; MAX_SIZE];
    let (msg, back) = (&mut msg[..p.size], &mut back[..p.size]);
    fill(msg);
    let total = p.warmup + p.iters * p.batch;
    if p.role_a {
        calibrate(&mut r, back);
        let samples = p.samples.map(|s| s.slice()).unwrap_or_default();
        let mut t0 = 0;
        for i in 0..total {
            stamp(msg, i);
            let timed = i.checked_sub(p.warmup);
            if timed.is_some_and(|t| t % p.batch == 0) {
                t0 = tsc::rdtsc();
            }
            r.send(msg);
            r.recv(back);
            if let Some(t) = timed.filter(|t| (t + 1) % p.batch == 0) {
                let t1 = tsc::rdtsc();
                if let Some(s) = samples.get_mut((t / p.batch) as usize) {
                    *s = t1.wrapping_sub(t0);
                }
            }
            if back != &msg[..] {
                r.fail("the echo differs from the message", None);
            }
        }
        r.ep.close();
        r.ring_if_asked();
        report_a(p, samples, &r.n);
    } else {
        for i in 0..total {
            r.echo_stamped(back, i);
        }
        r.ep.close();
        r.ring_if_asked();
        report_b(p, total, &r.n);
    }
    exit(status::SUCCESS)
}

/// The message pattern (the round-trip number is stamped over its start).
fn fill(msg: &mut [u8]) {
    for (k, b) in msg.iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(31) ^ 0x5a;
    }
}

/// Attaches to the channel in `mem` and waits for the peer (printing
/// `pingpong-connected`); any failure ends the VM.
fn connect<'a>(p: &'a Params, mem: AtomicMem<'a>) -> Ring<'a> {
    let opts = AttachOptions {
        doorbell_id: u16::try_from(p.dev.ivposition).ok(),
        ..AttachOptions::default()
    };
    let mut patience = Patience::new();
    let ep = loop {
        match Endpoint::attach_any(mem, &opts) {
            Ok(ep) => break ep,
            Err(ChannelError::Busy) if !patience.exhausted(p.timeout) => {}
            Err(e) => {
                println!("error: attach: {e}");
                exit(status::FAILURE)
            }
        }
    };
    let mut r = Ring {
        p,
        ep,
        peer: None,
        n: Counters::default(),
    };
    let mut patience = Patience::new();
    loop {
        match r.ep.peer_state() {
            Ok(PeerState::Connected) => break,
            Ok(_) if !patience.exhausted(p.timeout) => {}
            Ok(_) => r.fail("no peer within timeout_ms", None),
            Err(e) => r.fail("peer state", Some(e)),
        }
    }
    r.peer = r.ep.peer_doorbell_id().ok().flatten();
    println!("pingpong-connected slot={}", r.ep.slot());
    r
}

fn line_main(p: &Params) -> ! {
    // SAFETY: BAR2 is mapped for the rest of the VM's life, page-aligned,
    // at least 4 KiB; words at offsets 0 and LINE_READY are only accessed
    // atomically (the peer VM does the same), and this BAR holds no ivc
    // channel in this test (the harness gives it fresh memory).
    let (flag, ready) = unsafe {
        (
            &*(p.dev.shm as *const AtomicU64),
            &*((p.dev.shm + LINE_READY) as *const AtomicU64),
        )
    };
    let total = p.warmup + p.iters * p.batch;
    let none = Counters::default();
    if !p.role_a {
        ready.store(READY_MAGIC, Ordering::Release);
        println!("pingpong-connected");
        for i in 0..total {
            let mut patience = Patience::new();
            while flag.load(Ordering::Acquire) != 2 * i + 1 {
                if patience.exhausted(p.timeout) {
                    println!("error: no ping {i} within timeout_ms");
                    exit(status::FAILURE);
                }
                core::hint::spin_loop();
            }
            flag.store(2 * i + 2, Ordering::Release);
        }
        report_b(p, total, &none);
        exit(status::SUCCESS)
    }
    let mut patience = Patience::new();
    while ready.load(Ordering::Acquire) != READY_MAGIC {
        if patience.exhausted(p.timeout) {
            println!("error: no peer within timeout_ms");
            exit(status::FAILURE);
        }
    }
    println!("pingpong-connected");
    let samples = p.samples.map(|s| s.slice()).unwrap_or_default();
    let mut t0 = 0;
    for i in 0..total {
        let timed = i.checked_sub(p.warmup);
        if timed.is_some_and(|t| t % p.batch == 0) {
            t0 = tsc::rdtsc();
        }
        flag.store(2 * i + 1, Ordering::Release);
        let mut patience = Patience::new();
        while flag.load(Ordering::Acquire) != 2 * i + 2 {
            if patience.exhausted(p.timeout) {
                println!("error: no pong {i} within timeout_ms");
                exit(status::FAILURE);
            }
            core::hint::spin_loop();
        }
        if let Some(t) = timed.filter(|t| (t + 1) % p.batch == 0) {
            let t1 = tsc::rdtsc();
            if let Some(s) = samples.get_mut((t / p.batch) as usize) {
                *s = t1.wrapping_sub(t0);
            }
        }
    }
    report_a(p, samples, &none);
    exit(status::SUCCESS)
}

/// What `proto=interleaved` must agree on between the two sides: a sender
/// and an echo side with different block sizes or orders would wait for
/// each other's round trips in the wrong protocol. Never 0 (0 = "not yet
/// published").
fn plan_word(p: &Params) -> u64 {
    let mut h = ivc_kit::stream::Fnv64::new();
    for v in [p.blocks, p.iters, p.batch, p.warmup, p.size as u64] {
        h.update(&v.to_le_bytes());
    }
    h.value() | 1
}

/// Waits until `word` (shared, untrusted) holds `want`: `prev` means "not
/// yet", anything else is a peer out of step and ends the VM, as does no
/// change within the timeout.
fn await_word(p: &Params, word: &AtomicU64, prev: u64, want: u64, what: &str) {
    let mut patience = Patience::new();
    loop {
        let v = word.load(Ordering::Acquire);
        if v == want {
            return;
        }
        if v != prev {
            println!("error: {what}: the flag word holds {v}, expected {prev} or {want}");
            exit(status::FAILURE);
        }
        if patience.exhausted(p.timeout) {
            println!("error: {what}: no answer within timeout_ms");
            exit(status::FAILURE);
        }
        core::hint::spin_loop();
    }
}

/// Times the round trips of one block: `warmup` untimed, then one sample
/// per `batch` into `out`.
struct BlockClock<'s> {
    warmup: u64,
    batch: u64,
    out: &'s mut [u64],
    t0: u64,
}

impl BlockClock<'_> {
    fn before(&mut self, i: u64) {
        if i.checked_sub(self.warmup)
            .is_some_and(|t| t % self.batch == 0)
        {
            self.t0 = tsc::rdtsc();
        }
    }

    fn after(&mut self, i: u64) {
        if let Some(t) = i
            .checked_sub(self.warmup)
            .filter(|t| (t + 1) % self.batch == 0)
        {
            let t1 = tsc::rdtsc();
            if let Some(s) = self.out.get_mut((t / self.batch) as usize) {
                *s = t1.wrapping_sub(self.t0);
            }
        }
    }
}

/// `proto=interleaved`: `blocks` repetitions of a flag-line block and a
/// ring block, each `warmup + iters * batch` round trips of `size` bytes, in
/// the same two VMs. The flag line and the plans live in the last page of
/// BAR2, the ring's region is the rest, so neither protocol touches the
/// other's lines. Both sides publish their plan ([`plan_word`]) and refuse
/// a peer with another one; then the order is fixed (line, ring, line, ...)
/// and B follows it by counting, checking every flag value and every
/// message's stamp, so a peer out of step ends the run with an error, not a
/// hang. The flag counter and the ring's stamps run on across blocks.
fn interleaved_main(p: &Params) -> ! {
    let Some(ring_len) = p
        .dev
        .shm_size
        .checked_sub(FLAG_PAGE)
        .filter(|&l| l >= 3 * FLAG_PAGE)
    else {
        println!("error: BAR2 too small for proto=interleaved (16 KiB at least)");
        exit(status::FAILURE)
    };
    let page = p.dev.shm + ring_len;
    // SAFETY: BAR2 is mapped (identity, user-accessible, write-back) for the
    // rest of the VM's life and page-aligned; its last page (`page`) holds
    // no part of the ring's region (which is `..ring_len`), and the words at
    // offsets 0, PLAN_A and PLAN_B in it are only accessed atomically here
    // (the peer VM may write anything: every value read is checked).
    let (flag, plan_a, plan_b) = unsafe {
        (
            &*(page as *const AtomicU64),
            &*((page + PLAN_A) as *const AtomicU64),
            &*((page + PLAN_B) as *const AtomicU64),
        )
    };
    let (mine, theirs) = if p.role_a {
        (plan_a, plan_b)
    } else {
        (plan_b, plan_a)
    };
    let plan = plan_word(p);
    mine.store(plan, Ordering::Release);
    // SAFETY: the first `ring_len` bytes of BAR2, mapped as above, only
    // accessed atomically (through the endpoint) from here.
    let Some(mem) = (unsafe { AtomicMem::new(p.dev.shm as *mut u8, ring_len as usize) }) else {
        println!("error: BAR2 is not aligned");
        exit(status::FAILURE)
    };
    let mut r = connect(p, mem);
    await_word(
        p,
        theirs,
        0,
        plan,
        "the peer's plan (blocks, iters, batch, warmup and size must match)",
    );
    let mut msg = [0u8; MAX_SIZE];
    let mut back = [0u8; MAX_SIZE];
    let (msg, back) = (&mut msg[..p.size], &mut back[..p.size]);
    fill(msg);
    let per_block = p.warmup + p.iters * p.batch;
    // Round trips so far of each protocol: the flag's value and the ring's
    // stamp continue across blocks.
    let (mut line_n, mut ring_n) = (0u64, 0u64);
    let samples = p.samples.map(|s| s.slice()).unwrap_or_default();
    let iters = p.iters as usize;
    // Line samples first (all blocks), then ring samples.
    let (line_all, ring_all) = samples.split_at_mut(samples.len() / 2);
    for rep in 0..p.blocks as usize {
        let at = rep * iters..(rep + 1) * iters;
        let mut clock = BlockClock {
            warmup: p.warmup,
            batch: p.batch,
            out: line_all.get_mut(at.clone()).unwrap_or_default(),
            t0: 0,
        };
        for i in 0..per_block {
            let k = line_n;
            if p.role_a {
                clock.before(i);
                flag.store(2 * k + 1, Ordering::Release);
                await_word(p, flag, 2 * k + 1, 2 * k + 2, "flag line (A)");
                clock.after(i);
            } else {
                await_word(p, flag, 2 * k, 2 * k + 1, "flag line (B)");
                flag.store(2 * k + 2, Ordering::Release);
            }
            line_n += 1;
        }
        let mut clock = BlockClock {
            warmup: p.warmup,
            batch: p.batch,
            out: ring_all.get_mut(at).unwrap_or_default(),
            t0: 0,
        };
        for i in 0..per_block {
            if p.role_a {
                stamp(msg, ring_n);
                clock.before(i);
                r.send(msg);
                r.recv(back);
                clock.after(i);
                if back != &msg[..] {
                    r.fail("the echo differs from the message", None);
                }
            } else {
                r.echo_stamped(back, ring_n);
            }
            ring_n += 1;
        }
    }
    r.ep.close();
    if p.role_a {
        report_interleaved(p, line_all, ring_all);
    } else {
        report_b(p, line_n + ring_n, &r.n);
    }
    exit(status::SUCCESS)
}

/// `numerator / denominator` in thousandths, 0 for a zero denominator.
fn milli(numerator: u64, denominator: u64) -> u64 {
    (u128::from(numerator) * 1000)
        .checked_div(u128::from(denominator))
        .map_or(0, |r| r as u64)
}

/// A's report of `proto=interleaved`: one `interleaved-pair` line per
/// repetition (both block medians per round trip, and their ratio in
/// thousandths), the ratios' spread (`interleaved-ratio`), then each
/// figure over all its blocks as `interleaved-result figure=line|ring`
/// (and `interleaved-ns` with `tsc_khz`), the fields of `pingpong-result`.
fn report_interleaved(p: &Params, line_all: &mut [u64], ring_all: &mut [u64]) {
    let iters = p.iters as usize;
    let mut ratios = [0u64; MAX_BLOCKS as usize];
    let mut pairs = 0;
    for (rep, (line, ring)) in line_all
        .chunks_mut(iters)
        .zip(ring_all.chunks_mut(iters))
        .enumerate()
    {
        let (Some(l), Some(g)) = (samples::summarize(line), samples::summarize(ring)) else {
            continue;
        };
        let ratio = milli(g.median, l.median);
        if let Some(slot) = ratios.get_mut(pairs) {
            *slot = ratio;
            pairs += 1;
        }
        let per = |c: u64| c / p.batch;
        match p.khz {
            Some(khz) => println!(
                "interleaved-pair rep={rep} line_cycles={} ring_cycles={} ratio_milli={ratio} line_ns={} ring_ns={}",
                per(l.median),
                per(g.median),
                samples::ns(l.median, khz * p.batch),
                samples::ns(g.median, khz * p.batch)
            ),
            None => println!(
                "interleaved-pair rep={rep} line_cycles={} ring_cycles={} ratio_milli={ratio}",
                per(l.median),
                per(g.median)
            ),
        }
    }
    let ratios = ratios.get_mut(..pairs).unwrap_or_default();
    let Some(s) = samples::summarize(ratios) else {
        println!("error: no samples");
        exit(status::FAILURE)
    };
    let rank = |pct| ivc_kit::stats::nearest_rank(ratios, pct).unwrap_or(0);
    println!(
        "interleaved-ratio pairs={} min_milli={} p10_milli={} median_milli={} p90_milli={} max_milli={}",
        s.count,
        s.min,
        rank(10),
        s.median,
        rank(90),
        s.max
    );
    for (name, all) in [("line", line_all), ("ring", ring_all)] {
        let Some(s) = samples::summarize(all) else {
            println!("error: no samples");
            exit(status::FAILURE)
        };
        let per = |c: u64| c / p.batch;
        println!(
            "interleaved-result figure={name} size={} samples={} batch={} min_cycles={} median_cycles={} p99_cycles={} max_cycles={} mean_cycles={}",
            p.size,
            s.count,
            p.batch,
            per(s.min),
            per(s.median),
            per(s.p99),
            per(s.max),
            per(s.mean_floor())
        );
        if let Some(khz) = p.khz {
            let ns = |c: u64| samples::ns(c, khz * p.batch);
            println!(
                "interleaved-ns figure={name} tsc_khz={khz} min_ns={} median_ns={} p99_ns={} max_ns={} mean_ns={}",
                ns(s.min),
                ns(s.median),
                ns(s.p99),
                ns(s.max),
                ns(s.mean_floor())
            );
        }
    }
}

fn report_a(p: &Params, samples: &mut [u64], n: &Counters) {
    let Some(s) = samples::summarize(samples) else {
        println!("error: no samples");
        exit(status::FAILURE)
    };
    // Per round trip: a sample is `batch` of them.
    let per = |c: u64| c / p.batch;
    println!(
        "pingpong-result role=a proto={} size={} samples={} batch={} min_cycles={} median_cycles={} p99_cycles={} max_cycles={} mean_cycles={} rings={} waits={} interrupts={}",
        p.proto.name(),
        p.size,
        s.count,
        p.batch,
        per(s.min),
        per(s.median),
        per(s.p99),
        per(s.max),
        per(s.mean_floor()),
        n.rings,
        n.waits,
        if p.irq { irq::count(usize::from(p.vector)) } else { 0 }
    );
    if let Some(khz) = p.khz {
        let ns = |c: u64| samples::ns(c, khz * p.batch);
        println!(
            "pingpong-ns tsc_khz={khz} min_ns={} median_ns={} p99_ns={} max_ns={} mean_ns={}",
            ns(s.min),
            ns(s.median),
            ns(s.p99),
            ns(s.max),
            ns(s.mean_floor())
        );
    }
}

fn report_b(p: &Params, total: u64, n: &Counters) {
    println!(
        "pingpong-result role=b echoed={total} rings={} waits={} interrupts={}",
        n.rings,
        n.waits,
        if p.irq {
            irq::count(usize::from(p.vector))
        } else {
            0
        }
    );
}
