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

    #[test]
    fn host_tsc_rate_is_a_positive_number() {
        if let Some(mhz) = host_tsc_mhz(Duration::from_millis(20)) {
            assert!(mhz > 0.0);
        }
    }
}
