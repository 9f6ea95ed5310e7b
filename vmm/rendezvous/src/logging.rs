//! A minimal `log` backend that writes one line per record to stderr, for
//! the standalone binary (no logging framework needed for a few lines).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

/// Filtering is left to `log::set_max_level`, which the macros check.
struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() % 86_400;
        // One write per line so that lines from several threads do not mix.
        let line = format!(
            "{:02}:{:02}:{:02}.{:03} {:<5} {}\n",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            now.subsec_millis(),
            record.level(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Sends `log` records up to `level` to stderr as `HH:MM:SS.mmm LEVEL text`
/// (UTC). Does nothing if a logger is already installed.
pub fn init_stderr_logger(level: LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
