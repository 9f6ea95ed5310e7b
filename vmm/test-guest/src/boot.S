/*
 * PVH entry for ivc-test-guest (AT&T syntax, included by boot.rs).
 *
 * The loader (ivc-vmm or QEMU -kernel) starts us in 32-bit protected mode
 * with paging off, flat CS/DS, and EBX = guest-physical address of
 * hvm_start_info. We build identity page tables for the first 4 GiB with
 * 2 MiB pages, switch to long mode and call Rust with the start info address.
 *
 * Everything here runs at CPL0, which PVM emulates instruction by
 * instruction: keep it short and stick to plain integer instructions.
 */

/* ---- PVH ELF note: XEN_ELFNOTE_PHYS32_ENTRY (18), owner "Xen" ---- */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                 /* n_namesz: "Xen\0" */
    .long 8                 /* n_descsz */
    .long 18                /* n_type: XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    /*
     * A 64-bit field although the entry is 32-bit: QEMU reads a full
     * 8 bytes here (as Linux's vmlinux provides), linux-loader reads the
     * first 4. Little endian makes both read the same address.
     */
    .quad pvh_start32
    .balign 4

/* ---- page tables and stacks ---- */
    .section .bss.ivc_page_tables, "aw", @nobits
    .balign 4096
    .globl ivc_pml4
ivc_pml4:
    .skip 4096
    .globl ivc_pdpt
ivc_pdpt:
    .skip 4096
    /* Four page directories: 4 x 512 x 2 MiB = the first 4 GiB. */
    .globl ivc_pd_low4g
ivc_pd_low4g:
    .skip 4 * 4096

    .section .stacks.ivc_boot, "aw", @nobits
    .balign 16
ivc_boot_stack_bottom:
    .skip {boot_stack_size}
    .globl ivc_boot_stack_top
ivc_boot_stack_top:

/* ---- 32-bit entry ---- */
    .section .text.pvh_entry, "ax", @progbits
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    /* EBX holds the start info address until we call Rust; nothing below touches it. */

    /* Our GDT: the loader's may live anywhere, including memory we overwrite. */
    lgdt ivc_gdt_desc
    mov ${kernel_ds}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs

    /* Zero .bss (the page tables live there). Loaders usually do, PVH does not promise it. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT. Every level has U/S=1 so CPL3 code may use all memory and MMIO. */
    mov $ivc_pdpt, %eax
    or ${pte_table}, %eax
    mov %eax, ivc_pml4

    /* PDPT[0..4] -> the four page directories. */
    mov $ivc_pd_low4g, %eax
    or ${pte_table}, %eax
    mov $ivc_pdpt, %edi
    mov $4, %ecx
1:
    mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    dec %ecx
    jnz 1b

    /* 2048 x 2 MiB identity pages covering 0..4 GiB. Physical bits 32+ stay zero. */
    mov $ivc_pd_low4g, %edi
    mov ${pte_large}, %eax
    mov $2048, %ecx
2:
    mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    dec %ecx
    jnz 2b

    /* CR4: PAE on; TSD off so RDTSC works at CPL3. */
    mov %cr4, %eax
    or $0x20, %eax
    and $~0x4, %eax
    mov %eax, %cr4

    mov $ivc_pml4, %eax
    mov %eax, %cr3

    /* EFER.LME */
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr

    /*
     * CR0: PG|WP|PE on, CD/NW off (normal caching), EM off. The loader
     * already set PE; paging with LME set activates long mode.
     */
    mov %cr0, %eax
    or $0x80010001, %eax
    and $0x9ffffffb, %eax
    mov %eax, %cr0

    ljmp ${kernel_cs}, $ivc_long_mode

/* ---- 64-bit ---- */
    .code64
ivc_long_mode:
    mov ${kernel_ds}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs

    /* 16-byte aligned before the call, as the SysV ABI wants. */
    mov $ivc_boot_stack_top, %rsp
    xor %ebp, %ebp
    mov %ebx, %edi          /* zero-extends: RDI = start info address */
    call {rust_entry}
3:
    cli
    hlt
    jmp 3b

/*
 * GDT pseudo-descriptor. The 8-byte base serves both lgdt here (32-bit mode
 * reads 6 bytes) and any later lgdt from long mode (10 bytes).
 */
    .section .rodata.ivc_gdt_desc, "a", @progbits
    .balign 8
    .globl ivc_gdt_desc
ivc_gdt_desc:
    .word {gdt_limit}
    .quad {gdt}
