/*
 * CPU exception entry stubs (AT&T syntax, included by idt.rs).
 *
 * Each stub makes the stack look the same (error code, then vector number)
 * and jumps to a common part that saves the general registers and calls the
 * Rust handler with a pointer to the saved frame. The handler never returns:
 * an exception in this guest is always a test failure.
 */
    .section .text.ivc_exceptions, "ax", @progbits
    .code64

    .macro ivc_exc_stub vec
    .balign 16
ivc_exc_stub_\vec:
    /* Vectors 8, 10-14, 17, 21, 29, 30 push an error code; fake one for the rest. */
    .if \vec == 8 || (\vec >= 10 && \vec <= 14) || \vec == 17 || \vec == 21 || \vec == 29 || \vec == 30
    .else
    pushq $0
    .endif
    pushq $\vec
    jmp ivc_exc_common
    .endm

    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ivc_exc_stub \vec
    .endr

ivc_exc_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    and $-16, %rsp
    call {handler}
    ud2

    .section .rodata.ivc_exceptions, "a", @progbits
    .balign 8
    .globl ivc_exception_stubs
ivc_exception_stubs:
    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad ivc_exc_stub_\vec
    .endr
