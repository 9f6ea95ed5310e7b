//! The harness's process handling, tested against a stand-in for QEMU: a shell
//! script that runs the guest command (decoded from `-append ... ivc_cmd=`) on
//! the host and prints `IVC_EXIT=<status>` like the guest init does. Fast, and
//! needs no kernel.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use ivc_guest_harness::{run_guests, Guest, GuestArtifacts, GuestSpec, HarnessError, ScratchDir};

const FAKE_QEMU: &str = r#"#!/bin/sh
# Stand-in for qemu-system-x86_64 (see tests/fake_qemu.rs).
echo "fake-qemu pid $$"
for arg in "$@"; do
    [ "$prev" = -append ] && append="$arg"
    prev="$arg"
done
for word in $append; do
    case "$word" in ivc_cmd=*) cmd="$(printf %s "${word#ivc_cmd=}" | base64 -d)" ;; esac
done
echo "fake-qemu: warning: not really QEMU" >&2
sh -c "$cmd"
printf 'IVC_EXIT=%s\r\n' "$?"
"#;

/// A scratch directory holding empty artifacts and the fake QEMU.
struct Fake {
    dir: ScratchDir,
    artifacts: GuestArtifacts,
}

fn fake() -> Fake {
    fake_in(ScratchDir::new().expect("scratch dir"))
}

fn fake_in(dir: ScratchDir) -> Fake {
    fs::write(dir.join("bzImage"), b"").expect("kernel");
    fs::write(dir.join("initramfs.cpio.gz"), b"").expect("initramfs");
    let qemu = dir.join("fake-qemu");
    fs::write(&qemu, FAKE_QEMU).expect("script");
    fs::set_permissions(&qemu, fs::Permissions::from_mode(0o755)).expect("chmod");
    let artifacts = GuestArtifacts::from_dir(dir.path())
        .expect("artifacts")
        .with_qemu(qemu);
    Fake { dir, artifacts }
}

/// Whether `pid` is a live process (zombies count as dead: they only wait
/// for their parent to collect them).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.trim_start().chars().next());
            state != Some('Z')
        }
        Err(_) => false,
    }
}

fn wait_dead(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

fn pid_from(line: &str) -> u32 {
    line.rsplit(' ')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

#[test]
fn exit_status_and_serial_are_collected() {
    let f = fake();
    let outcome = Guest::spawn(&f.artifacts, GuestSpec::new("g", "echo hello; exit 3"))
        .expect("spawn")
        .wait()
        .expect("wait");
    assert_eq!(outcome.exit_status, Some(3));
    assert!(outcome.serial_contains("hello"));
    assert!(
        outcome.serial.lines().any(|l| l == "IVC_EXIT=3"),
        "\\r stripped"
    );
    assert!(!outcome.timed_out);
    assert!(outcome.vm_status.success());
    assert!(outcome.vm_stderr.contains("not really QEMU"));
    let msg = std::panic::catch_unwind(|| outcome.assert_success())
        .expect_err("status 3 is a failure")
        .downcast::<String>()
        .expect("message");
    assert!(msg.contains("status 3") && msg.contains("hello"), "{msg}");
}

#[test]
fn commands_with_quotes_and_newlines_arrive_intact() {
    let f = fake();
    let cmd = "x='a \"b\" c'\nprintf '<%s>\\n' \"$x\"";
    let outcome = Guest::spawn(&f.artifacts, GuestSpec::new("g", cmd))
        .expect("spawn")
        .wait()
        .expect("wait");
    outcome.assert_success();
    assert!(
        outcome.serial_contains(r#"<a "b" c>"#),
        "{}",
        outcome.serial
    );
}

#[test]
fn timeout_kills_the_guest_and_everything_it_started() {
    let f = fake();
    let spec =
        GuestSpec::new("g", "echo sleeper $$; exec sleep 1000").timeout(Duration::from_secs(2));
    let start = Instant::now();
    let mut guest = Guest::spawn(&f.artifacts, spec).expect("spawn");
    let qemu = pid_from(
        &guest
            .wait_for_line("fake-qemu pid", Duration::from_secs(10))
            .expect("started"),
    );
    let sleeper = pid_from(
        &guest
            .wait_for_line("sleeper", Duration::from_secs(10))
            .expect("started"),
    );
    let outcome = guest.wait().expect("wait");
    let took = start.elapsed();
    assert!(outcome.timed_out);
    assert_eq!(outcome.exit_status, None);
    assert!(!outcome.vm_status.success());
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(outcome.serial_contains("sleeper"));
    assert!(!alive(qemu));
    // Not QEMU's own child but in its process group: killed as well.
    assert!(
        wait_dead(sleeper, Duration::from_secs(5)),
        "sleeper {sleeper} survived"
    );
    let msg = std::panic::catch_unwind(|| outcome.assert_success())
        .expect_err("timeout is a failure")
        .downcast::<String>()
        .expect("message");
    assert!(msg.contains("timed out"), "{msg}");
}

#[test]
fn drop_kills_the_guest() {
    let f = fake();
    let mut guest = Guest::spawn(
        &f.artifacts,
        GuestSpec::new("g", "echo sleeper $$; exec sleep 1000"),
    )
    .expect("spawn");
    let qemu = pid_from(
        &guest
            .wait_for_line("fake-qemu pid", Duration::from_secs(10))
            .expect("started"),
    );
    let sleeper = pid_from(
        &guest
            .wait_for_line("sleeper", Duration::from_secs(10))
            .expect("started"),
    );
    assert!(alive(qemu) && alive(sleeper));
    drop(guest);
    assert!(!alive(qemu), "dropped guest's QEMU {qemu} still runs");
    assert!(
        wait_dead(sleeper, Duration::from_secs(5)),
        "sleeper {sleeper} survived"
    );
}

#[test]
fn drop_during_a_panic_kills_the_guest() {
    let f = fake();
    let artifacts = f.artifacts.clone();
    let pid = std::sync::Mutex::new(0);
    let result = std::panic::catch_unwind(|| {
        let mut guest =
            Guest::spawn(&artifacts, GuestSpec::new("g", "exec sleep 1000")).expect("spawn");
        let line = guest
            .wait_for_line("fake-qemu pid", Duration::from_secs(10))
            .expect("started");
        *pid.lock().expect("lock") = pid_from(&line);
        panic!("test failed while the guest ran");
    });
    assert!(result.is_err());
    let qemu = *pid.lock().expect("lock");
    assert!(qemu != 0 && !alive(qemu), "QEMU {qemu} outlived the panic");
}

/// The parent-death signal must follow the process, not the thread that
/// happened to spawn the guest.
#[test]
fn guest_outlives_the_thread_that_spawned_it() {
    let f = fake();
    let artifacts = f.artifacts.clone();
    let mut guest = std::thread::spawn(move || {
        Guest::spawn(
            &artifacts,
            GuestSpec::new("g", "echo up; sleep 3; echo still-here"),
        )
        .expect("spawn")
    })
    .join()
    .expect("spawning thread");
    guest
        .wait_for_line("still-here", Duration::from_secs(20))
        .expect("QEMU died with the thread that spawned it");
    let outcome = guest.wait().expect("wait");
    outcome.assert_success();
}

#[test]
fn kill_then_wait_reports_what_was_collected() {
    let f = fake();
    let mut guest = Guest::spawn(
        &f.artifacts,
        GuestSpec::new("g", "echo up; exec sleep 1000"),
    )
    .expect("spawn");
    guest
        .wait_for_line("up", Duration::from_secs(10))
        .expect("up");
    guest.kill().expect("kill");
    let outcome = guest.wait().expect("wait");
    assert!(!outcome.timed_out);
    assert_eq!(outcome.exit_status, None);
    assert!(outcome.serial_contains("up"));
}

#[test]
fn wait_for_line_moves_forward_through_the_output() {
    let f = fake();
    let mut guest = Guest::spawn(
        &f.artifacts,
        GuestSpec::new("g", "echo tick 1; echo tock; echo tick 2; sleep 1000"),
    )
    .expect("spawn");
    let t = Duration::from_secs(10);
    assert_eq!(guest.wait_for_line("tick", t).expect("first"), "tick 1");
    assert_eq!(guest.wait_for_line("tick", t).expect("second"), "tick 2");
    // A failed wait does not consume lines.
    assert!(guest
        .wait_for_line("never", Duration::from_millis(200))
        .is_err());
    assert!(guest.serial().contains("tock"));
}

#[test]
fn wait_for_line_times_out_with_the_serial_tail() {
    let f = fake();
    let mut guest =
        Guest::spawn(&f.artifacts, GuestSpec::new("g", "echo booted; sleep 1000")).expect("spawn");
    guest
        .wait_for_line("booted", Duration::from_secs(10))
        .expect("booted");
    let start = Instant::now();
    let err = guest
        .wait_for_line("ready", Duration::from_millis(300))
        .expect_err("never printed");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(matches!(err, HarnessError::LineTimeout { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("\"ready\"") && msg.contains("booted"), "{msg}");
}

#[test]
fn wait_for_line_fails_when_the_guest_ends() {
    let f = fake();
    let mut guest =
        Guest::spawn(&f.artifacts, GuestSpec::new("g", "echo bye; exit 1")).expect("spawn");
    let err = guest
        .wait_for_line("ready", Duration::from_secs(30))
        .expect_err("guest ends first");
    assert!(matches!(err, HarnessError::GuestEnded { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("bye") && msg.contains("IVC_EXIT=1"), "{msg}");
    assert!(msg.contains("not really QEMU"), "QEMU stderr quoted: {msg}");
}

#[test]
fn run_guests_runs_them_concurrently_in_order() {
    let f = fake();
    // Each guest waits for the other's file: only a concurrent run finishes.
    let (a, b) = (f.dir.join("a"), f.dir.join("b"));
    let wait_for = |p: &Path| {
        format!(
            "i=0; while [ ! -e {} ]; do i=$((i+1)); [ $i -gt 200 ] && exit 9; sleep 0.05; done",
            p.display()
        )
    };
    let specs = vec![
        GuestSpec::new(
            "a",
            format!("touch {}; {}; exit 4", a.display(), wait_for(&b)),
        ),
        GuestSpec::new(
            "b",
            format!("touch {}; {}; exit 5", b.display(), wait_for(&a)),
        ),
    ];
    let outcomes = run_guests(&f.artifacts, specs).expect("run");
    let summary: Vec<(&str, Option<i32>)> = outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.exit_status))
        .collect();
    assert_eq!(summary, [("a", Some(4)), ("b", Some(5))]);
}

#[test]
fn spawn_errors_are_clear() {
    let f = fake();
    let missing = f
        .artifacts
        .clone()
        .with_qemu("/nonexistent/qemu-system-x86_64");
    let err = Guest::spawn(&missing, GuestSpec::new("g", "true")).expect_err("no binary");
    assert!(matches!(err, HarnessError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/qemu-system-x86_64"));

    let long = GuestSpec::new("g", "x".repeat(3000));
    let err = Guest::spawn(&f.artifacts, long).expect_err("too long");
    assert!(matches!(err, HarnessError::CmdlineTooLong { .. }), "{err}");
}

/// Helper for `qemu_dies_with_the_test_process`, run in a child process:
/// starts a guest and leaves the process without running any destructor.
#[test]
#[ignore = "run by qemu_dies_with_the_test_process in a child process"]
fn helper_spawn_then_exit_abruptly() {
    let Ok(report) = std::env::var("IVC_HARNESS_PIDFILE") else {
        return;
    };
    // Inside the parent's scratch directory, which the parent removes: this
    // process leaves without running destructors.
    let parent_dir = Path::new(&report).parent().expect("pidfile in a dir");
    let f = fake_in(ScratchDir::new_in(parent_dir).expect("scratch dir"));
    let spec = GuestSpec::new("g", "echo sleeper $$; exec sleep 1000");
    let mut guest = Guest::spawn(&f.artifacts, spec).expect("spawn");
    let t = Duration::from_secs(10);
    let qemu = pid_from(&guest.wait_for_line("fake-qemu pid", t).expect("started"));
    let sleeper = pid_from(&guest.wait_for_line("sleeper", t).expect("started"));
    fs::write(report, format!("{qemu} {sleeper}")).expect("report pids");
    // Like a SIGKILL from a CI timeout: no Drop runs.
    std::process::exit(0);
}

#[test]
fn qemu_dies_with_the_test_process() {
    let scratch = ScratchDir::new().expect("scratch");
    let pidfile = scratch.join("pid");
    let helper = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "helper_spawn_then_exit_abruptly"])
        .env("IVC_HARNESS_PIDFILE", &pidfile)
        .output()
        .expect("run helper");
    assert!(helper.status.success(), "helper: {helper:?}");
    let pids = fs::read_to_string(&pidfile).expect("helper reported QEMU's pid");
    let (qemu, sleeper) = pids.split_once(' ').expect("two pids");
    // The parent-death signal reaches QEMU only, not the stand-in's child.
    let _ = std::process::Command::new("kill")
        .args(["-9", sleeper])
        .status();
    let qemu: u32 = qemu.parse().expect("pid");
    assert!(
        wait_dead(qemu, Duration::from_secs(5)),
        "QEMU {qemu} outlived its test process"
    );
}
