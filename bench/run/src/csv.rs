//! `results.csv`: every record as one row, for spreadsheets and scripts that
//! would rather not parse JSON.

use crate::record::{Data, SuiteReport};

/// The header row.
pub const HEADER: &str = "suite,channel,environment,what,kind,size_or_packet,iters,min_ns,median_ns,p99_ns,max_ns,mean_ns,requested,bytes,ns,mib_s,verified";

/// A field, quoted when it holds a comma, quote or line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The whole file.
pub fn render(reports: &[SuiteReport]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for rep in reports {
        for r in &rep.records {
            let row = |what: &str, rest: String| {
                let common = [&rep.suite, &r.channel, &r.environment, what]
                    .map(field)
                    .join(",");
                format!("{common},{rest}\n")
            };
            match &r.data {
                Data::Latency { stats: l, verified } => out.push_str(&row(
                    &r.what,
                    format!(
                        "latency,{},{},{},{},{},{},{},,,,,{}",
                        l.size,
                        l.iters,
                        l.min_ns,
                        l.median_ns,
                        l.p99_ns,
                        l.max_ns,
                        l.mean_ns,
                        verified
                    ),
                )),
                Data::Throughput {
                    stats: t,
                    requested,
                    verified,
                } => out.push_str(&row(
                    &r.what,
                    format!(
                        "throughput,{},,,,,,,{},{},{},{},{}",
                        t.packet, requested, t.bytes, t.ns, t.mib_s, verified
                    ),
                )),
                // One row per figure, each in the column it belongs to.
                Data::Calib {
                    syscall_ns,
                    empty_read_ns,
                    memcpy_mib_s,
                    ..
                } => {
                    out.push_str(&row(
                        "guest null system call",
                        format!("calib,,,,{syscall_ns},,,,,,,,"),
                    ));
                    out.push_str(&row(
                        "guest non-blocking read of the empty channel",
                        format!("calib,,,,{empty_read_ns},,,,,,,,"),
                    ));
                    out.push_str(&row(
                        "guest memcpy (64 KiB blocks)",
                        format!("calib,65536,,,,,,,,,,{memcpy_mib_s},"),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{env, fixtures, Record, Status};
    use ivc_floors::Latency;

    #[test]
    fn every_row_has_the_header_columns_and_quoting_works() {
        let lat = Record {
            channel: "shm-poll".into(),
            environment: env::TCG.into(),
            what: "ping-pong (spin wait)".into(),
            data: Data::Latency {
                stats: Latency {
                    size: 64,
                    iters: 10,
                    batch: 1,
                    min_ns: 1.0,
                    median_ns: 2.0,
                    p99_ns: 3.0,
                    max_ns: 4.0,
                    mean_ns: 2.5,
                },
                verified: true,
            },
        };
        let tp = Record {
            environment: "a, \"quoted\" env".into(),
            ..fixtures::transfer("host", "memcpy", true)
        };
        let cal = Record {
            channel: "shm-poll".into(),
            environment: env::TCG.into(),
            what: "guest layer costs".into(),
            data: Data::Calib {
                clock: "TSC".into(),
                syscall_ns: 250,
                empty_read_ns: 750,
                memcpy_mib_s: 3500.0,
            },
        };
        let rep = SuiteReport {
            suite: "s".into(),
            environment: "e".into(),
            status: Status::Ran,
            records: vec![lat, tp, cal],
            notes: vec![],
            seconds: 1.0,
        };
        let text = render(&[rep]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], HEADER);
        assert!(lines[1].starts_with(
            "s,shm-poll,emulated (QEMU TCG),ping-pong (spin wait),latency,64,10,1,2,3,4,2.5,"
        ));
        assert!(lines[2].contains(",\"a, \"\"quoted\"\" env\",memcpy,throughput,4096,"));
        // Columns line up: strip the one quoted field and count commas.
        let columns = HEADER.split(',').count();
        assert_eq!(lines[1].split(',').count(), columns);
        for l in &lines[3..] {
            assert_eq!(l.split(',').count(), columns, "{l}");
        }
        assert!(lines[3].contains("guest null system call,calib,,,,250,"));
        assert!(lines[5].contains(",3500,"));
        let unquoted = lines[2].replace("\"a, \"\"quoted\"\" env\"", "x");
        assert_eq!(unquoted.split(',').count(), columns);
    }
}
