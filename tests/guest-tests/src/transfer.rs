//! Transfer plans: which byte streams two guests exchange, and the scripts
//! that make each guest play its part with `ivc-xfer`.
//!
//! Every transfer opens the device, moves the stream, and closes it, so a
//! plan of several transfers also exercises close, end of file and a new
//! connection between each of them.

/// Who sends in a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Guest A sends, guest B receives.
    AtoB,
    /// Guest B sends, guest A receives.
    BtoA,
    /// Both send and receive at once.
    Duplex,
}

/// One transfer of `bytes` bytes in `chunk`-byte calls.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    /// Total bytes per direction.
    pub bytes: u64,
    /// Bytes per read()/write() call.
    pub chunk: u64,
    /// Direction(s).
    pub flow: Flow,
}

impl Transfer {
    /// Shorthand constructor.
    pub const fn new(bytes: u64, chunk: u64, flow: Flow) -> Self {
        Self { bytes, chunk, flow }
    }
}

/// Which end of a plan a guest plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Guest A.
    A,
    /// Guest B.
    B,
}

/// Seed of the stream `side` sends in transfer number `i` (distinct for
/// every stream, so a byte from the wrong transfer cannot pass).
pub fn seed(i: usize, side: Side) -> u64 {
    1000 + 2 * i as u64 + u64::from(side == Side::B)
}

/// The shell commands that make `side` play every transfer of `plan` on
/// `dev`, in order. Each `ivc-xfer` prints its summary line; the script stops
/// at the first failure with that command's status.
pub fn script(plan: &[Transfer], side: Side, dev: &str) -> String {
    script_with(plan, side, dev, "")
}

/// [`script`] with `extra` appended to every `ivc-xfer` command of this
/// side (e.g. `" --mmap"`: this side uses the mapped ring).
pub fn script_with(plan: &[Transfer], side: Side, dev: &str, extra: &str) -> String {
    let mut s = String::new();
    let other = match side {
        Side::A => Side::B,
        Side::B => Side::A,
    };
    for (i, t) in plan.iter().enumerate() {
        let (b, c) = (t.bytes, t.chunk);
        let me = seed(i, side);
        let them = seed(i, other);
        let sends = matches!(
            (t.flow, side),
            (Flow::AtoB, Side::A) | (Flow::BtoA, Side::B)
        );
        let cmd = match t.flow {
            Flow::Duplex => format!(
                "ivc-xfer duplex {dev} --bytes {b} --chunk {c} --seed {me} --rx-seed {them}"
            ),
            _ if sends => format!("ivc-xfer send {dev} --bytes {b} --chunk {c} --seed {me}"),
            _ => format!("ivc-xfer recv {dev} --bytes {b} --chunk {c} --seed {them} --expect-eof"),
        };
        s.push_str(&format!(
            "echo IVC_XFER_START={i}\n{cmd}{extra} || exit $?\n"
        ));
    }
    s
}

/// One `ivc-xfer:` summary line.
#[derive(Clone, Debug, PartialEq)]
pub struct XferLine {
    /// `sent` or `received`.
    pub dir: String,
    /// Byte count.
    pub bytes: u64,
    /// FNV-1a of the bytes.
    pub fnv: String,
    /// MiB/s as printed.
    pub mib_s: f64,
}

/// Every `ivc-xfer:` summary line in a serial log, in order.
pub fn xfer_lines(serial: &str) -> Vec<XferLine> {
    serial
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("ivc-xfer: ")?;
            let mut f = rest.split_whitespace();
            let dir = f.next()?.to_string();
            let bytes = f.next()?.parse().ok()?;
            let _ = f.next()?; // "bytes"
            let fnv = f.next()?.strip_prefix("fnv64=")?.to_string();
            let mib_s = rest
                .rsplit_once('(')
                .and_then(|(_, r)| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            Some(XferLine {
                dir,
                bytes,
                fnv,
                mib_s,
            })
        })
        .collect()
}

/// Asserts that every stream one side sent arrived at the other with the
/// same length and checksum.
pub fn assert_streams_match(
    a: &ivc_guest_harness::GuestOutcome,
    b: &ivc_guest_harness::GuestOutcome,
    plan: &[Transfer],
) {
    a.assert_success();
    b.assert_success();
    for o in [a, b] {
        assert!(
            o.kernel_errors().is_empty(),
            "kernel trouble in {}:\n{}",
            o.name,
            o.report()
        );
    }
    let (la, lb) = (xfer_lines(&a.serial), xfer_lines(&b.serial));
    let expected: usize = plan
        .iter()
        .map(|t| if t.flow == Flow::Duplex { 2 } else { 1 })
        .sum();
    assert_eq!(la.len(), expected, "summary lines of A:\n{}", a.report());
    assert_eq!(lb.len(), expected, "summary lines of B:\n{}", b.report());
    let sent = |l: &[XferLine]| {
        l.iter()
            .filter(|x| x.dir == "sent")
            .map(|x| (x.bytes, x.fnv.clone()))
            .collect::<Vec<_>>()
    };
    let received = |l: &[XferLine]| {
        l.iter()
            .filter(|x| x.dir == "received")
            .map(|x| (x.bytes, x.fnv.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sent(&la),
        received(&lb),
        "A's streams differ from what B received"
    );
    assert_eq!(
        sent(&lb),
        received(&la),
        "B's streams differ from what A received"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_pair_up() {
        let plan = [
            Transfer::new(4096, 1, Flow::AtoB),
            Transfer::new(64, 8, Flow::Duplex),
        ];
        let a = script(&plan, Side::A, "/dev/ivc0");
        let b = script(&plan, Side::B, "/dev/ivc0");
        assert!(a.contains("ivc-xfer send /dev/ivc0 --bytes 4096 --chunk 1 --seed 1000"));
        assert!(
            b.contains("ivc-xfer recv /dev/ivc0 --bytes 4096 --chunk 1 --seed 1000 --expect-eof")
        );
        assert!(a.contains("duplex /dev/ivc0 --bytes 64 --chunk 8 --seed 1002 --rx-seed 1003"));
        assert!(b.contains("duplex /dev/ivc0 --bytes 64 --chunk 8 --seed 1003 --rx-seed 1002"));
    }

    #[test]
    fn parses_summaries() {
        let l = xfer_lines("x\nivc-xfer: sent 4096 bytes fnv64=00ff in 0.010 s (0.39 MiB/s)\n");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].dir, "sent");
        assert_eq!(l[0].bytes, 4096);
        assert_eq!(l[0].fnv, "00ff");
        assert!((l[0].mib_s - 0.39).abs() < 1e-9);
    }
}
