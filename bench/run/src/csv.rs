//! `results.csv`: every record as one row, for spreadsheets and scripts that
//! would rather not parse JSON.

use serde::{Serialize, Serializer};

use ivc_floors::Latency;

use crate::record::{Data, Record, SuiteReport};

/// The header row.
pub const HEADER: &str = "suite,channel,environment,what,kind,size_or_packet,iters,min_ns,median_ns,p99_ns,max_ns,mean_ns,requested,bytes,ns,mib_s,verified";

/// A number as Rust's `Display` writes it (`2` for 2.0, every digit of an
/// integer), as the file always had it; the csv crate's own float format
/// would write `2.0`.
#[derive(Clone, Copy)]
enum Number {
    Int(u64),
    Float(f64),
}

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Number::Int(v) => s.serialize_u64(*v),
            Number::Float(v) => s.collect_str(v),
        }
    }
}

/// One row: the columns of [`HEADER`], in its order; `None` is an empty field.
#[derive(Serialize)]
struct Row<'a> {
    suite: &'a str,
    channel: &'a str,
    environment: &'a str,
    what: &'a str,
    kind: &'static str,
    size_or_packet: Option<u64>,
    iters: Option<u64>,
    min_ns: Option<Number>,
    median_ns: Option<Number>,
    p99_ns: Option<Number>,
    max_ns: Option<Number>,
    mean_ns: Option<Number>,
    requested: Option<u64>,
    bytes: Option<u64>,
    ns: Option<u64>,
    mib_s: Option<Number>,
    verified: Option<bool>,
}

impl<'a> Row<'a> {
    /// A row of `kind` with every figure column empty.
    fn new(rep: &'a SuiteReport, r: &'a Record, what: &'a str, kind: &'static str) -> Self {
        Row {
            suite: &rep.suite,
            channel: &r.channel,
            environment: &r.environment,
            what,
            kind,
            size_or_packet: None,
            iters: None,
            min_ns: None,
            median_ns: None,
            p99_ns: None,
            max_ns: None,
            mean_ns: None,
            requested: None,
            bytes: None,
            ns: None,
            mib_s: None,
            verified: None,
        }
    }
}

/// The row of one latency figure.
fn latency_row<'a>(rep: &'a SuiteReport, r: &'a Record, l: &Latency, verified: bool) -> Row<'a> {
    Row {
        size_or_packet: Some(l.size),
        iters: Some(l.iters),
        min_ns: Some(Number::Float(l.min_ns)),
        median_ns: Some(Number::Float(l.median_ns)),
        p99_ns: Some(Number::Float(l.p99_ns)),
        max_ns: Some(Number::Float(l.max_ns)),
        mean_ns: Some(Number::Float(l.mean_ns)),
        verified: Some(verified),
        ..Row::new(rep, r, &r.what, "latency")
    }
}

/// The rows of one record: one, or for the guest's layer costs one per
/// figure, each in the column it belongs to.
fn rows<'a>(rep: &'a SuiteReport, r: &'a Record) -> Vec<Row<'a>> {
    match &r.data {
        Data::Latency { stats: l, verified } => vec![latency_row(rep, r, l, *verified)],
        // An interleaved block's round trips are checked echoes.
        Data::Interleaved { stats: l, .. } => vec![latency_row(rep, r, l, true)],
        Data::Throughput {
            stats: t,
            requested,
            verified,
        } => vec![Row {
            size_or_packet: Some(t.packet),
            requested: Some(*requested),
            bytes: Some(t.bytes),
            ns: Some(t.ns),
            mib_s: Some(Number::Float(t.mib_s)),
            verified: Some(*verified),
            ..Row::new(rep, r, &r.what, "throughput")
        }],
        Data::Calib {
            syscall_ns,
            empty_read_ns,
            memcpy_mib_s,
            ..
        } => vec![
            Row {
                median_ns: Some(Number::Int(*syscall_ns)),
                ..Row::new(rep, r, "guest null system call", "calib")
            },
            Row {
                median_ns: Some(Number::Int(*empty_read_ns)),
                ..Row::new(
                    rep,
                    r,
                    "guest non-blocking read of the empty channel",
                    "calib",
                )
            },
            Row {
                size_or_packet: Some(64 * 1024),
                mib_s: Some(Number::Float(*memcpy_mib_s)),
                ..Row::new(rep, r, "guest memcpy (64 KiB blocks)", "calib")
            },
        ],
    }
}

/// The whole file (fields quoted only where RFC 4180 needs it).
pub fn render(reports: &[SuiteReport]) -> Result<String, String> {
    let err = |e: ::csv::Error| format!("results.csv: {e}");
    // The header is written by hand so that a run without records still
    // gets one (serde writes it only with the first row).
    let mut w = ::csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(HEADER.split(',')).map_err(err)?;
    for rep in reports {
        for r in &rep.records {
            for row in rows(rep, r) {
                w.serialize(row).map_err(err)?;
            }
        }
    }
    let bytes = w.into_inner().map_err(|e| format!("results.csv: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("results.csv: {e}"))
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
        let text = render(&[rep]).expect("render");
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
