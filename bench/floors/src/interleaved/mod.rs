//! Figures and their floor measured **interleaved**: the same two pinned
//! processes over the same mapping alternate short blocks — the cache-line
//! ping-pong (the floor), the ivc ring as `ivc-abi` implements it, and
//! models of other ring formats — repeated, and every figure is divided by
//! the floor block of its own repetition.
//!
//! Why: on these 2-vCPU cloud machines the placement of the two vCPUs (two
//! cores, two hyperthreads of one core, another socket) changes within
//! seconds, and a cross-core round trip moves by 3x with it. A floor taken
//! a minute before the figure it divides does not share its placement; a
//! floor taken a few milliseconds before, in the same processes, almost
//! always does. The spread of the per-repetition ratios then says how much
//! the placement still moved within a repetition.
//!
//! The child echoes whatever block the parent announces on a control line:
//! the parent stores the block's round-trip count and then a new command
//! word (release); the child, between blocks, polls that word.

mod blocks;
pub mod models;

use std::io;
use std::time::Duration;

use ivc_abi::{format, AtomicMem, ChannelError, Endpoint, FormatOptions, SharedMemory};
use ivc_tools::clock::Clock;
use serde::{Deserialize, Serialize};

use crate::fork::{spawn_pinned, CpuPair, Pinned};
use crate::model::Latency;
use crate::shared::SharedMap;
use blocks::{area, Side, AREA, CONTROL};
pub use blocks::{Block, Kind};

/// The ring size of a 1 MiB ivc region (what ivc-vmm's benchmarks use).
pub const BIG_RING: u32 = 256 << 10;
/// A ring small enough that a ping-pong's lines stay in both caches.
pub const SMALL_RING: u32 = 4 << 10;

/// The blocks of one repetition, in the order of the first; the floor runs
/// first in every repetition, the others rotate so that none always follows
/// the floor.
pub const DEFAULT_BLOCKS: [Block; 11] = [
    Block::new(Kind::Floor, 8, 0),
    Block::new(Kind::TwoLines, 64, 0),
    Block::new(Kind::Abi, 64, BIG_RING),
    Block::new(Kind::Abi, 64, SMALL_RING),
    Block::new(Kind::IndexModel, 64, BIG_RING),
    Block::new(Kind::IndexModel, 64, SMALL_RING),
    Block::new(Kind::RecordPacked, 64, BIG_RING),
    Block::new(Kind::RecordPacked, 64, SMALL_RING),
    Block::new(Kind::RecordLine, 64, BIG_RING),
    Block::new(Kind::RecordWindow, 64, BIG_RING),
    Block::new(Kind::RecordWindow, 56, BIG_RING),
];

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Blocks of one repetition; the first must be the floor.
    pub blocks: Vec<Block>,
    /// Repetitions (block pairs per figure).
    pub repeats: usize,
    /// Round trips per block (rounded up to whole batches of [`BATCH`]).
    pub round_trips: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            blocks: DEFAULT_BLOCKS.to_vec(),
            repeats: 25,
            round_trips: 4000,
        }
    }
}

/// Order statistics of the per-repetition ratios figure / floor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest ratio.
    pub min: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Largest ratio.
    pub max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Option<Spread> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |p: usize| v[((v.len() * p).div_ceil(100)).clamp(1, v.len()) - 1];
        Some(Spread {
            min: v[0],
            p10: at(10),
            median: at(50),
            p90: at(90),
            max: v[v.len() - 1],
        })
    }
}

/// One figure: every sample (a batch of [`BATCH`] round trips) of its
/// blocks pooled, and its ratios.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// What ran (see [`Kind::describe`]).
    pub name: String,
    /// Message size, bytes.
    pub size: u64,
    /// All round trips of all blocks.
    pub latency: Latency,
    /// Per repetition: this block's median / the floor block's median.
    pub ratio: Spread,
}

/// The result of one interleaved measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interleaved {
    /// Repetitions measured (the untimed first one not counted).
    pub repeats: usize,
    /// Round trips per block.
    pub round_trips: usize,
    /// One figure per block kind and size, the floor first (its ratio is 1).
    pub figures: Vec<Figure>,
}

/// Round trips timed together per sample: this machine's TSC advances in
/// steps of about 10 ns, a tenth of the floor; over 8 round trips the step
/// is 1.25 ns per round trip, and the two clock reads cost little.
pub const BATCH: usize = 8;

/// Command word that ends the child.
const STOP: u32 = u32::MAX;
/// Exit codes of the echoing child.
const CHILD_ATTACH_FAILED: i32 = 3;
const CHILD_BLOCK_FAILED: i32 = 4;

/// Runs `plan` on `cpus`.
pub fn measure(cpus: CpuPair, plan: &Plan) -> io::Result<Interleaved> {
    let blocks: Vec<Block> = plan.blocks.clone();
    if blocks.first().map(|b| b.kind) != Some(Kind::Floor) {
        return Err(io::Error::other("the first block must be the floor"));
    }
    if blocks.len() > 255 {
        return Err(io::Error::other("at most 255 blocks"));
    }
    for bl in &blocks {
        if bl.size == 0 || bl.size > blocks::MAX_MSG {
            return Err(io::Error::other("message sizes must be 1..=4096"));
        }
        let ring_ok = bl.ring.is_power_of_two() && bl.ring >= 1024 && bl.ring as usize <= AREA / 4;
        if !matches!(bl.kind, Kind::Floor | Kind::TwoLines) && !ring_ok {
            return Err(io::Error::other(
                "ring sizes must be powers of two, 1-256 KiB",
            ));
        }
    }
    let map = SharedMap::new(area(blocks.len()))?;
    // SAFETY: the mapping is page-aligned, `len` bytes long and outlives
    // `mem` and every endpoint (all live until this function returns); both
    // processes touch it only through `AtomicMem`s, atomically.
    let mem = unsafe { AtomicMem::new(map.ptr(), map.len()) }
        .ok_or_else(|| io::Error::other("shared mapping is not aligned"))?;
    // Each `ivc-abi` block gets its own region in its area.
    let mut regions = Vec::new();
    for (b, bl) in blocks.iter().enumerate() {
        if bl.kind != Kind::Abi {
            regions.push(None);
            continue;
        }
        // SAFETY: as above, a sub-range of the same mapping (area `b` lies
        // inside it: the mapping has an area per block after the first).
        let r = unsafe { AtomicMem::new(map.ptr().add(area(b)), AREA) }
            .ok_or_else(|| io::Error::other("shared mapping is not aligned"))?;
        let opts = FormatOptions {
            ring_size: Some(bl.ring),
            ..FormatOptions::default()
        };
        format(&r, &opts).map_err(channel_error)?;
        regions.push(Some(r));
    }
    let mut child_side = Side::new(&blocks, 1);
    let mut child_eps: Vec<Option<Endpoint<AtomicMem<'_>>>> = Vec::with_capacity(blocks.len());
    let n = (plan.round_trips.div_ceil(BATCH) * BATCH) as u32;
    let child_blocks = blocks.clone();
    let child_regions = regions.clone();
    // SAFETY: the child attaches endpoints (into a vector with room for all
    // of them: no allocation) and runs the blocks over the shared mapping
    // (atomics, copies into the side's own arrays): no locks, I/O or panics
    // on its paths.
    let child = unsafe {
        spawn_pinned(cpus.b, move || {
            for r in &child_regions {
                match r {
                    Some(r) => match Endpoint::attach(*r, 1) {
                        Ok(ep) => child_eps.push(Some(ep)),
                        Err(_) => return CHILD_ATTACH_FAILED,
                    },
                    None => child_eps.push(None),
                }
            }
            let mut last = 0u32;
            loop {
                let cmd = match mem.load_u32_acquire(CONTROL) {
                    Ok(c) => c,
                    Err(_) => return CHILD_BLOCK_FAILED,
                };
                if cmd == STOP {
                    return 0;
                }
                if cmd == last {
                    std::hint::spin_loop();
                    continue;
                }
                last = cmd;
                let b = (cmd & 0xff) as usize;
                let Some(&bl) = child_blocks.get(b) else {
                    return CHILD_BLOCK_FAILED;
                };
                for _ in 0..n {
                    if !child_side.echo(&mem, &mut child_eps, b, bl) {
                        return CHILD_BLOCK_FAILED;
                    }
                }
            }
        })
    }?;
    let _pinned = Pinned::to(cpus.a)?;
    let mut eps = Vec::new();
    for r in &regions {
        eps.push(match r {
            Some(r) => Some(Endpoint::attach(*r, 0).map_err(channel_error)?),
            None => None,
        });
    }
    let mut side = Side::new(&blocks, 0);
    let clock = Clock::calibrate(Duration::from_millis(20));
    let mut medians = vec![Vec::new(); blocks.len()];
    let mut pooled: Vec<Vec<u64>> = vec![Vec::new(); blocks.len()];
    let mut samples = vec![0u64; plan.round_trips.div_ceil(BATCH)];
    let mut seq = 0u32;
    // Repetition 0 is untimed: the endpoints' handshakes, caches, TLB.
    for rep in 0..=plan.repeats {
        let others = blocks.len() - 1;
        let order = std::iter::once(0).chain((0..others).map(|i| 1 + (i + rep) % others.max(1)));
        for b in order {
            let bl = blocks[b];
            seq = seq.wrapping_add(1) & 0xff_ffff;
            mem.store_u32_relaxed(CONTROL + 4, n).map_err(oob)?;
            mem.store_u32_release(CONTROL, (seq << 8) | b as u32)
                .map_err(oob)?;
            for (k, s) in samples.iter_mut().enumerate() {
                let t0 = clock.now();
                for j in 0..BATCH {
                    side.round_trip(&mem, &mut eps, b, bl, (k * BATCH + j) as u64)?;
                }
                let t1 = clock.now();
                // The last echo of the batch (the others would cost their
                // compare inside the timed interval).
                side.check(bl)?;
                *s = clock.ns_between(t0, t1);
            }
            if rep > 0 {
                let mut sorted = samples.clone();
                sorted.sort_unstable();
                medians[b].push(sorted[sorted.len() / 2]);
                pooled[b].extend_from_slice(&samples);
            }
        }
    }
    mem.store_u32_release(CONTROL, STOP).map_err(oob)?;
    for mut ep in eps.into_iter().flatten() {
        ep.close();
    }
    match child.wait(Duration::from_secs(5))? {
        0 => {}
        code => return Err(io::Error::other(format!("echo process failed ({code})"))),
    }
    let floor = medians[0].clone();
    let mut figures = Vec::new();
    for (b, bl) in blocks.iter().enumerate() {
        let ratios = medians[b]
            .iter()
            .zip(&floor)
            .map(|(&m, &f)| m as f64 / f.max(1) as f64)
            .collect();
        let latency = Latency::from_samples(bl.size as u64, BATCH as u64, &mut pooled[b])
            .ok_or_else(|| io::Error::other("no samples"))?;
        figures.push(Figure {
            name: bl.describe(),
            size: bl.size as u64,
            latency,
            ratio: Spread::of(ratios).ok_or_else(|| io::Error::other("no repetitions"))?,
        });
    }
    Ok(Interleaved {
        repeats: plan.repeats,
        round_trips: n as usize,
        figures,
    })
}

fn channel_error(e: ChannelError) -> io::Error {
    io::Error::other(format!("ivc channel: {e}"))
}

fn oob<E>(_: E) -> io::Error {
    io::Error::other("access outside the shared mapping")
}

impl Interleaved {
    /// A plain-text table: per figure min / median / p99 of the round
    /// trips and the median and spread of its ratios to the floor.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} repetitions x {} round trips per block; ratio = block median / floor block median of the same repetition\n",
            self.repeats, self.round_trips
        );
        s.push_str(&format!(
            "{:<72} {:>5} {:>7} {:>7} {:>7}   {:>5} {:>5} {:>5} {:>5} {:>5}\n",
            "figure", "bytes", "min", "median", "p99", "r.min", "r.p10", "r.med", "r.p90", "r.max"
        ));
        for f in &self.figures {
            s.push_str(&format!(
                "{:<72} {:>5} {:>7.0} {:>7.0} {:>7.0}   {:>5.2} {:>5.2} {:>5.2} {:>5.2} {:>5.2}\n",
                f.name,
                f.size,
                f.latency.min_ns,
                f.latency.median_ns,
                f.latency.p99_ns,
                f.ratio.min,
                f.ratio.p10,
                f.ratio.median,
                f.ratio.p90,
                f.ratio.max
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_pair;

    #[test]
    fn every_block_runs_and_the_floor_ratio_is_one() {
        let plan = Plan {
            repeats: 3,
            round_trips: 50,
            ..Plan::default()
        };
        let r = measure(cpu_pair(), &plan).expect("interleaved");
        assert_eq!(r.figures.len(), DEFAULT_BLOCKS.len());
        assert_eq!(r.figures[0].ratio.median, 1.0);
        for f in &r.figures {
            assert_eq!(f.latency.iters, 3 * 56, "{f:?}");
            assert!(f.ratio.min <= f.ratio.median && f.ratio.median <= f.ratio.max);
        }
        assert!(r.table().lines().count() == 2 + DEFAULT_BLOCKS.len());
    }

    #[test]
    fn the_floor_must_come_first() {
        let plan = Plan {
            blocks: vec![Block::new(Kind::Abi, 64, BIG_RING)],
            ..Plan::default()
        };
        assert!(measure(cpu_pair(), &plan).is_err());
    }

    #[test]
    fn spread_percentiles() {
        let s = Spread::of((1..=10).map(f64::from).collect()).expect("values");
        assert_eq!(
            (s.min, s.p10, s.median, s.p90, s.max),
            (1.0, 1.0, 5.0, 9.0, 10.0)
        );
        assert!(Spread::of(Vec::new()).is_none());
    }
}
