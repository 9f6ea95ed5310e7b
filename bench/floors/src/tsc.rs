//! The host's TSC rate, handed to guests under QEMU TCG: TCG derives the
//! guest TSC from the host's TSC at the same rate, while the guest's own
//! clocks (jiffies under TCG) lag when the host is loaded.

use std::time::Duration;

use ivc_tools::clock::Clock;

/// The host TSC rate in MHz, measured against `CLOCK_MONOTONIC` for about
/// `span`; `None` where there is no TSC (not x86_64).
pub fn host_tsc_mhz(span: Duration) -> Option<f64> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    Clock::calibrate(span).tsc_mhz()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On x86_64 the rate must be there and be a rate some x86 CPU has
    /// (100 MHz .. 10 GHz); elsewhere there is none.
    #[test]
    fn host_tsc_rate_is_measured_where_there_is_a_tsc() {
        let mhz = host_tsc_mhz(Duration::from_millis(20));
        if cfg!(target_arch = "x86_64") {
            let mhz = mhz.expect("x86_64 has a TSC");
            assert!((100.0..10_000.0).contains(&mhz), "{mhz} MHz");
        } else {
            assert_eq!(mhz, None);
        }
    }
}
