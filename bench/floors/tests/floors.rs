//! Every floor runs and produces a plausible record (no timing asserted:
//! the machine is shared and its speed is not what these tests check).

use std::time::Duration;

use ivc_floors::{cacheline, cpu_pair, eventfd, kvm_exit, memcpy, syscall, tcp};

const SHORT: Duration = Duration::from_millis(30);

#[test]
fn cacheline_ping_pong() {
    let l = cacheline::measure(cpu_pair(), SHORT, 5).expect("cache-line floor");
    assert!(l.iters >= 5 * cacheline::BATCH);
    assert!(l.min_ns <= l.median_ns && l.median_ns <= l.p99_ns && l.p99_ns <= l.max_ns);
    eprintln!("cache line: {l:?}");
}

#[test]
fn eventfd_ping_pong() {
    let l = eventfd::measure(cpu_pair(), SHORT, 5).expect("eventfd floor");
    assert!(l.iters >= 5);
    eprintln!("eventfd: {l:?}");
}

#[test]
fn memcpy_bandwidth() {
    let t = memcpy::measure(1 << 20, SHORT);
    assert!(t.bytes >= 1 << 20 && t.mib_s > 0.0);
    eprintln!("memcpy: {t:?}");
}

#[test]
fn tcp_loopback() {
    let l = tcp::latency(cpu_pair(), &[1, 64 * 1024], SHORT, 3).expect("tcp latency");
    assert_eq!(l.len(), 2);
    assert_eq!(l[1].size, 64 * 1024);
    let t = tcp::throughput(cpu_pair(), &[1, 4096], 1 << 20, SHORT).expect("tcp throughput");
    assert_eq!(t.len(), 2);
    assert!(t.iter().all(|t| t.bytes > 0));
    eprintln!("tcp: {l:?} {t:?}");
}

#[test]
fn kvm_exit_round_trip_or_a_reason() {
    match kvm_exit::measure(SHORT, 5) {
        Ok((l, mode)) => {
            assert!(l.iters >= 5 * kvm_exit::BATCH);
            eprintln!(
                "KVM_EXIT_IO ({mode:?}): {l:?}; kvm is {}",
                kvm_exit::describe_kvm()
            );
        }
        // Only a host without a usable /dev/kvm may go without the floor,
        // and it must say so (and not where IVC_REQUIRE_KVM=1 demands KVM).
        Err(why) => {
            let kvm = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm");
            assert!(
                kvm.is_err() && std::env::var("IVC_REQUIRE_KVM").as_deref() != Ok("1"),
                "KVM_EXIT_IO not measured although /dev/kvm opens: {why}"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped kvm_exit_round_trip_or_a_reason: {why}"
            );
        }
    }
}

#[test]
fn null_syscall() {
    let l = syscall::measure(SHORT, 3);
    assert!(l.iters >= 3 * syscall::BATCH && l.min_ns > 0.0);
}
