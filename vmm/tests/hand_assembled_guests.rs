//! ivc-vmm under /dev/kvm with tiny hand-assembled PVH guests: exit paths,
//! serial output, PVH registers, PCI config access, signals.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);

/// mov dx,0x3f8; mov al,'O'; out dx,al; mov al,'K'; out dx,al; mov al,'\n'; out dx,al;
/// mov al,42; out 0xf4,al; jmp $
const HELLO_42: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, 0xb0, b'O', 0xee, 0xb0, b'K', 0xee, 0xb0, b'\n', 0xee, 0xb0, 42, 0xe6,
    0xf4, 0xeb, 0xfe,
];
/// mov al,0xfe; out 0x64,al; jmp $
const I8042_RESET: &[u8] = &[0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe];
/// jmp $
const SPIN: &[u8] = &[0xeb, 0xfe];
/// mov dx,0x3f8; mov al,'R'; out dx,al; mov al,'\n'; out dx,al; jmp $
const READY_THEN_SPIN: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, 0xb0, b'R', 0xee, 0xb0, b'\n', 0xee, 0xeb, 0xfe,
];
/// mov eax,0x80000000; mov dx,0xcf8; out dx,eax; mov dx,0xcfc; in eax,dx; out 0xf4,al; jmp $
const PCI_VENDOR_LOW_BYTE: &[u8] = &[
    0xb8, 0x00, 0x00, 0x00, 0x80, 0x66, 0xba, 0xf8, 0x0c, 0xef, 0x66, 0xba, 0xfc, 0x0c, 0xed, 0xe6,
    0xf4, 0xeb, 0xfe,
];
/// mov eax,[ebx]; cmp eax,0x336ec578; jne +4; mov al,7; out 0xf4,al; mov al,9; out 0xf4,al; jmp $
const CHECK_PVH_MAGIC: &[u8] = &[
    0x8b, 0x03, 0x3d, 0x78, 0xc5, 0x6e, 0x33, 0x75, 0x04, 0xb0, 0x07, 0xe6, 0xf4, 0xb0, 0x09, 0xe6,
    0xf4, 0xeb, 0xfe,
];
/// ud2 with no IDT: #UD -> #GP -> double fault -> triple fault.
const TRIPLE_FAULT: &[u8] = &[0x0f, 0x0b, 0xeb, 0xfe];
/// Byte reads of 0xcfb must not latch the address register; a 16-bit
/// write to 0xf4 exits with its low byte: mov ax,0x0105; out 0xf4,ax
const WIDE_DEBUG_EXIT: &[u8] = &[0x66, 0xb8, 0x05, 0x01, 0x66, 0xe7, 0xf4, 0xeb, 0xfe];

/// Accesses no device defines, each must read as all ones and not stop the
/// VM: a dword at 0xcfd (straddles the config data window), a dword MMIO
/// read from unclaimed 0xd0000000, a dword read of the UART (byte-only);
/// then a dword write to the UART (ignored). Exits with the AND of the
/// reads' low bytes.
/// mov dx,0xcfd; in eax,dx; mov ebx,eax; mov eax,[0xd0000000]; and ebx,eax;
/// mov dx,0x3f8; in eax,dx; and ebx,eax; out dx,eax; mov eax,ebx; out 0xf4,al; jmp $
const HOSTILE_ACCESSES: &[u8] = &[
    0x66, 0xba, 0xfd, 0x0c, 0xed, 0x89, 0xc3, 0xa1, 0x00, 0x00, 0x00, 0xd0, 0x21, 0xc3, 0x66, 0xba,
    0xf8, 0x03, 0xed, 0x21, 0xc3, 0xef, 0x89, 0xd8, 0xe6, 0xf4, 0xeb, 0xfe,
];

/// 20000 dword writes to the byte-only UART, then exit 5:
/// mov dx,0x3f8; mov ecx,20000; l: out dx,eax; loop l; mov al,5; out 0xf4,al; jmp $
const UART_FLOOD: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, 0xb9, 0x20, 0x4e, 0x00, 0x00, 0xef, 0xe2, 0xfd, 0xb0, 0x05, 0xe6, 0xf4,
    0xeb, 0xfe,
];

/// Polls LSR until data is ready, reads RBR, exits with the byte:
/// mov dx,0x3fd; l: in al,dx; test al,1; jz l; mov dx,0x3f8; in al,dx; out 0xf4,al; jmp $
const ECHO_FIRST_INPUT_BYTE: &[u8] = &[
    0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0x66, 0xba, 0xf8, 0x03, 0xec, 0xe6, 0xf4,
    0xeb, 0xfe,
];

fn run_code(name: &str, code: &[u8], extra: &[&str]) -> Outcome {
    let elf = guest_elf(name, code);
    let elf_s = elf.to_string_lossy().into_owned();
    let mut args = vec!["run", "--kernel", elf_s.as_str(), "--mem", "16M"];
    args.extend_from_slice(extra);
    let out = run_vmm(&args, T);
    let _ = std::fs::remove_file(elf);
    out
}

#[test]
fn serial_output_and_debug_exit_status() {
    if skip_without_kvm("serial_output_and_debug_exit_status") {
        return;
    }
    let out = run_code("hello", HELLO_42, &[]);
    assert_eq!(out.status.code(), Some(42), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "OK\n");
}

#[test]
fn serial_to_file_with_two_vcpus() {
    if skip_without_kvm("serial_to_file_with_two_vcpus") {
        return;
    }
    let file = temp_path("serial.txt");
    let f = file.to_string_lossy().into_owned();
    let out = run_code("hello2", HELLO_42, &["--cpus", "2", "--serial", &f]);
    assert_eq!(out.status.code(), Some(42), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "OK\n");
    let _ = std::fs::remove_file(file);
}

#[test]
fn i8042_reset_exits_zero() {
    if skip_without_kvm("i8042_reset_exits_zero") {
        return;
    }
    let out = run_code("reset", I8042_RESET, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
}

#[test]
fn pvh_entry_gets_start_info_in_ebx() {
    if skip_without_kvm("pvh_entry_gets_start_info_in_ebx") {
        return;
    }
    let out = run_code("magic", CHECK_PVH_MAGIC, &[]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "magic at [ebx] mismatched; stderr: {}",
        out.stderr
    );
}

#[test]
fn pci_config_mechanism_1_reads_host_bridge() {
    if skip_without_kvm("pci_config_mechanism_1_reads_host_bridge") {
        return;
    }
    let out = run_code("pci", PCI_VENDOR_LOW_BYTE, &[]);
    assert_eq!(out.status.code(), Some(0x86), "stderr: {}", out.stderr);
}

#[test]
fn wide_debug_exit_write_uses_low_byte() {
    if skip_without_kvm("wide_debug_exit_write_uses_low_byte") {
        return;
    }
    let out = run_code("wide", WIDE_DEBUG_EXIT, &[]);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", out.stderr);
}

#[test]
fn triple_fault_is_a_reset() {
    if skip_without_kvm("triple_fault_is_a_reset") {
        return;
    }
    let out = run_code("ud2", TRIPLE_FAULT, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
}

/// Starts READY_THEN_SPIN (at `elf`) with two vCPUs and waits for its "R":
/// the VMM is past its signal setup and the boot vCPU is running.
fn spawn_spinning(elf: &str) -> std::process::Child {
    let mut child = spawn(&["run", "--kernel", elf, "--mem", "16M", "--cpus", "2"]);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"R\n");
    child.stdout = Some(stdout);
    child
}

#[test]
fn sigterm_and_sigint_stop_a_spinning_guest() {
    if skip_without_kvm("sigterm_and_sigint_stop_a_spinning_guest") {
        return;
    }
    let elf = guest_elf("spin", READY_THEN_SPIN);
    let elf_s = elf.to_string_lossy().into_owned();
    for (sig, expected) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let child = spawn_spinning(&elf_s);
        // Let it spin inside KVM_RUN a little.
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: kill(2) on the pid of a child we own.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let out = wait(child, T);
        assert_eq!(
            out.status.signal(),
            None,
            "the VMM handles the signal itself"
        );
        assert_eq!(out.status.code(), Some(expected), "stderr: {}", out.stderr);
    }
    let _ = std::fs::remove_file(elf);
}

#[test]
fn sigusr1_reports_every_vcpu_and_the_guest_goes_on() {
    if skip_without_kvm("sigusr1_reports_every_vcpu_and_the_guest_goes_on") {
        return;
    }
    let elf = guest_elf("spin-report", READY_THEN_SPIN);
    let elf_s = elf.to_string_lossy().into_owned();
    let mut child = spawn_spinning(&elf_s);
    // SAFETY: kill(2) on the pid of a child we own.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the VM goes on after a state report"
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = wait(child, T);
    assert_eq!(out.status.code(), Some(143), "stderr: {}", out.stderr);
    // The boot CPU spins with interrupts off; the second waits for its
    // start-up IPI.
    assert!(
        out.stderr.contains("vcpu0 state: mp=runnable")
            && out.stderr.contains("(IF=0)")
            && out.stderr.contains("lapic: tpr="),
        "stderr: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("vcpu1 state: mp=uninitialized"),
        "stderr: {}",
        out.stderr
    );
    let _ = std::fs::remove_file(elf);
}

#[test]
fn bad_kernel_is_a_clean_error() {
    if skip_without_kvm("bad_kernel_is_a_clean_error") {
        return;
    }
    let junk = temp_path("junk.bin");
    std::fs::write(&junk, vec![0x55u8; 4096]).unwrap();
    let out = run_vmm(&["run", "--kernel", &junk.to_string_lossy()], T);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("cannot load kernel"), "{}", out.stderr);
    assert!(
        out.stderr.contains("neither an ELF kernel"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"));
    // The bzImage signature on a header that is not one.
    let mut bz = vec![0u8; 4096];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(&junk, bz).unwrap();
    let out = run_vmm(&["run", "--kernel", &junk.to_string_lossy()], T);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("cannot load kernel"), "{}", out.stderr);
    assert!(
        out.stderr.contains("(bzImage): no Linux setup header"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"));
    let _ = std::fs::remove_file(junk);
    let elf = temp_path("nonote.elf");
    std::fs::write(
        &elf,
        ivc_vmm::boot::elf_image::build(SPIN, 0x10_0000, false),
    )
    .unwrap();
    let out = run_vmm(&["run", "--kernel", &elf.to_string_lossy()], T);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("no PVH entry point"), "{}", out.stderr);
    let _ = std::fs::remove_file(elf);
}

#[test]
fn bad_offsets_and_sizes_are_ignored() {
    if skip_without_kvm("bad_offsets_and_sizes_are_ignored") {
        return;
    }
    let out = run_code("hostile", HOSTILE_ACCESSES, &[]);
    assert_eq!(out.status.code(), Some(0xff), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "", "a dword write is not a character");
    assert!(
        out.stderr.contains("serial: 4-byte"),
        "the VMM logs what it ignored: {}",
        out.stderr
    );
}

/// A panic in a vCPU thread ends the VMM at once (SIGABRT, the panic message
/// on stderr), instead of leaving a VM whose only vCPU is gone and whose
/// main thread waits forever.
#[test]
fn a_panic_in_a_vcpu_thread_stops_the_vmm() {
    if skip_without_kvm("a_panic_in_a_vcpu_thread_stops_the_vmm") {
        return;
    }
    let elf = guest_elf("panic", SPIN);
    let child = std::process::Command::new(vmm())
        .args(["run", "--mem", "16M", "--kernel"])
        .arg(&elf)
        .env("IVC_VMM_INJECT_PANIC", "vcpu0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ivc-vmm");
    let out = wait(child, Duration::from_secs(20));
    let _ = std::fs::remove_file(elf);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}", out.stderr);
    assert!(
        out.stderr.contains("IVC_VMM_INJECT_PANIC"),
        "{}",
        out.stderr
    );
}

/// A guest that repeats a bad access cannot flood the host's log: the
/// first few are logged, then at most one line a second.
#[test]
fn a_guest_cannot_flood_the_vmm_log() {
    if skip_without_kvm("a_guest_cannot_flood_the_vmm_log") {
        return;
    }
    let out = run_code("flood", UART_FLOOD, &[]);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", out.stderr);
    let logged = out
        .stderr
        .lines()
        .filter(|l| l.contains("serial: 4-byte"))
        .count();
    // 20000 accesses take well under a minute here: ten lines in the
    // burst, then one a second.
    assert!(
        (1..=70).contains(&logged),
        "{logged} lines for 20000 bad accesses"
    );
}

#[test]
fn stdin_reaches_the_guest_uart() {
    if skip_without_kvm("stdin_reaches_the_guest_uart") {
        return;
    }
    let elf = guest_elf("stdin", ECHO_FIRST_INPUT_BYTE);
    let mut child = std::process::Command::new(vmm())
        .args(["run", "--kernel", &elf.to_string_lossy(), "--mem", "16M"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"A").unwrap();
    }
    let out = wait(child, T);
    assert_eq!(
        out.status.code(),
        Some(i32::from(b'A')),
        "stderr: {}",
        out.stderr
    );
    let _ = std::fs::remove_file(elf);
}
