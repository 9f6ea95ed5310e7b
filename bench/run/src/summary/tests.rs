//! The summary's tests: rows against the right floors, per section.

use super::format::{fmt_bytes, fmt_ns, fmt_rate};
use super::nested::rows as nested_rows;
use super::*;
use crate::floors::{what, MEMCPY_REFERENCE};
use crate::record::fixtures::latency as lat;
use crate::record::{env, Data, Record};
use crate::vmm_devices::DUPLEX;
use crate::vmm_shm;
use ivc_floors::Throughput;

fn tput(channel: &str, packet: u64, requested: u64, bytes: u64, ns: u64) -> Record {
    Record {
        channel: channel.into(),
        environment: env::TCG.into(),
        what: "one-way transfer".into(),
        data: Data::Throughput {
            stats: Throughput {
                packet,
                bytes,
                ns,
                mib_s: bytes as f64 / (ns as f64 / 1e9) / 1048576.0,
            },
            requested,
            verified: true,
        },
    }
}

fn report(suite: &str, records: Vec<Record>, status: Status) -> SuiteReport {
    SuiteReport {
        suite: suite.into(),
        environment: "x".into(),
        status,
        records,
        notes: vec![],
        seconds: 0.0,
    }
}

#[test]
fn ratios_against_the_right_floors() {
    let host = report(
        "floors",
        vec![
            lat("host", what::CACHELINE, 64, 100.0),
            lat("host", what::EVENTFD, 8, 10_000.0),
            Record {
                channel: "host".into(),
                environment: env::HOST.into(),
                what: what::MEMCPY.into(),
                data: Data::Throughput {
                    stats: Throughput {
                        packet: MEMCPY_REFERENCE,
                        bytes: 1 << 30,
                        ns: 1_000_000_000,
                        mib_s: 1024.0,
                    },
                    requested: 1 << 30,
                    verified: true,
                },
            },
        ],
        Status::Ran,
    );
    let poll = report(
        "shm-poll",
        vec![
            lat("shm-poll", "ping-pong (spin wait)", 64, 450.0),
            tput("shm-poll", 65536, 1 << 30, 512 << 20, 1_000_000_000),
            tput("shm-poll", 65536, 2 << 20, 2 << 20, 10_000_000),
            tput("shm-poll", 1, 1024, 1024, 5_000_000),
            // The mapped path of the same channel, same run.
            lat("shm-poll/mmap", "ping-pong (spin wait)", 64, 150.0),
            // Interleaved blocks: ratios 2, 4 and 3.
            lat(
                "shm-poll",
                "interleaved block 1: ping-pong (spin wait)",
                64,
                400.0,
            ),
            lat(
                "shm-poll/mmap",
                "interleaved block 1: ping-pong (spin wait)",
                64,
                200.0,
            ),
            lat(
                "shm-poll",
                "interleaved block 2: ping-pong (spin wait)",
                64,
                800.0,
            ),
            lat(
                "shm-poll/mmap",
                "interleaved block 2: ping-pong (spin wait)",
                64,
                200.0,
            ),
            lat(
                "shm-poll",
                "interleaved block 3: ping-pong (spin wait)",
                64,
                600.0,
            ),
            lat(
                "shm-poll/mmap",
                "interleaved block 3: ping-pong (spin wait)",
                64,
                200.0,
            ),
            tput("shm-poll/mmap", 65536, 1 << 30, 1 << 30, 1_000_000_000),
        ],
        Status::Ran,
    );
    let irq = report(
        "shm-irq",
        vec![lat("shm-irq", "ping-pong (block wait)", 64, 25_000.0)],
        Status::Ran,
    );
    let skipped = report("vmm-devices", vec![], Status::Skipped("not yet".into()));
    let rows = rows(&[host, poll, irq, skipped]);
    let find = |c: &str, w: &str| {
        rows.iter()
            .find(|r| r.channel == c && r.what.starts_with(w))
            .cloned()
            .unwrap_or_else(|| panic!("no row {c} {w}: {rows:?}"))
    };
    assert_eq!(find("shm-poll", "64 B round trip").ratio, "4.5x");
    assert_eq!(find("shm-irq", "64 B round trip").ratio, "2.5x");
    // The mapped path: its own rows, and its speed-up over read/write.
    assert_eq!(
        find("shm-poll/mmap", "64 B round trip (median)").ratio,
        "1.5x"
    );
    let x = find("shm-poll/mmap", "64 B round trip, read/write path / mapped");
    assert_eq!(
        (x.figure.as_str(), x.ratio.as_str()),
        ("3.0x", "target 3x met")
    );
    assert_eq!(find("shm-poll/mmap", "throughput, 64 KiB").ratio, "100.0%");
    let b = find(
        "shm-poll/mmap",
        "64 B round trip, read/write / mapped, 3 interleaved",
    );
    assert_eq!(
        (b.figure.as_str(), b.floor.as_str(), b.ratio.as_str()),
        ("3.0x", "pairs 2.0x..4.0x", "target 3x met")
    );
    // The blocks do not stand in for the headline figures.
    assert_eq!(
        find("shm-poll", "64 B round trip (median)").figure,
        "450 ns"
    );
    assert_eq!(find("shm-poll", "throughput, 64 KiB").ratio, "50.0%");
    let t = find("shm-poll", "throughput, 64 KiB");
    assert_eq!(t.ratio, "50.0%");
    assert!(t.what.contains("512.0 MiB moved"), "{}", t.what);
    let small = find("shm-poll", "1 KiB in 1 B");
    assert_eq!(
        (small.figure.as_str(), small.ratio.as_str()),
        ("5.00 ms", "met")
    );
    assert_eq!(find("vmm-devices", "not run").ratio, "not yet");
    let text = table(&rows);
    assert!(text.contains("shm-poll (TCG)"));
    assert!(text.contains("not run vmm-devices: not yet"));
}

#[test]
fn device_rows() {
    let mut poll = tput("ivc-vmm shm-poll", 4096, 64 << 20, 64 << 20, 500_000_000);
    poll.what = format!("chan-duplex: 67108864 bytes {DUPLEX}, CPL3");
    poll.environment = "ivc-vmm, bare-metal guests on /dev/kvm: PVM".into();
    let mut db = lat(
        "ivc-vmm shm-irq",
        "doorbell write to MSI-X handler, same VM",
        0,
        300_000.0,
    );
    db.environment = poll.environment.clone();
    let host = report(
        "floors",
        vec![lat("host", what::EVENTFD, 8, 100_000.0)],
        Status::Ran,
    );
    let dev = report("vmm-devices", vec![poll, db], Status::Ran);
    let rows = rows(&[host, dev]);
    let t = rows
        .iter()
        .find(|r| r.channel == "ivc-vmm shm-poll")
        .expect("throughput row");
    assert_eq!(t.figure, "128 MiB/s");
    assert!(t.what.contains("64.0 MiB each way"), "{}", t.what);
    let d = rows
        .iter()
        .find(|r| r.what.starts_with("doorbell"))
        .expect("doorbell row");
    // One way: held against one eventfd hop, half the round trip.
    assert_eq!((d.figure.as_str(), d.ratio.as_str()), ("300.00 us", "6.0x"));
    assert_eq!(d.floor, "eventfd hop 50.00 us");
    assert!(d.what.contains("same VM"), "{}", d.what);
    assert!(table(&rows).contains("ivc-vmm shm-poll (PVM)"));
}

#[test]
fn device_shm_benchmark_rows() {
    let pvm = "ivc-vmm, bare-metal guests on /dev/kvm: PVM";
    let mut ring = lat("ivc-vmm shm-poll", vmm_shm::what::RING_POLL, 64, 400.0);
    let mut line = lat("ivc-vmm shm-poll", vmm_shm::what::LINE, 64, 150.0);
    let mut irq = lat("ivc-vmm shm-irq", vmm_shm::what::RING_IRQ, 64, 120_000.0);
    let mut irq_spin = lat(
        "ivc-vmm shm-irq",
        vmm_shm::what::RING_IRQ_SPIN,
        64,
        200_000.0,
    );
    let mut stream = tput(
        "ivc-vmm shm-poll",
        64 << 10,
        1 << 30,
        1 << 30,
        1_000_000_000,
    );
    stream.what = vmm_shm::what::STREAM.into();
    // Twice as fast when the receiver only counts; not "verified", which
    // must not read as a mismatch.
    let mut counted = tput("ivc-vmm shm-poll", 64 << 10, 1 << 30, 1 << 30, 500_000_000);
    counted.what = vmm_shm::what::STREAM_UNCHECKED.into();
    if let Data::Throughput { verified, .. } = &mut counted.data {
        *verified = false;
    }
    for r in [
        &mut ring,
        &mut line,
        &mut irq,
        &mut irq_spin,
        &mut stream,
        &mut counted,
    ] {
        r.environment = pvm.into();
    }
    let host = report(
        "floors",
        vec![
            lat("host", what::CACHELINE, 64, 100.0),
            lat("host", what::EVENTFD, 8, 40_000.0),
            tput("host", MEMCPY_REFERENCE, 1 << 30, 1 << 30, 100_000_000),
            lat("host", what::RING, 1, 150.0),
            lat("host", what::RING, 64, 250.0),
        ],
        Status::Ran,
    );
    let dev = report(
        "vmm-devices",
        vec![ring, line, irq, irq_spin, stream, counted],
        Status::Ran,
    );
    let rows = rows(&[host, dev]);
    let find = |channel: &str, what: &str| {
        rows.iter()
            .find(|r| r.channel == channel && r.what.starts_with(what))
            .map(|r| (r.figure.as_str(), r.ratio.as_str()))
    };
    // The host ring reference: the 64 B record, not the 1 B one.
    assert_eq!(
        find("host", "reference: ivc ring, 64 B"),
        Some(("250 ns", "2.5x"))
    );
    assert_eq!(
        find("ivc-vmm shm-poll", "64 B round trip (median)"),
        Some(("400 ns", "4.0x"))
    );
    assert_eq!(
        find("ivc-vmm shm-poll", "64 B round trip, flag word"),
        Some(("150 ns", "1.5x"))
    );
    assert_eq!(
        find("ivc-vmm shm-irq", "64 B round trip, waiter halted"),
        Some(("120.00 us", "3.0x"))
    );
    assert_eq!(
        find("ivc-vmm shm-irq", "64 B round trip, waiter spinning"),
        Some(("200.00 us", "5.0x"))
    );
    assert_eq!(
        find("ivc-vmm shm-poll", "throughput, 64 KiB packets ("),
        Some(("1.00 GiB/s", "10.0%"))
    );
    assert_eq!(
        find(
            "ivc-vmm shm-poll",
            "throughput, 64 KiB packets, not checked"
        ),
        Some(("2.00 GiB/s", "20.0%"))
    );
}

#[test]
fn formats() {
    assert_eq!(fmt_ns(120.0), "120 ns");
    assert_eq!(fmt_ns(4_400.0), "4.40 us");
    assert_eq!(fmt_rate(12_588.0), "12.29 GiB/s");
    assert_eq!(fmt_rate(0.5), "0.50 MiB/s");
    assert_eq!(fmt_bytes(512), "512 B");
    assert_eq!(fmt_bytes(43_384_832), "41.4 MiB");
}

#[test]
fn nested_rows_compare_with_the_exit_and_with_tcg() {
    use crate::vmm_linux::EXIT_WHAT;
    let records = vec![
        lat("linux-in-ivc-vmm", EXIT_WHAT, 0, 200_000.0),
        lat(
            "linux-in-ivc-vmm pio",
            "ping-pong (block wait)",
            64,
            2_000_000.0,
        ),
        tput(
            "linux-in-ivc-vmm pio",
            4096,
            64 << 10,
            64 << 10,
            3_200_000_000,
        ),
        lat(
            "linux-in-ivc-vmm shm-poll",
            "ping-pong (spin wait)",
            64,
            9_000.0,
        ),
        lat("shm-poll", "ping-pong (spin wait)", 64, 4_500.0),
        tput(
            "linux-in-ivc-vmm shm-irq",
            65536,
            2 << 20,
            2 << 20,
            100_000_000,
        ),
        tput("shm-irq", 65536, 2 << 20, 2 << 20, 50_000_000),
    ];
    let rows = nested_rows(&records);
    let find = |c: &str, w: &str| {
        rows.iter()
            .find(|r| r.channel == c && r.what.starts_with(w))
            .unwrap_or_else(|| panic!("no row {c} {w}: {rows:?}"))
    };
    assert_eq!(
        find("linux-in-ivc-vmm", "floor: port-I/O exit").figure,
        "200.00 us"
    );
    let pio = find("linux-in-ivc-vmm pio", "64 B round trip");
    assert_eq!(
        (pio.floor.as_str(), pio.ratio.as_str()),
        ("1 exit 200.00 us", "10.0 exits")
    );
    // 64 KiB in 3.2 s = 0.0195 MiB/s; in 200 us that is 4.1 bytes.
    assert_eq!(
        find("linux-in-ivc-vmm pio", "throughput, 4.0 KiB").ratio,
        "4.1 B/exit"
    );
    assert_eq!(
        find("linux-in-ivc-vmm shm-poll", "64 B round trip").ratio,
        "2.0x"
    );
    assert_eq!(
        find("linux-in-ivc-vmm shm-irq", "throughput, 64.0 KiB").ratio,
        "0.5x"
    );
}

#[test]
fn interleaved_blocks_show_their_own_ratios() {
    use ivc_floors::interleaved::Spread;
    let block = |name: &str, median: f64, ratio: f64| Record {
        channel: "host".into(),
        environment: env::HOST.into(),
        what: format!("{}{name}", what::INTERLEAVED),
        data: Data::Interleaved {
            stats: ivc_floors::Latency {
                size: 64,
                iters: 100,
                batch: 1,
                min_ns: median / 2.0,
                median_ns: median,
                p99_ns: median * 2.0,
                max_ns: median * 3.0,
                mean_ns: median,
            },
            ratio: Spread {
                min: ratio - 0.2,
                p10: ratio - 0.1,
                median: ratio,
                p90: ratio + 0.1,
                max: ratio + 0.2,
            },
        },
    };
    let host = report(
        "floors",
        vec![block("floor", 100.0, 1.0), block("ring", 250.0, 2.4)],
        Status::Ran,
    );
    let rows = rows(&[host]);
    let ring = rows
        .iter()
        .find(|r| r.what == "ring, 64 B (interleaved)")
        .expect("ring row");
    // The ratio is the per-repetition one recorded, not 250 / 100.
    assert_eq!(ring.ratio, "2.40x (2.30-2.50)");
    assert_eq!(ring.floor, format!("interleaved floor {}", fmt_ns(100.0)));
    assert_eq!(ring.figure, fmt_ns(250.0));
}
