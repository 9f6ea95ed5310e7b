//! Interrupt descriptor table and the CPU exception report.
//!
//! Without an IDT any fault would triple-fault the VM and leave no clue. With
//! it, a fault prints the vector, error code and registers and exits with
//! [`status::EXCEPTION`]. Vectors 32-255 are free for tests (MSI-X) through
//! [`set_gate`].

use core::mem::size_of;
use core::ptr::addr_of_mut;

use crate::exit::{exit, status};
use crate::gdt::KERNEL_CS;
use crate::println;

/// Number of CPU exception vectors.
const EXCEPTIONS: usize = 32;

core::arch::global_asm!(
    include_str!("exceptions.S"),
    handler = sym exception_handler,
    options(att_syntax)
);

extern "C" {
    // Entry stub addresses, one per exception vector (exceptions.S).
    static ivc_exception_stubs: [u64; EXCEPTIONS];
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    low: u64,
    high: u64,
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate { low: 0, high: 0 }; 256]);

/// The stack as `exceptions.S` leaves it, lowest address first.
#[repr(C)]
struct Frame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    // Pushed by the CPU. RSP/SS are always present in long mode.
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Installs an interrupt gate (IF cleared on entry) for `vector`, callable
/// only by the CPU (DPL 0), on the current stack (IST 0).
pub fn set_gate(vector: u8, handler: u64) {
    let low = (handler & 0xffff)
        | ((KERNEL_CS as u64) << 16)
        | (0x8e << 40) // present, DPL0, 64-bit interrupt gate
        | (((handler >> 16) & 0xffff) << 48);
    let high = handler >> 32;
    // SAFETY: single CPU at CPL0; the CPU reads a gate only on delivery, and
    // a 16-byte gate is never half-written while its vector can fire because
    // tests install gates before enabling the source.
    unsafe {
        let idt = addr_of_mut!(IDT);
        (*idt).0[vector as usize] = Gate { low, high };
    }
}

/// Fills the exception gates and loads the IDT.
pub fn init() {
    // SAFETY: ivc_exception_stubs is a read-only table defined in
    // exceptions.S with exactly EXCEPTIONS entries.
    let stubs = unsafe { &*core::ptr::addr_of!(ivc_exception_stubs) };
    for (vector, &stub) in stubs.iter().enumerate() {
        set_gate(vector as u8, stub);
    }
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: addr_of_mut!(IDT) as u64,
    };
    // SAFETY: the pointer describes the static IDT, whose gates are either
    // empty (not present -> #GP -> reported) or point at our stubs.
    unsafe {
        core::arch::asm!("lidt [{0}]", in(reg) &pointer, options(readonly, nostack, preserves_flags));
    }
}

fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD error",
        20 => "#VE virtualization",
        21 => "#CP control protection",
        _ => "reserved",
    }
}

extern "C" fn exception_handler(frame: &Frame) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects; we run at CPL0 (the gate
    // switched us there).
    unsafe {
        core::arch::asm!("mov {0}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags))
    };
    println!(
        "exception vector={} ({}) error=0x{:x} rip=0x{:x} cs=0x{:x} cpl={} rflags=0x{:x} rsp=0x{:x} cr2=0x{:x}",
        frame.vector,
        exception_name(frame.vector),
        frame.error,
        frame.rip,
        frame.cs,
        frame.cs & 3,
        frame.rflags,
        frame.rsp,
        cr2
    );
    println!(
        "regs rax=0x{:x} rbx=0x{:x} rcx=0x{:x} rdx=0x{:x} rsi=0x{:x} rdi=0x{:x} rbp=0x{:x}",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp
    );
    println!(
        "regs r8=0x{:x} r9=0x{:x} r10=0x{:x} r11=0x{:x} r12=0x{:x} r13=0x{:x} r14=0x{:x} r15=0x{:x} ss=0x{:x}",
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15, frame.ss
    );
    exit(status::EXCEPTION)
}
