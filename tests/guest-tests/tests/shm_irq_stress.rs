//! Tier 3, the shm-irq lost wake-up hunt: two guests ping-pong over
//! `ivshmem-doorbell` for a while (`ivc-polltest stress`: 1..4096-byte
//! messages, each answer awaited alternately with poll(2) and a blocking
//! read) while two host threads hog the CPUs, so the guests' vCPUs are
//! preempted at every point of the doorbell protocol.
//!
//! Then both stream 256 MiB each way at once in 4 KiB calls (blocking
//! waits on a ring both sides work on).
//!
//! Asserted: every poll was woken by its data, never only at its 5 s
//! deadline; the driver never had to rescue a blocking wait with its own
//! timeout (`irq_wait_timeouts == 0` in both guests); every byte checked.
//! `IVC_STRESS_SECONDS` sets the length (default 60; the long run is 600+).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ivc_guest_harness::{require_guest_env, run_guests, GuestSpec};
use ivc_guest_tests::channel_env::ChannelEnv;
use ivc_guest_tests::guest_sh::INSMOD;
use ivc_guest_tests::report::value;

/// Prints the driver's wait-timeout counter as `IVC_IRQ_WAIT_TIMEOUTS=n`.
const WAIT_TIMEOUTS: &str =
    "echo IVC_IRQ_WAIT_TIMEOUTS=$(cat /sys/kernel/debug/ivc0/counters/irq_wait_timeouts)\n";

/// MiB each way in the duplex stream after the ping-pong.
const STREAM_MIB: u32 = 256;

/// Busy threads on the host until dropped.
struct Hogs(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Hogs {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Hogs(stop, threads)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn shm_irq_ping_pong_under_cpu_hogs_loses_no_wake_up() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let seconds: u64 = std::env::var("IVC_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let env = ChannelEnv::doorbell(1 << 20);
    // Then a duplex stream of 4 KiB calls: every wait is a blocking one on
    // a ring the peer fills and drains at the same time, which exercises
    // the doorbell suppression windows (a waiter asks to be woken only once
    // the other side's index passes a mark) rather than the ping-pong's
    // one message at a time.
    let spec = |name: &str, first: &str, tx: u32, rx: u32| {
        GuestSpec::new(
            name,
            format!(
                "{INSMOD}ivc-polltest stress /dev/ivc0{first} --seconds {seconds}\n\
                 echo IVC_STRESS_RC=$?\n\
                 ivc-xfer duplex /dev/ivc0 --bytes {STREAM_MIB}M --chunk 4K --seed {tx} --rx-seed {rx}\n\
                 echo IVC_DUPLEX_RC=$?\n{WAIT_TIMEOUTS}"
            ),
        )
        .device(env.device.clone())
        .cpus(2)
        .timeout(Duration::from_secs(seconds * 3 + 240))
    };
    let outcomes = {
        let _hogs = Hogs::start(2);
        run_guests(
            &artifacts,
            [
                spec("stress-a", " --first", 1, 2),
                spec("stress-b", "", 2, 1),
            ],
        )
        .expect("guest run")
    };
    for o in &outcomes {
        let line = o
            .serial
            .lines()
            .find(|l| l.contains("IVC_STRESS side="))
            .unwrap_or_else(|| panic!("no IVC_STRESS line from {}:\n{}", o.name, o.report()));
        eprintln!("{}: {}", o.name, line.trim());
        assert_eq!(
            value(&o.serial, "IVC_STRESS_RC"),
            Some("0"),
            "{} lost a wake-up or saw bad data:\n{}",
            o.name,
            o.report()
        );
        assert_eq!(
            value(&o.serial, "IVC_DUPLEX_RC"),
            Some("0"),
            "{}: the duplex stream failed:\n{}",
            o.name,
            o.report()
        );
        assert!(
            !line.contains(" rounds=0 "),
            "{}: no round completed:\n{}",
            o.name,
            o.report()
        );
        assert_eq!(
            value(&o.serial, "IVC_IRQ_WAIT_TIMEOUTS"),
            Some("0"),
            "{}: the driver rescued a doorbell wait by its timeout:\n{}",
            o.name,
            o.report()
        );
        assert!(o.kernel_errors().is_empty(), "{}", o.report());
        o.assert_success();
    }
    env.finish();
}
