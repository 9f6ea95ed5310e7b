//! The host programs' one logging set-up: `log` records through env_logger
//! to stderr, for ivc-vmm and ivc-rendezvous alike.
//!
//! Every line reads `HH:MM:SS.mmm program: level: message` (UTC), written
//! whole so that lines of several threads never mix. `IVC_VMM_LOG` takes
//! env_logger's filter syntax (`debug`, `warn,ivc_vmm::devices=trace`) and
//! wins over the program's default level.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::LevelFilter;

/// The environment variable that sets the log filter of every host program.
pub const LOG_ENV: &str = "IVC_VMM_LOG";

/// Sends `log` records of `program` to stderr: up to `default`, or what
/// [`LOG_ENV`] says. Does nothing if a logger is already installed.
pub fn init(program: &'static str, default: LevelFilter) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(default);
    if let Ok(filters) = std::env::var(LOG_ENV) {
        builder.parse_filters(&filters);
    }
    builder.format(move |out, record| {
        writeln!(
            out,
            "{} {program}: {}: {}",
            clock(SystemTime::now()),
            record.level().as_str().to_ascii_lowercase(),
            record.args()
        )
    });
    // Err only when a logger is installed already (a test harness's).
    let _ = builder.try_init();
}

/// `HH:MM:SS.mmm` of `now`, UTC.
fn clock(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_clock_is_utc_time_of_day_with_milliseconds() {
        let t = UNIX_EPOCH
            + Duration::from_millis(86_400_000 * 3 + 13 * 3_600_000 + 8 * 60_000 + 5_007);
        assert_eq!(clock(t), "13:08:05.007");
        assert_eq!(clock(UNIX_EPOCH), "00:00:00.000");
    }
}
