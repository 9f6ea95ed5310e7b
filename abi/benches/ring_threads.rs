//! Measurements of the ring between two host threads (not tests; nothing is
//! asserted about speed): `cargo bench -p ivc-abi --bench ring_threads`.
//! Each figure is repeated; min / median / max are printed, since one run on
//! a noisy 2-vCPU host says little.
#![allow(clippy::unwrap_used)] // a measurement: a failed call is a bug to see

#[path = "../tests/common/mod.rs"]
mod common;

use common::{opts, pair, Region};
use ivc_abi::SharedMemory;

const REPEATS: usize = 5;

fn spread(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "min {:.0} / median {:.0} / max {:.0} MiB/s",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

/// Throughput of the ring over `AtomicMem` between two threads, polling (no
/// doorbells), 256 MiB per run.
fn throughput_polling() {
    const TOTAL: u64 = 256 << 20;
    for chunk in [4096usize, 65536] {
        let mut rates = Vec::new();
        for _ in 0..REPEATS {
            let r = Region::new(1 << 20);
            let (mut a, mut b) = pair(r.mem(), &opts(None, 0));
            let t = std::time::Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let buf = vec![0x5au8; chunk];
                    let mut sent = 0u64;
                    while sent < TOTAL {
                        let want = (TOTAL - sent).min(chunk as u64) as usize;
                        sent += a.write(&buf[..want]).unwrap() as u64;
                    }
                });
                let mut buf = vec![0u8; chunk];
                let mut got = 0u64;
                while got < TOTAL {
                    got += b.read(&mut buf).unwrap() as u64;
                }
            });
            rates.push(TOTAL as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64);
        }
        println!(
            "ring, two threads, polling, chunk {chunk}: {}",
            spread(rates)
        );
    }
}

/// Single-thread copy speed of `AtomicMem`, in and out of a 1 MiB region.
fn atomic_mem_copy_speed() {
    let mut rates = Vec::new();
    for _ in 0..REPEATS {
        let r = Region::new(1 << 20);
        let m = r.mem();
        let mut buf = vec![0u8; 1 << 16];
        let t = std::time::Instant::now();
        for i in 0..4096usize {
            let off = (i * 4096) % ((1 << 20) - (1 << 16));
            m.write_bytes(off, &buf).unwrap();
            m.read_bytes(off, &mut buf).unwrap();
        }
        rates.push(4096.0 * 65536.0 / t.elapsed().as_secs_f64() / (1 << 20) as f64);
    }
    println!("AtomicMem copy in+out, each way: {}", spread(rates));
}

fn main() {
    throughput_polling();
    atomic_mem_copy_speed();
}
