//! The QEMU command line, and starting QEMU so that it can never outlive the
//! test process.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;

use crate::artifacts::GuestArtifacts;
use crate::error::Result;
use crate::spec::GuestSpec;

/// The arguments (without the program) that boot `spec`.
///
/// - `-M pc -accel tcg -cpu max`: the combination checked to expose ivshmem
///   correctly on these hosts (`/dev/kvm` here cannot run Linux userspace).
/// - `-nodefaults -display none`: no VGA, NIC or monitor; after the chipset
///   functions the guest's PCI bus holds exactly the test's devices, in order.
/// - `-no-reboot`: the guest init ends with `reboot -f`, which then ends QEMU
///   (the kernel has no ACPI, so power-off would only halt).
/// - `-smp N,sockets=N`: one core per socket. The guest kernel has no ACPI
///   and finds CPUs in SeaBIOS's MP table, which lists only the first CPU of
///   each package: with QEMU's default topology (N cores in one socket) the
///   guest would see one CPU.
/// - `maxcpus=` at least 2, even for a 1-vCPU guest: with `maxcpus=1` TCG
///   translates guest code for a uniprocessor and drops guest memory barriers
///   (`mfence`) and makes atomic read-modify-writes plain loads and stores.
///   The ivshmem region is shared with another process (the peer's QEMU,
///   or the test), so the channel's store/fence/load wake-up protocol then
///   loses wake-ups and its compare-and-swap is not atomic. A second,
///   never-started possible CPU keeps TCG in its multi-threaded mode; SeaBIOS
///   lists only present CPUs, so the guest still runs on N.
/// - `-serial stdio`: the console reaches the harness through a pipe.
pub fn qemu_args(artifacts: &GuestArtifacts, spec: &GuestSpec) -> Result<Vec<OsString>> {
    spec.validate()?;
    let cmdline = spec.kernel_cmdline()?;
    let mut args: Vec<OsString> = [
        "-M",
        "pc",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-m",
        &spec.memory_mib.to_string(),
        "-smp",
        &format!("{0},sockets={1},maxcpus={1}", spec.cpus, spec.cpus.max(2)),
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push("-kernel".into());
    args.push(artifacts.kernel().into());
    args.push("-initrd".into());
    args.push(artifacts.initramfs().into());
    args.push("-append".into());
    args.push(cmdline.into());
    for (index, device) in spec.devices.iter().enumerate() {
        let device_args = device.qemu_args(index).map_err(|e| spec.invalid(e))?;
        args.extend(device_args.into_iter().map(OsString::from));
    }
    Ok(args)
}

/// Renders a command for a human to paste into a shell (to reproduce a run).
pub(crate) fn shell_words(program: &std::path::Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(|a| a.as_os_str()))
        .map(|a| {
            let s = a.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c))
            {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Starts `cmd` (stdin null, stdout and stderr piped) in its own process
/// group, with SIGKILL as its parent-death signal.
///
/// `Drop` of a guest kills QEMU when a test panics, but not when the test
/// process itself is killed (a CI timeout, a SIGKILL from a developer) or
/// aborts. The parent-death signal covers those: the kernel kills QEMU when
/// its parent dies. "Parent" means the *thread* that forked, so the fork is
/// done by one spawner thread that lives as long as the process; forking from
/// a test's thread would kill QEMU when that thread ends.
///
/// The process group lets a kill reach everything QEMU started, and anything
/// around it when `IVC_QEMU` is a wrapper script.
pub(crate) fn spawn(mut cmd: Command) -> io::Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent(&mut cmd);

    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("ivc-qemu-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    if let Err(mpsc::SendError(Ok(mut orphan))) = reply.send(cmd.spawn()) {
                        // Nobody is waiting for this QEMU any more.
                        let _ = orphan.kill();
                        let _ = orphan.wait();
                    }
                }
            });
        if let Err(e) = started {
            // Keep going without the spawner: requests will fail with a clear
            // error below instead of a panic here.
            eprintln!("ivc-guest-harness: cannot start the spawner thread: {e}");
        }
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the QEMU spawner thread is not running"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the QEMU spawner thread is not running"))?
}

/// Makes the child get SIGKILL when the thread that spawns it ends (Linux's
/// parent-death signal follows the spawning thread, not the process: spawn
/// from a thread that lives as long as the process).
pub(crate) fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called; prctl and getppid are plain
    // system calls, and the closure neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect; then the
            // signal never comes and the child must not start.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
}

/// Sends SIGKILL to the process group `pgid` (the guest's QEMU and anything it
/// started). Only call it while the group leader is unreaped, so the id cannot
/// have been reused.
pub(crate) fn kill_group(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // ESRCH: everything in the group has exited already.
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;
    use std::path::Path;

    fn artifacts() -> GuestArtifacts {
        let dir = std::env::temp_dir().join(format!("ivc-qemu-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("bzImage"), b"").expect("kernel");
        std::fs::write(dir.join("initramfs.cpio.gz"), b"").expect("initramfs");
        GuestArtifacts::from_dir(dir).expect("both files exist")
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    #[rustfmt::skip]
    fn full_command_line() {
        let a = artifacts();
        let spec = GuestSpec::new("g", "echo hi")
            .memory_mib(128)
            .cpus(2)
            .device(Device::IvshmemPlain {
                mem_path: "/dev/shm/t/ring".into(),
                size: 1 << 16,
            })
            .device(Device::IvshmemDoorbell {
                socket: "/dev/shm/t/sock".into(),
                vectors: 1,
            });
        let args = strings(&qemu_args(&a, &spec).expect("valid"));
        let kernel = a.kernel().display().to_string();
        let initrd = a.initramfs().display().to_string();
        let expected: Vec<&str> = vec![
            "-M", "pc", "-accel", "tcg", "-cpu", "max", "-m", "128", "-smp", "2,sockets=2,maxcpus=2",
            "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", &kernel, "-initrd", &initrd,
            "-append", "console=ttyS0 panic=-1 loglevel=5 no_timer_check ivc_cmd=ZWNobyBoaQ==",
            "-object", "memory-backend-file,id=hmem0,share=on,mem-path=/dev/shm/t/ring,size=65536",
            "-device", "ivshmem-plain,memdev=hmem0",
            "-chardev", "socket,path=/dev/shm/t/sock,id=ivs1",
            "-device", "ivshmem-doorbell,chardev=ivs1,vectors=1",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn invalid_devices_name_the_guest() {
        let spec = GuestSpec::new("peer-b", "true").device(Device::IvshmemPlain {
            mem_path: "/dev/shm/r".into(),
            size: 1000,
        });
        let msg = qemu_args(&artifacts(), &spec)
            .expect_err("size")
            .to_string();
        assert!(
            msg.contains("peer-b") && msg.contains("power of two"),
            "{msg}"
        );
    }

    #[test]
    fn shell_words_quotes_what_needs_it() {
        let args: Vec<OsString> = vec!["-append".into(), "a b 'c'".into(), "x=1,y".into()];
        assert_eq!(
            shell_words(Path::new("/usr/bin/qemu"), &args),
            r"/usr/bin/qemu -append 'a b '\''c'\''' x=1,y"
        );
    }
}
