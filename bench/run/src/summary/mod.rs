//! The one summary table: each channel's headline figures beside the floor
//! they are bounded by, and the ratio. One file per section of the table, in
//! table order: host floors, channels between QEMU TCG guests, ivc-vmm
//! devices, pio descriptor mode, Linux guests in ivc-vmm; then the suites
//! that did not run.

mod channels;
mod compare;
mod devices;
mod figures;
mod format;
mod host_floors;
mod nested;
mod pio_desc;
mod table;

use serde::Serialize;

use crate::record::{Record, Status, SuiteReport};
use figures::Figures;
pub use table::table;

/// A row of the summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// Channel (or `host` for floors).
    pub channel: String,
    /// Where it was measured.
    pub environment: String,
    /// What the figure is.
    pub what: String,
    /// The figure, formatted.
    pub figure: String,
    /// The floor it is compared with, formatted (empty if none).
    pub floor: String,
    /// Figure relative to the floor, formatted (empty if none).
    pub ratio: String,
}

impl Row {
    /// A measured row; `(floor, ratio)` as the `compare` helpers give them.
    fn new(
        channel: &str,
        environment: String,
        what: impl Into<String>,
        figure: String,
        (floor, ratio): (String, String),
    ) -> Self {
        Row {
            channel: channel.into(),
            environment,
            what: what.into(),
            figure,
            floor,
            ratio,
        }
    }
}

/// Builds the rows from every suite's records.
pub fn rows(reports: &[SuiteReport]) -> Vec<Row> {
    let records: Vec<Record> = reports.iter().flat_map(|r| r.records.clone()).collect();
    let f = Figures::new(&records);
    let mut rows = host_floors::rows(&f);
    rows.extend(host_floors::interleaved_rows(&f));
    rows.extend(host_floors::vmm_exit_rows(&f));
    rows.extend(channels::rows(&f));
    rows.extend(devices::duplex_rows(&f));
    rows.extend(pio_desc::rows(&f));
    rows.extend(devices::shm_round_trip_rows(&f));
    rows.extend(devices::stream_rows(&f));
    rows.extend(devices::doorbell_row(&f));
    rows.extend(nested::rows(&records));
    rows.extend(not_run_rows(reports));
    rows
}

/// One row per suite that was skipped or failed, its reason's first line in
/// the ratio column (the table lists these below the figures).
fn not_run_rows(reports: &[SuiteReport]) -> Vec<Row> {
    reports
        .iter()
        .filter_map(|r| {
            let (state, why) = match &r.status {
                Status::Ran => return None,
                Status::Skipped(why) => ("not run", why),
                Status::Failed(why) => ("FAILED", why),
            };
            Some(Row {
                channel: r.suite.clone(),
                environment: r.environment.clone(),
                what: state.into(),
                figure: String::new(),
                floor: String::new(),
                ratio: why.lines().next().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
