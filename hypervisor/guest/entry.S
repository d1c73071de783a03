/*
 * The test guest's ring-0 code: the multiboot header, the 32-bit multiboot
 * entry, the common 64-bit entry (own GDT, TSS, IDT, then iretq to ring 3) and
 * the exception stubs. Everything here is emulated on kvm_pvm (~1.6 M instr/s),
 * so it stays short: the multiboot page tables and the IDT are built by the
 * assembler and linker, not by loops at run time.
 *
 * Rules kept here:
 * - Descriptors and page-table entries are written with their accessed (and
 *   dirty) bits already set, so the CPU never writes them back: once the
 *   workload runs the guest writes nothing outside the rw area.
 * - Each vCPU writes only its own TSS and TSS descriptor; the five constant GDT
 *   descriptors are rewritten by every vCPU with identical values.
 * - tg_entry64 keeps rdi/rsi/rdx intact: they become tg_main()'s arguments.
 * - Ring 3 runs with IOPL 3. Where the hypervisor does not honour it
 *   (kvm_pvm), ring 3's in/out raise #GP and gp_handler performs them.
 */
#include "hypervisor/guest/layout.h"

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00010002 /* memory info, a.out kludge (load the flat file) */
#define MB_BOOT_MAGIC 0x2badb002

#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define CR4_PAE 0x20
#define CR0_PE_PG 0x80000001

/* Flat descriptors with the accessed bit set (type 0xb / 0x3). */
#define DESC_KCODE64 0x00af9b000000ffff
#define DESC_KDATA 0x00cf93000000ffff
#define DESC_UDATA 0x00cff3000000ffff
#define DESC_UCODE64 0x00affb000000ffff
#define DESC_TSS_TYPE 0x0000890000000000 /* present, available 64-bit TSS */

#define PTE_TABLE 0x27 /* P | RW | US | A */
#define PTE_2M 0xe7    /* P | RW | US | A | D | PS */

#define COM1 0x3f8

/* ---- multiboot v1 header, file offset 0 ---------------------------------- */

	.section .multiboot, "a"
	.balign 4
tg_multiboot_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)
	.long tg_multiboot_header /* header_addr */
	.long __load_start        /* load_addr */
	.long __load_end          /* load_end_addr */
	.long __bss_end           /* bss_end_addr */
	.long tg_entry32          /* entry_addr */

/* ---- 32-bit multiboot entry ----------------------------------------------- */

	.text
	.code32
	.globl tg_entry32
tg_entry32:
	cli
	cld
	cmp $MB_BOOT_MAGIC, %eax
	jne 2f
	mov %ebx, %ebp /* multiboot info, kept for entry64's rdx */
	lgdt tg_boot_gdt_ptr
	mov $tg_boot_pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $CR0_PE_PG, %eax
	mov %eax, %cr0
	ljmp $TGL_SEL_KCODE, $1f

	.code64
1:	mov $TGL_SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %edi, %edi
	mov $TGL_BOOT_MULTIBOOT, %esi
	mov %ebp, %edx
	jmp tg_entry64

	.code32
2:	mov $TGL_FAULT_BAD_BOOT, %eax
	movl %eax, TGL_MMIO_FAULT
3:	hlt
	jmp 3b

/* ---- 64-bit entry: rdi = vCPU index, rsi = boot kind, rdx = boot argument -- */

	.code64
	.globl tg_entry64
tg_entry64:
	cli
	cld
	cmp $TGL_MAX_CPUS, %rdi
	jae .Lbad_cpu

	/* r8 = this vCPU's stack block; its ring-0 stack is the first part. */
	imul $TGL_STACK_STRIDE, %rdi, %r8
	lea tg_stacks(%rip), %rax
	add %rax, %r8
	lea TGL_R0_STACK(%r8), %rsp

	/* The constant descriptors. */
	lea tg_gdt(%rip), %r9
	movq $0, (%r9)
	movabs $DESC_KCODE64, %rax
	mov %rax, TGL_SEL_KCODE(%r9)
	movabs $DESC_KDATA, %rax
	mov %rax, TGL_SEL_KDATA(%r9)
	movabs $DESC_UDATA, %rax
	mov %rax, (TGL_SEL_UDATA & ~3)(%r9)
	movabs $DESC_UCODE64, %rax
	mov %rax, (TGL_SEL_UCODE & ~3)(%r9)

	/* This vCPU's TSS (rcx): ring-0 stack, no I/O bitmap (IOPL 3 instead). */
	imul $TGL_TSS_STRIDE, %rdi, %rcx
	lea tg_tss(%rip), %rax
	add %rax, %rcx
	mov %rsp, 4(%rcx)
	movw $TGL_TSS_SIZE, 102(%rcx)

	/* Its descriptor: limit 103, base rcx split over both quadwords. */
	mov %rcx, %rax
	shl $16, %rax
	movabs $0x000000ffffff0000, %r10
	and %r10, %rax                  /* base[23:0] -> bits 16..39 */
	mov %rcx, %r10
	shr $24, %r10
	movzbl %r10b, %r10d
	shl $56, %r10
	or %r10, %rax                   /* base[31:24] -> bits 56..63 */
	movabs $(DESC_TSS_TYPE | (TGL_TSS_SIZE - 1)), %r10
	or %r10, %rax
	mov %rdi, %r11
	shl $4, %r11
	lea TGL_SEL_TSS0(%r9, %r11), %r11
	mov %rax, (%r11)
	mov %rcx, %rax
	shr $32, %rax
	mov %rax, 8(%r11)

	lgdt tg_gdt_ptr(%rip)
	pushq $TGL_SEL_KCODE
	lea 1f(%rip), %rax
	push %rax
	lretq
1:	mov $TGL_SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	mov %rdi, %rax
	shl $4, %eax
	add $TGL_SEL_TSS0, %eax
	ltr %ax
	lidt tg_idt_ptr(%rip)

	/* Ring 3: IOPL 3, IF = 0; rsp + 8 is 16-byte aligned as at a call. */
	lea (TGL_STACK_STRIDE - 8)(%r8), %rax
	movq $0, (%rax)
	pushq $TGL_SEL_UDATA
	push %rax
	pushq $0x3002
	pushq $TGL_SEL_UCODE
	lea tg_main(%rip), %rax
	push %rax
	iretq

.Lbad_cpu:
	mov $TGL_FAULT_BAD_CPU, %eax
	mov $TGL_MMIO_FAULT, %edx
	movl %eax, (%rdx)
1:	cli
	hlt
	jmp 1b

/* ---- exception stubs: 16 bytes each, so the IDT can be built statically ---- */

	.balign 1024
	.globl tg_isr_stubs
tg_isr_stubs:
	.set vec, 0
	.rept 32
	.balign 16
	.if vec == 13
	jmp gp_handler
	.else
	.if vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30
	.else
	pushq $0 /* no error code from the CPU: keep one frame layout */
	.endif
	pushq $vec
	jmp isr_common
	.endif
	.set vec, vec + 1
	.endr
	.balign 16
	.globl tg_isr_stubs_end
tg_isr_stubs_end:

/*
 * #GP: ring 3's port I/O and its "stop" request. On hardware that honours
 * IOPL 3, ring 3's in/out never fault. kvm_pvm runs ring 3 with the real IOPL
 * at 0, so there they fault and are carried out here: the three forms io.h
 * emits (ec inb, ee outb, ef outl, all with the port in dx), then return
 * past the one-byte instruction. A ring-3 hlt (f4, tg_stop()) parks the vCPU.
 * Anything else is reported as an exception. Frame: error code, rip, cs, ...
 */
gp_handler:
	testb $3, 16(%rsp)
	jz 9f
	push %rsi
	mov 16(%rsp), %rsi /* the faulting rip */
	cmpb $0xee, (%rsi)
	je 1f
	cmpb $0xef, (%rsi)
	je 2f
	cmpb $0xec, (%rsi)
	je 3f
	cmpb $0xf4, (%rsi)
	je 5f
	pop %rsi
9:	pushq $13
	jmp isr_common
1:	out %al, %dx
	jmp 4f
2:	out %eax, %dx
	jmp 4f
3:	in %dx, %al
4:	incq 16(%rsp)
	pop %rsi
	add $8, %rsp
	iretq
5:	cli
	hlt
	jmp 5b

/*
 * Frame: vector, error code, rip, cs, rflags, rsp, ss. Report on the fault
 * port first (castor-vmm stops the vCPU there); where nothing listens (QEMU)
 * describe the exception on COM1, then halt for good.
 */
isr_common:
	mov 24(%rsp), %eax
	and $3, %eax
	shl $8, %eax
	or (%rsp), %eax
	mov $TGL_MMIO_FAULT, %edx
	movl %eax, (%rdx)

	lea msg_exc(%rip), %rsi
	mov (%rsp), %rax
	call put_field
	lea msg_err(%rip), %rsi
	mov 8(%rsp), %rax
	call put_field
	lea msg_rip(%rip), %rsi
	mov 16(%rsp), %rax
	call put_field
	lea msg_cs(%rip), %rsi
	mov 24(%rsp), %rax
	call put_field
	lea msg_rfl(%rip), %rsi
	mov 32(%rsp), %rax
	call put_field
	lea msg_rsp(%rip), %rsi
	mov 40(%rsp), %rax
	call put_field
	lea msg_cr2(%rip), %rsi
	mov %cr2, %rax
	call put_field
	lea msg_tr(%rip), %rsi
	xor %eax, %eax
	str %ax
	call put_field
	mov $'\n', %bl
	call put_char
1:	cli
	hlt
	jmp 1b

/* put_field: the string at rsi, then rax as 16 hex digits. */
put_field:
	mov %rax, %r8
1:	mov (%rsi), %bl
	test %bl, %bl
	jz 2f
	call put_char
	inc %rsi
	jmp 1b
2:	mov $16, %ecx
3:	rol $4, %r8
	mov %r8d, %ebx
	and $0xf, %ebx
	lea hex_digits(%rip), %rax
	mov (%rax, %rbx), %bl
	call put_char
	dec %ecx
	jnz 3b
	ret

/* put_char: bl on COM1, once its transmitter holds no byte. */
put_char:
	mov $(COM1 + 5), %edx
1:	in %dx, %al
	test $0x20, %al
	jz 1b
	mov $COM1, %edx
	mov %bl, %al
	out %al, %dx
	ret

/* ---- read-only tables --------------------------------------------------- */

	.section .rodata
msg_exc:	.asciz "castor-tg: exception vec=0x"
msg_err:	.asciz " err=0x"
msg_rip:	.asciz " rip=0x"
msg_cs:		.asciz " cs=0x"
msg_rfl:	.asciz " rflags=0x"
msg_rsp:	.asciz " rsp=0x"
msg_cr2:	.asciz " cr2=0x"
msg_tr:		.asciz " tr=0x"
hex_digits:	.ascii "0123456789abcdef"

	.balign 16
tg_boot_gdt: /* multiboot only: what tg_entry32 jumps to 64-bit code with */
	.quad 0
	.quad DESC_KCODE64
	.quad DESC_KDATA
tg_boot_gdt_end:

	.balign 8
	.word 0, 0, 0
tg_boot_gdt_ptr:
	.word tg_boot_gdt_end - tg_boot_gdt - 1
	.quad tg_boot_gdt

	.balign 8
	.word 0, 0, 0
tg_gdt_ptr:
	.word TGL_GDT_BYTES - 1
	.quad tg_gdt

	.balign 8
	.word 0, 0, 0
tg_idt_ptr:
	.word TGL_IDT_ENTRIES * 16 - 1
	.quad tg_idt

/*
 * Interrupt gates to the stubs. tg_isr_lo16/hi16 are the stubs' address
 * halves, computed by guest.ld (which checks that the stubs do not cross a
 * 64 KiB boundary and lie below 4 GiB).
 */
	.balign 16
tg_idt:
	.set vec, 0
	.rept TGL_IDT_ENTRIES
	.word tg_isr_lo16 + vec * 16
	.word TGL_SEL_KCODE
	.byte 0
	.byte 0x8e /* present, DPL 0, 64-bit interrupt gate */
	.word tg_isr_hi16
	.long 0
	.long 0
	.set vec, vec + 1
	.endr

/*
 * Multiboot page tables: the first 4 GiB identity-mapped with 2 MiB pages,
 * user-accessible, accessed and dirty preset. Unused on the castor path.
 */
	.section .tg_boot_pt, "a"
	.balign 4096
tg_boot_pml4:
	.quad tg_boot_pdpt + PTE_TABLE
	.fill 511, 8, 0
tg_boot_pdpt:
	.quad tg_boot_pd + 0 * 4096 + PTE_TABLE
	.quad tg_boot_pd + 1 * 4096 + PTE_TABLE
	.quad tg_boot_pd + 2 * 4096 + PTE_TABLE
	.quad tg_boot_pd + 3 * 4096 + PTE_TABLE
	.fill 508, 8, 0
tg_boot_pd:
	.set pde, 0
	.rept 2048
	.quad (pde << 21) + PTE_2M
	.set pde, pde + 1
	.endr

/* ---- the rw area (see layout.h); never relied on to be zero ---------------- */

	.section .tg_rw.state, "aw", @nobits
	.balign 4096
	.globl tg_vcpu_states
tg_vcpu_states:
	.skip TGL_STATE_BYTES

	.section .tg_rw.sys, "aw", @nobits
	.balign 4096
tg_gdt:
	.skip TGL_TSS_OFFSET
tg_tss:
	.skip TGL_TSS_STRIDE * TGL_MAX_CPUS
	.balign 4096

	.section .tg_rw.stacks, "aw", @nobits
	.balign 4096
tg_stacks:
	.skip TGL_STACK_STRIDE * TGL_MAX_CPUS

	.section .tg_rw.dev, "aw", @nobits
	.balign 4096
	.globl tg_dev_area
tg_dev_area:
	.skip TGL_DEV_BYTES

	.section .note.GNU-stack, "", @progbits
