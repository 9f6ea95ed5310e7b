//! Rate-limited logging for guest-triggered errors.
//!
//! A guest can hit a bad register in a tight loop; logging every access
//! would turn the VMM's stderr into the bottleneck (and fill disks). The
//! first few events are logged, then at most one per second with the number
//! suppressed in between.

use std::time::{Duration, Instant};

/// Events logged before limiting starts.
const BURST: u64 = 10;
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct RateLimit {
    total: u64,
    suppressed: u64,
    last: Option<Instant>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimit {
    pub const fn new() -> Self {
        RateLimit {
            total: 0,
            suppressed: 0,
            last: None,
        }
    }

    /// Counts one event; `Some(n)` when it should be logged, with `n`
    /// events suppressed since the previous logged one.
    pub fn check(&mut self) -> Option<u64> {
        self.total = self.total.wrapping_add(1);
        let now = Instant::now();
        let due =
            self.total <= BURST || self.last.is_none_or(|t| now.duration_since(t) >= INTERVAL);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Events counted so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// `warn!` through a [`RateLimit`].
#[macro_export]
macro_rules! warn_limited {
    ($limit:expr, $($arg:tt)*) => {
        if let Some(suppressed) = $limit.check() {
            if suppressed > 0 {
                log::warn!("{} ({suppressed} similar messages suppressed)", format_args!($($arg)*));
            } else {
                log::warn!($($arg)*);
            }
        }
    };
}

/// A guest-triggered log line, rate-limited per call site: `guest_log!(warn,
/// "...")` or `guest_log!(error, "...")`. Every message a guest can cause by
/// what it writes to a register or a BAR goes through this (or
/// [`warn_limited!`] with a per-device limiter), so no guest can fill the
/// host's disk through the VMM's stderr.
#[macro_export]
macro_rules! guest_log {
    ($level:ident, $($arg:tt)*) => {{
        static LIMIT: std::sync::Mutex<$crate::devices::ratelimit::RateLimit> =
            std::sync::Mutex::new($crate::devices::ratelimit::RateLimit::new());
        let due = LIMIT.lock().unwrap_or_else(|e| e.into_inner()).check();
        if let Some(suppressed) = due {
            if suppressed > 0 {
                log::$level!("{} ({suppressed} similar messages suppressed)", format_args!($($arg)*));
            } else {
                log::$level!($($arg)*);
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits() {
        let mut r = RateLimit::new();
        for _ in 0..BURST {
            assert_eq!(r.check(), Some(0));
        }
        assert_eq!(r.check(), None);
        assert_eq!(r.check(), None);
        assert_eq!(r.total(), BURST + 2);
    }
}
