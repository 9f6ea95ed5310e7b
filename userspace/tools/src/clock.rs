//! A fine-grained clock for benchmarks inside emulated guests.
//!
//! Under QEMU TCG the guest kernel cannot calibrate the TSC against the PIT
//! and falls back to a jiffies clocksource: `clock_gettime` then advances in
//! whole milliseconds, useless for a round trip of a few microseconds. The
//! TSC itself still runs (QEMU derives it from the host's clock), so the
//! tool reads it directly and calibrates it once against `CLOCK_MONOTONIC`
//! between two clock edges, which cancels the coarse clock's granularity.
//! Elsewhere than x86_64 it uses `Instant` as it is.
//!
//! Under a loaded host the guest's timer interrupts arrive late and its
//! jiffies clock falls behind, so a calibration inside the guest can be off
//! by tens of percent. QEMU's TCG derives the guest TSC from the host's TSC
//! at the host's rate, so when the host knows that rate it passes it in
//! ([`Clock::with_tsc_mhz`]) and no calibration is needed.

use std::time::{Duration, Instant};

/// A calibrated tick source.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Nanoseconds per tick (1.0 when ticks are nanoseconds).
    ns_per_tick: f64,
    origin: Instant,
    tsc: bool,
}

impl Clock {
    /// Calibrates for about `span` (longer is more accurate; 200 ms gives
    /// better than 0.1% against a 1 ms clock).
    pub fn calibrate(span: Duration) -> Self {
        let origin = Instant::now();
        #[cfg(target_arch = "x86_64")]
        {
            // Start and end on an edge of the coarse clock, so its
            // resolution does not enter the measured interval.
            let edge = || {
                let t = Instant::now();
                loop {
                    let (n, c) = (Instant::now(), rdtsc());
                    if n != t {
                        return (n, c);
                    }
                }
            };
            let (t0, c0) = edge();
            while t0.elapsed() < span {
                std::hint::spin_loop();
            }
            let (t1, c1) = edge();
            let ns = (t1 - t0).as_nanos() as f64;
            if c1 > c0 && ns > 0.0 {
                return Clock {
                    ns_per_tick: ns / (c1 - c0) as f64,
                    origin,
                    tsc: true,
                };
            }
        }
        let _ = span;
        Clock {
            ns_per_tick: 1.0,
            origin,
            tsc: false,
        }
    }

    /// The TSC at a known rate (the host's, measured on the host).
    pub fn with_tsc_mhz(mhz: f64) -> Self {
        Clock {
            ns_per_tick: 1e3 / mhz,
            origin: Instant::now(),
            tsc: cfg!(target_arch = "x86_64") && mhz > 0.0,
        }
    }

    /// Time since tick count `start`.
    pub fn since(&self, start: u64) -> Duration {
        Duration::from_nanos(self.ns_between(start, self.now()))
    }

    /// The current tick count.
    pub fn now(&self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if self.tsc {
            return rdtsc();
        }
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Nanoseconds between two tick counts.
    pub fn ns_between(&self, start: u64, end: u64) -> u64 {
        (end.saturating_sub(start) as f64 * self.ns_per_tick) as u64
    }

    /// The TSC rate in MHz, when this clock is the TSC.
    pub fn tsc_mhz(&self) -> Option<f64> {
        self.tsc.then(|| 1e3 / self.ns_per_tick)
    }

    /// A description for reports, e.g. `TSC 2600.1 MHz`.
    pub fn describe(&self) -> String {
        if self.tsc {
            format!("TSC {:.1} MHz", 1e3 / self.ns_per_tick)
        } else {
            "CLOCK_MONOTONIC".into()
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; every x86_64 CPU has it and user
    // mode may execute it unless the kernel set CR4.TSD, which Linux does
    // not (it would fault, not corrupt). `unused_unsafe`: newer Rust made
    // this intrinsic safe to call.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_to_plausible_nanoseconds() {
        let c = Clock::calibrate(Duration::from_millis(20));
        let t0 = c.now();
        let w = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        let t1 = c.now();
        let real = w.elapsed().as_nanos() as u64;
        let measured = c.ns_between(t0, t1);
        // Loose bounds: only that the scale is right, not how fast anything is.
        assert!(
            measured > real / 2 && measured < real * 2,
            "{measured} vs {real}"
        );
        assert_eq!(c.ns_between(5, 3), 0);
        let fixed = Clock::with_tsc_mhz(1000.0);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(fixed.tsc_mhz(), Some(1000.0));
        }
        assert_eq!(fixed.ns_between(0, 2000), 2000);
        assert!(!c.describe().is_empty());
    }
}
