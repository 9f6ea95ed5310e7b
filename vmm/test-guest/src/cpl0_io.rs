//! String port I/O done at CPL0 on behalf of CPL3 code.
//!
//! Under PVM a port exit costs ~14 us from CPL0 but ~73 us from CPL3, and
//! KVM emulates `rep outs` one element per exit, so a CPL3 loop that
//! streams through a port spends most of its time in exits. CPL3 cannot
//! call CPL0 with SYSCALL or INT here (PVM does not deliver them to this
//! guest), but CPU exceptions do arrive: `ud2` with [`MAGIC`] in RAX is a
//! "service call". The #UD handler installed by [`install`] performs one
//! `rep outsd` or `rep insb` with the caller's registers, or halts until an
//! interrupt ([`halt_until_changed`]), and returns past the `ud2`; any other
//! #UD goes to the normal exception report.

use core::arch::asm;

use crate::idt;

/// RAX value that marks a service call.
const MAGIC: u64 = 0x1c1c_5e41_0000_0000;
const OP_OUTSD: u64 = 0;
const OP_INSB: u64 = 1;
const OP_HALT: u64 = 2;
/// The #UD vector.
const UD_VECTOR: u8 = 6;

core::arch::global_asm!(
    r#"
    .section .text.ivc_cpl0_io, "ax", @progbits
    .code64
    .balign 16
    .globl ivc_ud_service
ivc_ud_service:
    /* Frame: RIP, CS, RFLAGS, RSP, SS (no error code for #UD). */
    cmp {magic}(%rip), %rax
    jne 1f
    testb $3, 8(%rsp)
    jz 1f
    cmp ${halt}, %r8
    je 4f
    cmp ${insb}, %r8
    je 2f
    rep outsl
    jmp 3f
2:
    mov %rsi, %rdi
    rep insb
3:
    addq $2, (%rsp)
    iretq
4:
    /* Halt until an interrupt, unless the counter at RSI already moved
       past RDX. STI's one-instruction shadow makes STI; HLT atomic: an
       interrupt pending at the check wakes the HLT. */
    cmp %rdx, (%rsi)
    jne 3b
    sti
    hlt
    cli
    jmp 3b
1:
    jmp *ivc_exception_stubs+{ud_offset}(%rip)
    "#,
    magic = sym IVC_CPL0_IO_MAGIC,
    insb = const OP_INSB,
    halt = const OP_HALT,
    ud_offset = const UD_VECTOR as usize * 8,
    options(att_syntax)
);

/// The magic as a memory operand for the `cmp` above (an immediate cannot
/// hold 64 bits).
#[no_mangle]
static IVC_CPL0_IO_MAGIC: u64 = MAGIC;

extern "C" {
    fn ivc_ud_service();
}

/// Routes #UD through the service-call handler. Call at CPL0.
pub fn install() {
    idt::set_gate(UD_VECTOR, ivc_ud_service as *const () as u64);
}

/// `rep outsd` of `buf` (whole dwords; the rest is ignored) to `port`,
/// executed at CPL0. Needs [`install`].
pub fn outsd(port: u16, buf: &[u8]) {
    // SAFETY: the handler reads exactly (len / 4) * 4 bytes at RSI, which
    // the slice provides; RAX/RCX/RSI/RDI are declared clobbered and the
    // handler preserves everything else.
    unsafe {
        asm!("ud2",
             inout("rax") MAGIC => _, in("r8") OP_OUTSD, in("dx") port,
             inout("rsi") buf.as_ptr() => _, inout("rcx") buf.len() / 4 => _,
             out("rdi") _, options(nostack, readonly))
    };
}

/// `rep insb` into `buf` from `port`, executed at CPL0. Needs [`install`].
pub fn insb(port: u16, buf: &mut [u8]) {
    // SAFETY: the handler writes exactly buf.len() bytes at RSI; clobbers
    // declared as in `outsd`.
    unsafe {
        asm!("ud2",
             inout("rax") MAGIC => _, in("r8") OP_INSB, in("dx") port,
             inout("rsi") buf.as_mut_ptr() => _, inout("rcx") buf.len() => _,
             out("rdi") _, options(nostack))
    };
}

/// Halts the vCPU at CPL0 until an interrupt arrives, unless `*counter`
/// already differs from `seen` (checked with interrupts off, so an
/// interrupt between the caller's look and the halt is not slept through).
/// The vCPU then sleeps in the host (KVM halt-polls first) instead of
/// spinning at CPL3, and a doorbell wakes it without a kick of a running
/// vCPU. Needs [`install`]; call at CPL3 with interrupts on.
pub fn halt_until_changed(counter: *const u64, seen: u64) {
    // SAFETY: the handler only reads the u64 at RSI (a counter the caller
    // keeps alive, written by interrupt handlers) and returns past the ud2
    // with every register but the declared ones intact.
    unsafe {
        asm!("ud2",
             inout("rax") MAGIC => _, in("r8") OP_HALT, in("rdx") seen,
             in("rsi") counter, options(nostack, readonly))
    };
}
