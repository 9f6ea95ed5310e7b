//! What a suite measured: records, suite reports, and the guests' JSON lines.

use ivc_floors::interleaved::Spread;
use ivc_floors::{Latency, Throughput};
use serde::{Deserialize, Serialize};

/// Prefix of the result lines `ivc-bench` prints in a guest.
pub const GUEST_JSON_PREFIX: &str = "IVC_BENCH_JSON ";

/// Where a figure was measured.
pub mod env {
    /// On the host itself.
    pub const HOST: &str = "host";
    /// In Linux guests under QEMU's TCG emulator.
    pub const TCG: &str = "emulated (QEMU TCG)";
}

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// Channel or floor: `shm-poll`, `shm-irq`, `tcp-loopback`, `host`.
    pub channel: String,
    /// Where it ran (see [`env`]).
    pub environment: String,
    /// What was measured, e.g. `cache-line ping-pong`, `ping-pong`.
    pub what: String,
    /// The figure.
    #[serde(flatten)]
    pub data: Data,
}

/// Ends the `what` of a transfer whose receiver only counted the bytes
/// (every suite that measures one both ways names it so).
pub const UNCHECKED: &str = ", not checked";

impl Record {
    /// Whether the record says its bytes were checked and some were wrong
    /// (or missing). Transfers that by design only count their bytes (TCP
    /// over loopback, the ring stream and pio descriptor mode measured
    /// without the receiver's compare) carry `verified: false` without being
    /// wrong (their guests still fail on a short count).
    pub fn bad_data(&self) -> bool {
        match self.data {
            Data::Latency { verified, .. } => !verified,
            Data::Throughput { verified, .. } => {
                !verified && self.channel != "tcp-loopback" && !self.what.ends_with(UNCHECKED)
            }
            _ => false,
        }
    }
}

/// The figure of a record.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Data {
    /// Round-trip latency of one message size.
    Latency {
        #[serde(flatten)]
        stats: Latency,
        /// Whether every echoed byte was checked and right (host floors
        /// that move no payload: true).
        verified: bool,
    },
    /// Round-trip latency measured in blocks interleaved with its floor
    /// (`ivc_floors::interleaved`), with the per-block-pair ratios.
    Interleaved {
        #[serde(flatten)]
        stats: Latency,
        /// Per repetition: this block's median / the floor block's median.
        ratio: Spread,
    },
    /// One-way throughput of one transfer.
    Throughput {
        #[serde(flatten)]
        stats: Throughput,
        /// Bytes asked for (more than `bytes` when a time budget cut it).
        requested: u64,
        /// Whether the receiver checked every byte and found it right.
        verified: bool,
    },
    /// The cost of layers under a transfer, inside a guest.
    Calib {
        /// The guest's clock.
        clock: String,
        /// A null system call (getppid).
        syscall_ns: u64,
        /// A non-blocking read of the empty channel.
        empty_read_ns: u64,
        /// memcpy bandwidth in the guest, 64 KiB blocks.
        memcpy_mib_s: f64,
    },
}

/// Whether a suite ran.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Status {
    /// It ran (its records may still show failed verification).
    Ran,
    /// It cannot run on this host or in this tree yet; the reason says why.
    Skipped(String),
    /// It tried and failed; the reason says how.
    Failed(String),
}

/// A suite's result.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    /// The suite's name.
    pub suite: String,
    /// Where it runs.
    pub environment: String,
    /// Ran, skipped or failed.
    #[serde(flatten)]
    pub status: Status,
    /// Its figures.
    pub records: Vec<Record>,
    /// Extra facts worth keeping (driver counters, clock sources, ...).
    pub notes: Vec<String>,
    /// Wall-clock seconds the suite took.
    pub seconds: f64,
}

/// One `IVC_BENCH_JSON` line as `ivc-bench` prints it.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum GuestLine {
    /// `ivc-bench latency`.
    Latency {
        /// `<channel>#<n>` for the interleaved blocks (see `guests.rs`).
        #[serde(default)]
        label: String,
        wait: String,
        /// `syscall` or `mmap` (lines from before `--path` have none).
        #[serde(default = "syscall_path")]
        path: String,
        size: u64,
        iters: u64,
        min_ns: f64,
        median_ns: f64,
        p99_ns: f64,
        max_ns: f64,
        mean_ns: f64,
        verified: bool,
    },
    /// `ivc-bench send`.
    Throughput {
        wait: String,
        #[serde(default = "syscall_path")]
        path: String,
        packet: u64,
        requested: u64,
        bytes: u64,
        ns: u64,
        mib_s: f64,
        verified: bool,
    },
    /// `ivc-bench calib` (or `latency --calib`).
    Calib {
        #[serde(default = "syscall_path")]
        path: String,
        clock: String,
        syscall_ns: u64,
        empty_read_ns: u64,
        memcpy_mib_s: f64,
    },
}

/// What an interleaved block's round trip is called: this, its number, a
/// colon and the usual name (so prefix lookups of "ping-pong" never see it).
pub const BLOCK_PREFIX: &str = "interleaved block ";

fn syscall_path() -> String {
    "syscall".into()
}

/// The channel name of a record measured on `path` of `channel`: the
/// mapped path (`ivc-bench --path mmap`) is a channel of its own,
/// `<channel>/mmap`, so every lookup by channel keeps the two apart and the
/// summary shows them side by side.
pub fn path_channel(channel: &str, path: &str) -> String {
    if path == "mmap" {
        format!("{channel}/mmap")
    } else {
        channel.to_string()
    }
}

/// Every result line in a guest's serial output; lines that do not parse are
/// returned as errors (with the line) so a format drift is never silent.
pub fn guest_lines(serial: &str) -> (Vec<GuestLine>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for line in serial.lines() {
        let Some(json) = line.trim().strip_prefix(GUEST_JSON_PREFIX) else {
            continue;
        };
        match serde_json::from_str::<GuestLine>(json) {
            Ok(l) => ok.push(l),
            Err(e) => bad.push(format!("{e}: {line}")),
        }
    }
    (ok, bad)
}

impl GuestLine {
    /// The record for `channel`.
    pub fn into_record(self, channel: &str) -> Record {
        let channel = match &self {
            GuestLine::Latency { path, .. }
            | GuestLine::Throughput { path, .. }
            | GuestLine::Calib { path, .. } => path_channel(channel, path),
        };
        let (what, data) = match self {
            GuestLine::Latency {
                label,
                path: _,
                wait,
                size,
                iters,
                min_ns,
                median_ns,
                p99_ns,
                max_ns,
                mean_ns,
                verified,
            } => (
                match label.rsplit_once('#') {
                    Some((_, n)) if n.parse::<u32>().is_ok() => {
                        format!("{BLOCK_PREFIX}{n}: ping-pong ({wait} wait)")
                    }
                    _ => format!("ping-pong ({wait} wait)"),
                },
                Data::Latency {
                    stats: Latency {
                        size,
                        iters,
                        batch: 1,
                        min_ns,
                        median_ns,
                        p99_ns,
                        max_ns,
                        mean_ns,
                    },
                    verified,
                },
            ),
            GuestLine::Throughput {
                path: _,
                wait,
                packet,
                requested,
                bytes,
                ns,
                mib_s,
                verified,
            } => (
                format!("one-way transfer ({wait} wait)"),
                Data::Throughput {
                    stats: Throughput {
                        packet,
                        bytes,
                        ns,
                        mib_s,
                    },
                    requested,
                    verified,
                },
            ),
            GuestLine::Calib {
                path: _,
                clock,
                syscall_ns,
                empty_read_ns,
                memcpy_mib_s,
            } => (
                "guest layer costs".to_string(),
                Data::Calib {
                    clock,
                    syscall_ns,
                    empty_read_ns,
                    memcpy_mib_s,
                },
            ),
        };
        Record {
            channel,
            environment: env::TCG.to_string(),
            what,
            data,
        }
    }
}

/// Records for the runner's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{env, Data, Record};
    use ivc_floors::{Latency, Throughput};

    /// A latency record whose every statistic is `median` ns (10 round
    /// trips, verified); on the host for channel "host", else emulated.
    pub(crate) fn latency(channel: &str, what: &str, size: u64, median: f64) -> Record {
        Record {
            channel: channel.into(),
            environment: if channel == "host" {
                env::HOST
            } else {
                env::TCG
            }
            .into(),
            what: what.into(),
            data: Data::Latency {
                stats: Latency {
                    size,
                    iters: 10,
                    batch: 1,
                    min_ns: median,
                    median_ns: median,
                    p99_ns: median,
                    max_ns: median,
                    mean_ns: median,
                },
                verified: true,
            },
        }
    }

    /// 8 KiB moved in 4 KiB packets in 1 us, on the host.
    pub(crate) fn transfer(channel: &str, what: &str, verified: bool) -> Record {
        Record {
            channel: channel.into(),
            environment: env::HOST.into(),
            what: what.into(),
            data: Data::Throughput {
                stats: Throughput {
                    packet: 4096,
                    bytes: 8192,
                    ns: 1000,
                    mib_s: 7812.5,
                },
                requested: 8192,
                verified,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::transfer;
    use super::*;

    #[test]
    fn parses_every_kind_and_reports_bad_lines() {
        let serial = "\
[    1.0] ivc: bound\n\
IVC_BENCH_JSON {\"kind\":\"latency\",\"label\":\"x\",\"wait\":\"spin\",\"size\":64,\"iters\":10,\"min_ns\":1,\"median_ns\":2,\"p99_ns\":3,\"max_ns\":4,\"mean_ns\":2.5,\"verified\":true}\n\
IVC_BENCH_JSON {\"kind\":\"throughput\",\"label\":\"\",\"wait\":\"block\",\"packet\":1,\"requested\":1024,\"bytes\":1024,\"ns\":5000,\"mib_s\":0.2,\"capped\":false,\"verified\":true}\n\
  IVC_BENCH_JSON {\"kind\":\"calib\",\"label\":\"\",\"clock\":\"TSC 2600.0 MHz\",\"syscall_ns\":900,\"empty_read_ns\":1500,\"memcpy_mib_s\":800.5}\r\n\
IVC_BENCH_JSON {\"kind\":\"latency\",\"size\":\n\
IVC_BENCH_JSON {\"kind\":\"future\"}\n";
        let (ok, bad) = guest_lines(serial);
        assert_eq!(ok.len(), 3);
        assert_eq!(bad.len(), 2);
        let r = ok.into_iter().next().map(|l| l.into_record("shm-poll"));
        let r = r.expect("one record");
        assert_eq!(r.channel, "shm-poll");
        assert_eq!(r.what, "ping-pong (spin wait)");
        assert!(
            matches!(r.data, Data::Latency { ref stats, verified: true } if stats.median_ns == 2.0)
        );
    }

    #[test]
    fn the_mapped_path_is_a_channel_of_its_own() {
        let serial = "IVC_BENCH_JSON {\"kind\":\"latency\",\"wait\":\"spin\",\"path\":\"mmap\",\"size\":64,\"iters\":3,\"min_ns\":1,\"median_ns\":2,\"p99_ns\":3,\"max_ns\":4,\"mean_ns\":2.0,\"verified\":true}\n";
        let (ok, bad) = guest_lines(serial);
        assert!(bad.is_empty(), "{bad:?}");
        let r = ok.into_iter().next().map(|l| l.into_record("shm-poll"));
        let r = r.expect("one record");
        assert_eq!(
            (r.channel.as_str(), r.what.as_str()),
            ("shm-poll/mmap", "ping-pong (spin wait)")
        );
        assert_eq!(path_channel("shm-irq", "syscall"), "shm-irq");
        // An interleaved block: its number in `what`, away from "ping-pong".
        let block = serial.replace("\"wait\"", "\"label\":\"shm-poll#2\",\"wait\"");
        let (ok, _) = guest_lines(&block);
        let r = ok.into_iter().next().map(|l| l.into_record("shm-poll"));
        let r = r.expect("one record");
        assert_eq!(r.what, "interleaved block 2: ping-pong (spin wait)");
    }

    #[test]
    fn parses_the_lines_the_guest_tool_prints() {
        use ivc_tools::result_line::{ResultLine, PREFIX};
        assert_eq!(PREFIX, GUEST_JSON_PREFIX);
        let lines = [
            ResultLine::Latency {
                label: "shm-poll",
                wait: "spin",
                path: "syscall",
                size: 64,
                iters: 10,
                min_ns: 1,
                median_ns: 2,
                p99_ns: 3,
                max_ns: 4,
                mean_ns: 2.5,
                verified: true,
            },
            ResultLine::Throughput {
                label: "",
                wait: "block",
                path: "mmap",
                packet: 4096,
                requested: 8192,
                bytes: 4096,
                ns: 1000,
                mib_s: 3906.25,
                capped: true,
                verified: false,
            },
            ResultLine::Calib {
                label: "",
                path: "syscall",
                clock: "TSC 2600.0 MHz",
                syscall_ns: 900,
                empty_read_ns: 1500,
                memcpy_mib_s: 800.5,
            },
        ];
        let serial: String = lines
            .iter()
            .map(|l| l.render().expect("render") + "\n")
            .collect();
        let (ok, bad) = guest_lines(&serial);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            ok,
            vec![
                GuestLine::Latency {
                    label: "shm-poll".into(),
                    wait: "spin".into(),
                    path: "syscall".into(),
                    size: 64,
                    iters: 10,
                    min_ns: 1.0,
                    median_ns: 2.0,
                    p99_ns: 3.0,
                    max_ns: 4.0,
                    mean_ns: 2.5,
                    verified: true,
                },
                GuestLine::Throughput {
                    wait: "block".into(),
                    path: "mmap".into(),
                    packet: 4096,
                    requested: 8192,
                    bytes: 4096,
                    ns: 1000,
                    mib_s: 3906.25,
                    verified: false,
                },
                GuestLine::Calib {
                    path: "syscall".into(),
                    clock: "TSC 2600.0 MHz".into(),
                    syscall_ns: 900,
                    empty_read_ns: 1500,
                    memcpy_mib_s: 800.5,
                },
            ]
        );
    }

    #[test]
    fn unverified_is_bad_data_unless_the_transfer_only_counts() {
        let stream = crate::vmm_shm::what::STREAM;
        let counted = crate::vmm_shm::what::STREAM_UNCHECKED;
        assert!(transfer("ivc-vmm shm-poll", stream, false).bad_data());
        assert!(!transfer("ivc-vmm shm-poll", stream, true).bad_data());
        assert!(!transfer("ivc-vmm shm-poll", counted, false).bad_data());
        assert!(!transfer("tcp-loopback", "one-way transfer", false).bad_data());
        assert!(transfer("shm-poll", "one-way transfer", false).bad_data());
    }

    #[test]
    fn records_serialize_flat_with_a_kind() {
        let r = transfer("host", "memcpy", true);
        let v: serde_json::Value = serde_json::to_value(&r).expect("serialize");
        assert_eq!(v["kind"], "throughput");
        assert_eq!(v["packet"], 4096);
        assert_eq!(v["channel"], "host");
        let s = Status::Skipped("why".into());
        let v = serde_json::to_value(&s).expect("serialize");
        assert_eq!(v["status"], "skipped");
        assert_eq!(v["reason"], "why");
    }
}
