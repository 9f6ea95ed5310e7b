//! Running code at CPL3 (ring 3).
//!
//! Under PVM, guest user-mode code runs natively while ring-0 code is
//! emulated, so loops worth timing belong at CPL3. The switch is one way: we
//! `iretq` into ring 3 with IOPL=3, the user function does its own port I/O
//! (serial, debug-exit) and ends the VM itself. (PVM drops IOPL for native
//! user code; there the TSS I/O permission bitmap, see [`crate::gdt`], is
//! what allows the port I/O.) Nothing ever returns to ring
//! 0 except a CPU exception, which lands on the exception stack (TSS RSP0)
//! and is reported. No SYSCALL/INT from CPL3: PVM does not deliver them to a
//! non-PVM guest kernel.

use core::arch::asm;
use core::ptr::addr_of;

use crate::gdt::{USER_CS, USER_DS};

/// Bytes of the stack CPL3 code runs on.
pub const USER_STACK_SIZE: usize = 64 * 1024;
/// Bytes of the stack exceptions from CPL3 run on.
pub const EXCEPTION_STACK_SIZE: usize = 16 * 1024;

/// RFLAGS for ring 3: IOPL=3 (port I/O allowed), IF=0 (no interrupts until a
/// test sets up its own), bit 1 is reserved and always 1.
const USER_RFLAGS: u64 = (3 << 12) | (1 << 1);

core::arch::global_asm!(
    ".section .stacks.ivc_cpl3, \"aw\", @nobits",
    ".balign 16",
    ".skip {user}",
    ".globl ivc_user_stack_top",
    "ivc_user_stack_top:",
    ".balign 16",
    ".skip {exception}",
    ".globl ivc_exception_stack_top",
    "ivc_exception_stack_top:",
    user = const USER_STACK_SIZE,
    exception = const EXCEPTION_STACK_SIZE,
);

extern "C" {
    // Symbols only: their addresses are the (16-byte aligned) stack tops.
    static ivc_user_stack_top: u8;
    static ivc_exception_stack_top: u8;
}

/// Top of the ring-0 stack for exceptions taken at CPL3 (for the TSS).
pub fn exception_stack_top() -> u64 {
    addr_of!(ivc_exception_stack_top) as u64
}

/// Current privilege level (the RPL bits of CS).
pub fn current_cpl() -> u8 {
    let cs: u16;
    // SAFETY: reading CS has no side effects and works at any CPL.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    (cs & 3) as u8
}

/// RFLAGS.IF: interrupts enabled.
const RFLAGS_IF: u64 = 1 << 9;

/// Runs `entry(arg)` at CPL3 on the user stack. Never returns.
///
/// `entry` must end the VM itself (see [`crate::exit::exit`]).
pub fn enter(entry: extern "C" fn(u64) -> !, arg: u64) -> ! {
    enter_with_flags(entry, arg, USER_RFLAGS)
}

fn enter_with_flags(entry: extern "C" fn(u64) -> !, arg: u64, rflags: u64) -> ! {
    // The SysV ABI wants RSP = 8 (mod 16) at function entry, as if a return
    // address had been pushed.
    let user_rsp = addr_of!(ivc_user_stack_top) as u64 - 8;
    // SAFETY: builds an iretq frame for a 64-bit ring-3 code segment and
    // ring-3 stack from our GDT; all memory is mapped user-accessible, the
    // TSS (gdt::init_tss) provides RSP0 for exceptions, and `entry` never
    // returns, so nothing depends on the ring-0 state we leave behind.
    unsafe {
        asm!(
            "push {ss}",
            "push {rsp}",
            "push {rflags}",
            "push {cs}",
            "push {rip}",
            "iretq",
            ss = in(reg) USER_DS as u64,
            rsp = in(reg) user_rsp,
            rflags = in(reg) rflags,
            cs = in(reg) USER_CS as u64,
            rip = in(reg) entry as usize as u64,
            in("rdi") arg,
            options(noreturn)
        )
    }
}

/// Runs `f(arg)` at CPL3. Never returns.
///
/// `arg` may live on the current (ring-0) stack: that stack is abandoned but
/// stays intact, because exceptions from CPL3 use a separate stack.
pub fn run<T>(f: fn(&T) -> !, arg: &T) -> ! {
    let context: (fn(&T) -> !, &T) = (f, arg);
    enter(trampoline::<T>, &context as *const (fn(&T) -> !, &T) as u64)
}

/// Like [`run`], with interrupts enabled at CPL3 (RFLAGS.IF=1): the
/// counting handlers of [`crate::irq`] (installed by `irq::init`) run at
/// CPL0 on the exception stack and return to the CPL3 loop, which watches
/// `irq::count`. CPL3 cannot execute STI/CLI under PVM (IOPL is forced to
/// 0), so the flag has to come with the `iretq`.
pub fn run_with_interrupts<T>(f: fn(&T) -> !, arg: &T) -> ! {
    let context: (fn(&T) -> !, &T) = (f, arg);
    enter_with_flags(
        trampoline::<T>,
        &context as *const (fn(&T) -> !, &T) as u64,
        USER_RFLAGS | RFLAGS_IF,
    )
}

extern "C" fn trampoline<T>(context: u64) -> ! {
    // SAFETY: `run` passed a pointer to its local `context`, whose frame is
    // never popped (run -> enter never return) nor overwritten (nothing runs
    // on the ring-0 stack after the switch).
    let (f, arg) = unsafe { *(context as *const (fn(&T) -> !, &T)) };
    f(arg)
}
