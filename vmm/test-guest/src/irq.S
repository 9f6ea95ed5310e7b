/*
 * Counting interrupt handlers (AT&T syntax, included by irq.rs).
 *
 * Vector FIRST + n (n = 0..COUNT-1) increments count[n], records the TSC of
 * the latest arrival in tsc[n] and acknowledges the local APIC. Only RAX,
 * RCX, RDX are touched, and they are saved: the interrupted code (CPL0 or
 * CPL3) continues unaware. The target has no red zone, so pushing onto an
 * interrupted CPL0 stack is safe.
 */
    .section .text.ivc_irq, "ax", @progbits
    .code64

    .macro ivc_irq_stub n
    .balign 16
ivc_irq_stub_\n:
    push %rax
    push %rcx
    push %rdx
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, {tsc} + 8 * \n(%rip)
    incq {count} + 8 * \n(%rip)
    mov ${eoi}, %rcx
    movl $0, (%rcx)
    pop %rdx
    pop %rcx
    pop %rax
    iretq
    .endm

    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ivc_irq_stub \n
    .endr

    /*
     * The APIC's spurious vector and the (masked) PICs' spurious IRQ 7/15:
     * no EOI for either.
     */
    .balign 16
    .globl ivc_irq_spurious
ivc_irq_spurious:
    iretq

    .section .rodata.ivc_irq, "a", @progbits
    .balign 8
    .globl ivc_irq_stubs
ivc_irq_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad ivc_irq_stub_\n
    .endr
