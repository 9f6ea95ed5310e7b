//! The machine-readable result lines `ivc-bench` prints: `IVC_BENCH_JSON`
//! followed by one JSON object, which a host collects from the serial console
//! (the runner's `record::guest_lines` parses them).

use serde::Serialize;

/// Starts every result line.
pub const PREFIX: &str = "IVC_BENCH_JSON ";

/// One result line; `kind` names the variant.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ResultLine<'a> {
    /// Round-trip latency of one message size (`ivc-bench latency`).
    Latency {
        /// Free-form label given on the command line.
        label: &'a str,
        /// How the tool waited for data (`spin` or `block`).
        wait: &'a str,
        /// How bytes moved: `syscall` (read/write) or `mmap` (the mapped
        /// ring run from user space).
        path: &'a str,
        /// Message size in bytes.
        size: u64,
        /// Round trips timed.
        iters: u64,
        /// Fastest round trip.
        min_ns: u64,
        /// Median round trip.
        median_ns: u64,
        /// 99th percentile round trip.
        p99_ns: u64,
        /// Slowest round trip.
        max_ns: u64,
        /// Mean round trip (non-finite: `null`).
        mean_ns: f64,
        /// Whether every echoed byte was checked and right.
        verified: bool,
    },
    /// One one-way transfer (`ivc-bench send`).
    Throughput {
        /// Free-form label given on the command line.
        label: &'a str,
        /// How the tool waited for room (`spin` or `block`).
        wait: &'a str,
        /// `syscall` or `mmap`, as for latency.
        path: &'a str,
        /// Bytes per write call.
        packet: u64,
        /// Bytes asked for.
        requested: u64,
        /// Bytes moved (fewer than `requested` when the time budget cut it).
        bytes: u64,
        /// Time taken.
        ns: u64,
        /// MiB/s (non-finite: `null`).
        mib_s: f64,
        /// Whether the time budget cut the transfer short.
        capped: bool,
        /// Whether the receiver checked every byte and found it right.
        verified: bool,
    },
    /// The cost of the layers under a transfer (`ivc-bench calib`).
    Calib {
        /// Free-form label given on the command line.
        label: &'a str,
        /// `syscall` or `mmap`: what `empty_read_ns` measured (a
        /// non-blocking `read(2)`, or a look at the mapped ring).
        path: &'a str,
        /// The clock the figures were taken with.
        clock: &'a str,
        /// A null system call.
        syscall_ns: u64,
        /// A non-blocking read of the empty channel.
        empty_read_ns: u64,
        /// memcpy bandwidth, 64 KiB blocks (non-finite: `null`).
        memcpy_mib_s: f64,
    },
}

impl ResultLine<'_> {
    /// The whole line, prefix included, without a line break. serde_json
    /// writes non-finite numbers as `null` and escapes control characters, so
    /// a label never breaks the line in two.
    pub fn render(&self) -> Result<String, String> {
        let json = serde_json::to_string(self).map_err(|e| format!("result line: {e}"))?;
        Ok(format!("{PREFIX}{json}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_kind_first_and_escape_and_null_what_json_cannot_hold() {
        let l = ResultLine::Latency {
            label: "lat\"ency\n",
            wait: "spin",
            path: "mmap",
            size: 64,
            iters: 10,
            min_ns: 1,
            median_ns: 2,
            p99_ns: 3,
            max_ns: 4,
            mean_ns: f64::NAN,
            verified: true,
        };
        assert_eq!(
            l.render().as_deref(),
            Ok(
                r#"IVC_BENCH_JSON {"kind":"latency","label":"lat\"ency\n","wait":"spin","path":"mmap","size":64,"iters":10,"min_ns":1,"median_ns":2,"p99_ns":3,"max_ns":4,"mean_ns":null,"verified":true}"#
            )
        );
        let t = ResultLine::Throughput {
            label: "",
            wait: "block",
            path: "syscall",
            packet: 1,
            requested: 1024,
            bytes: 1024,
            ns: 5000,
            mib_s: 0.2,
            capped: false,
            verified: true,
        };
        assert_eq!(
            t.render().as_deref(),
            Ok(
                r#"IVC_BENCH_JSON {"kind":"throughput","label":"","wait":"block","path":"syscall","packet":1,"requested":1024,"bytes":1024,"ns":5000,"mib_s":0.2,"capped":false,"verified":true}"#
            )
        );
        let c = ResultLine::Calib {
            label: "x",
            path: "syscall",
            clock: "TSC 2600.0 MHz",
            syscall_ns: 900,
            empty_read_ns: 1500,
            memcpy_mib_s: 800.5,
        };
        assert_eq!(
            c.render().as_deref(),
            Ok(
                r#"IVC_BENCH_JSON {"kind":"calib","label":"x","path":"syscall","clock":"TSC 2600.0 MHz","syscall_ns":900,"empty_read_ns":1500,"memcpy_mib_s":800.5}"#
            )
        );
    }
}
