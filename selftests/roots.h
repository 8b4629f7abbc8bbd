/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The roots a C program keeps a pointer in, for the tests of the
 * quarantine scan (scan_*_test.c, quarantine_scan_test.c): a global, a
 * thread-local, another thread's stack, a register or a vector register
 * of a thread blocked in a system call, a heap object, another live arena,
 * an mmaped buffer, a buffer below a thread stack given in it.
 * Pointers travel XORed with KEY, and are put in place by functions that
 * do not inline, so that no other copy (a caller's frame or register) is
 * what a scan finds.
 */
#ifndef MHEAP_ROOTS_H
#define MHEAP_ROOTS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mheap.h"
#include "mheap_test.h"

#define KEY ((uintptr_t)0x5a5a5a5a5a5a5a5aull)

/* Whether thread tid is blocked in system call nr now. */
static bool in_syscall(pid_t tid, long nr)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	return read_number_file(path) == nr;
}

static bool wait_in_syscall(pid_t tid, long nr)
{
	for (int i = 0; i < 5000; i++) {
		if (in_syscall(tid, nr))
			return true;
		usleep(1000);
	}
	return false;
}

static void *volatile global_root;
static __thread void *volatile tls_root;

/*
 * Zero the calling thread's vector registers (x86-64; elsewhere nothing).
 * A thread starts with its creator's vector registers (clone copies
 * them), and those hold stale words: glibc's first pthread_create in a
 * process installs its SIGSETXID handler with a sigset_t of which
 * __sigemptyset clears only the first word, and sigaction copies all
 * 128 bytes through xmm0-xmm7, so xmm7 gets 16 bytes of dead stack
 * (docs/arenas-log.md, 2026-12-07: the freed chunk's base, left there by
 * mh_arena_alloc). The scan reads a stopped thread's vector registers
 * from its signal frame, as it must, and a thread that never touches the
 * register keeps that word for its life. The threads here hold the
 * pointer in their one root only, so they drop what they inherited.
 * noipa: the caller must assume every call-clobbered register is lost.
 */
static void __attribute__((noipa, unused)) clear_vector_registers(void)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx")) {
		/* ymm0-15 whole (zmm0-15 too, on a CPU with AVX-512). */
		__asm__ volatile("vzeroall");
	} else {
		__asm__ volatile("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\t"
				 "pxor %%xmm2, %%xmm2\n\tpxor %%xmm3, %%xmm3\n\t"
				 "pxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
				 "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\t"
				 "pxor %%xmm8, %%xmm8\n\tpxor %%xmm9, %%xmm9\n\t"
				 "pxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
				 "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\t"
				 "pxor %%xmm14, %%xmm14\n\tpxor %%xmm15, %%xmm15" ::: "memory");
	}
	if (__builtin_cpu_supports("avx512f")) {
		/* zmm16-31 (an EVEX write zeroes the upper bits) and k0-k7. */
		__asm__ volatile(
			"vpxorq %%xmm16, %%xmm16, %%xmm16\n\tvpxorq %%xmm17, %%xmm17, %%xmm17\n\t"
			"vpxorq %%xmm18, %%xmm18, %%xmm18\n\tvpxorq %%xmm19, %%xmm19, %%xmm19\n\t"
			"vpxorq %%xmm20, %%xmm20, %%xmm20\n\tvpxorq %%xmm21, %%xmm21, %%xmm21\n\t"
			"vpxorq %%xmm22, %%xmm22, %%xmm22\n\tvpxorq %%xmm23, %%xmm23, %%xmm23\n\t"
			"vpxorq %%xmm24, %%xmm24, %%xmm24\n\tvpxorq %%xmm25, %%xmm25, %%xmm25\n\t"
			"vpxorq %%xmm26, %%xmm26, %%xmm26\n\tvpxorq %%xmm27, %%xmm27, %%xmm27\n\t"
			"vpxorq %%xmm28, %%xmm28, %%xmm28\n\tvpxorq %%xmm29, %%xmm29, %%xmm29\n\t"
			"vpxorq %%xmm30, %%xmm30, %%xmm30\n\tvpxorq %%xmm31, %%xmm31, %%xmm31\n\t"
			"kxorw %%k0, %%k0, %%k0\n\tkxorw %%k1, %%k1, %%k1\n\t"
			"kxorw %%k2, %%k2, %%k2\n\tkxorw %%k3, %%k3, %%k3\n\t"
			"kxorw %%k4, %%k4, %%k4\n\tkxorw %%k5, %%k5, %%k5\n\t"
			"kxorw %%k6, %%k6, %%k6\n\tkxorw %%k7, %%k7, %%k7" ::: "memory");
	}
#endif
}

/* A thread that holds the pointer on its stack or only in a register
 * while it is blocked in read(2) on a pipe; a byte 1 makes it drop the
 * pointer and block again, a byte 2 ends it. */
enum holder_place {
	HOLD_STACK,
	HOLD_REGISTER,	/* r12 */
	HOLD_VECTOR,	/* xmm15's upper half */
};

struct holder {
	pthread_t thread;
	int pipe[2];
	uintptr_t enc;
	enum holder_place place;
	_Atomic pid_t tid;
};

static void __attribute__((noinline)) block_with_register(struct holder *h, uintptr_t enc)
{
#if defined(__x86_64__)
	char c = 0;
	long ret;

	/* The pointer exists only in r12 while read blocks. */
	__asm__ volatile("movq %[enc], %%r12\n\t"
			 "xorq %[key], %%r12\n\t"
			 "syscall\n\t"
			 "xorl %%r12d, %%r12d"
			 : "=a"(ret)
			 : "a"((long)SYS_read), "D"((long)h->pipe[0]), "S"(&c), "d"(1L),
			   [enc] "r"(enc), [key] "r"(KEY)
			 : "rcx", "r11", "r12", "memory");
	(void)ret;
#else
	(void)h;
	(void)enc;
#endif
}

/* The same in a vector register: the kernel saves it in the stop's signal
 * frame with the FP/SIMD state, which the scan reads as the thread's
 * registers (glibc's own copies leave pointers there: clear_vector_registers). */
static void __attribute__((noinline)) block_with_vector(struct holder *h, uintptr_t enc)
{
#if defined(__x86_64__)
	char c = 0;
	long ret;

	/* The pointer exists only in xmm15's upper half while read blocks. */
	__asm__ volatile("movq %[enc], %%xmm15\n\t"
			 "movq %[key], %%xmm14\n\t"
			 "pxor %%xmm14, %%xmm15\n\t"
			 "pslldq $8, %%xmm15\n\t"
			 "pxor %%xmm14, %%xmm14\n\t"
			 "syscall\n\t"
			 "pxor %%xmm15, %%xmm15"
			 : "=a"(ret)
			 : "a"((long)SYS_read), "D"((long)h->pipe[0]), "S"(&c), "d"(1L),
			   [enc] "r"(enc), [key] "r"(KEY)
			 : "rcx", "r11", "xmm14", "xmm15", "memory");
	(void)ret;
#else
	(void)h;
	(void)enc;
#endif
}

static char __attribute__((noinline)) block_with_stack(struct holder *h, uintptr_t enc)
{
	volatile uintptr_t slot = enc ^ KEY;
	char c = 0;

	if (read(h->pipe[0], &c, 1) != 1)
		c = 2;
	slot = 0;
	(void)slot;
	return c;
}

static void *holder_main(void *arg)
{
	struct holder *h = arg;
	char c = 0;

	/* An allocation first, as a thread that holds heap pointers has made:
	 * the heap then knows its stack, whose dead part (where the pointer
	 * was once overwritten) is not a root (userlib/scan_stacks.c). */
	mh_free(mh_malloc(16));
	clear_vector_registers();
	atomic_store(&h->tid, (pid_t)syscall(SYS_gettid));
	if (h->place == HOLD_REGISTER)
		block_with_register(h, h->enc);
	else if (h->place == HOLD_VECTOR)
		block_with_vector(h, h->enc);
	else
		block_with_stack(h, h->enc);
	/* Dropped: block again, holding nothing, until told to end. */
	while (c != 2 && read(h->pipe[0], &c, 1) == 1)
		;
	return NULL;
}

static bool holder_start(struct holder *h, uintptr_t enc, enum holder_place place)
{
	h->enc = enc;
	h->place = place;
	atomic_store(&h->tid, 0);
	if (pipe(h->pipe) || pthread_create(&h->thread, NULL, holder_main, h))
		return false;
	while (!atomic_load(&h->tid))
		usleep(100);
	return wait_in_syscall(atomic_load(&h->tid), SYS_read);
}

/* Let it drop the pointer and block again. */
static bool holder_drop(struct holder *h)
{
	char c = 1;

	if (write(h->pipe[1], &c, 1) != 1)
		return false;
	usleep(20000);
	return wait_in_syscall(atomic_load(&h->tid), SYS_read);
}

static void holder_stop(struct holder *h)
{
	char c = 2;

	if (write(h->pipe[1], &c, 1) == 1 && write(h->pipe[1], &c, 1) == 1)
		pthread_join(h->thread, NULL);
	close(h->pipe[0]);
	close(h->pipe[1]);
}

/*
 * A buffer that starts at a guard page and holds a thread's stack at its
 * top (pthread_attr_setstack), the thread blocked in read(2) on a pipe:
 * the pointer goes in the buffer's first page, below the stack. A mapping
 * of that shape is what a stack the thread library made looks like; the
 * data below the stack is a root all the same (userlib/scan_stacks.c).
 */
#define BELOW_LEN ((size_t)4 << 20)
#define BELOW_PAGE ((size_t)4096)

struct below_stack {
	char *map;		/* the guard page, then BELOW_LEN */
	pthread_t thread;
	int pipe[2];
	_Atomic pid_t tid;
	bool running;
};

static void *below_main(void *arg)
{
	struct below_stack *b = arg;
	char c = 0;

	mh_free(mh_malloc(16));	/* the heap knows the thread (roots above) */
	clear_vector_registers();
	atomic_store(&b->tid, (pid_t)syscall(SYS_gettid));
	while (read(b->pipe[0], &c, 1) == 1 && c != 2)
		;
	return NULL;
}

static bool below_start(struct below_stack *b)
{
	pthread_attr_t at;
	bool ok;

	if (b->running)
		return true;
	atomic_store(&b->tid, 0);
	if (pipe(b->pipe) || pthread_attr_init(&at))
		return false;
	/* The stack: the buffer's top half (room for a sanitizer's TLS). */
	ok = !pthread_attr_setstack(&at, b->map + BELOW_PAGE + BELOW_LEN / 2, BELOW_LEN / 2) &&
	     !pthread_create(&b->thread, &at, below_main, b);
	pthread_attr_destroy(&at);
	if (!ok)
		return false;
	b->running = true;
	while (!atomic_load(&b->tid))
		usleep(100);
	return wait_in_syscall(atomic_load(&b->tid), SYS_read);
}

static void below_stop(struct below_stack *b)
{
	char c = 2;

	if (!b->running)
		return;
	if (write(b->pipe[1], &c, 1) == 1)
		pthread_join(b->thread, NULL);
	close(b->pipe[0]);
	close(b->pipe[1]);
	b->running = false;
}

/* Where the pointer goes: the buffer's first page, above the guard. */
static inline volatile uintptr_t *below_slot(struct below_stack *b)
{
	return (volatile uintptr_t *)(b->map + BELOW_PAGE + 64);
}

enum root_kind {
	ROOT_GLOBAL,
	ROOT_THREAD_LOCAL,
	ROOT_THREAD_STACK,
	ROOT_THREAD_REGISTER,
	ROOT_THREAD_VECTOR_REGISTER,
	ROOT_HEAP_OBJECT,
	ROOT_ARENA,
	ROOT_MMAP_BUFFER,
	ROOT_BELOW_A_THREAD_STACK,
};

#define ROOTS_BUFFER_LEN ((size_t)1 << 20)

/* Every root but the globals, made by roots_init. */
struct roots {
	struct holder holder;
	bool holder_running;
	void **heap_object;
	mh_arena *arena;
	void **arena_object;
	char *buffer;
	struct below_stack below;
};

static inline bool roots_init(struct roots *r)
{
	memset(r, 0, sizeof(*r));
	r->heap_object = mh_calloc(32, sizeof(void *));
	r->arena = mh_arena_new();
	r->arena_object = r->arena ? mh_arena_calloc(r->arena, 32, sizeof(void *)) : NULL;
	r->buffer = mmap(NULL, ROOTS_BUFFER_LEN, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	r->below.map = mmap(NULL, BELOW_PAGE + BELOW_LEN, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return r->heap_object && r->arena_object && r->buffer != MAP_FAILED &&
	       r->below.map != MAP_FAILED && !mprotect(r->below.map, BELOW_PAGE, PROT_NONE);
}

static inline void roots_fini(struct roots *r)
{
	if (r->holder_running)
		holder_stop(&r->holder);
	global_root = NULL;
	tls_root = NULL;
	mh_free(r->heap_object);
	if (r->arena)
		mh_arena_free(r->arena);
	if (r->buffer != MAP_FAILED)
		munmap(r->buffer, ROOTS_BUFFER_LEN);
	below_stop(&r->below);
	if (r->below.map != MAP_FAILED)
		munmap(r->below.map, BELOW_PAGE + BELOW_LEN);
}

/* Put the pointer enc ^ KEY in root kind. Not inline (see the top), and
 * unused where a file takes only KEY and global_root from here. */
static bool __attribute__((noinline, unused)) root_set(struct roots *r, enum root_kind kind, uintptr_t enc)
{
	uintptr_t p = enc ^ KEY;

	switch (kind) {
	case ROOT_GLOBAL:
		global_root = (void *)p;
		return true;
	case ROOT_THREAD_LOCAL:
		tls_root = (void *)p;
		return true;
	case ROOT_THREAD_STACK:
	case ROOT_THREAD_REGISTER:
	case ROOT_THREAD_VECTOR_REGISTER:
		r->holder_running = holder_start(&r->holder, enc,
						 kind == ROOT_THREAD_REGISTER ? HOLD_REGISTER :
						 kind == ROOT_THREAD_VECTOR_REGISTER ? HOLD_VECTOR :
						 HOLD_STACK);
		return r->holder_running;
	case ROOT_HEAP_OBJECT:
		((volatile uintptr_t *)r->heap_object)[17] = p;
		return true;
	case ROOT_ARENA:
		((volatile uintptr_t *)r->arena_object)[9] = p;
		return true;
	case ROOT_MMAP_BUFFER:
		*(volatile uintptr_t *)(r->buffer + 700000) = p;
		return true;
	case ROOT_BELOW_A_THREAD_STACK:
		*below_slot(&r->below) = p;
		return below_start(&r->below);
	}
	return false;
}

/* Overwrite it where it was. */
static bool __attribute__((noinline, unused)) root_clear(struct roots *r, enum root_kind kind)
{
	switch (kind) {
	case ROOT_GLOBAL:
		global_root = NULL;
		return true;
	case ROOT_THREAD_LOCAL:
		tls_root = NULL;
		return true;
	case ROOT_THREAD_STACK:
	case ROOT_THREAD_REGISTER:
	case ROOT_THREAD_VECTOR_REGISTER:
		return holder_drop(&r->holder);
	case ROOT_HEAP_OBJECT:
		((volatile uintptr_t *)r->heap_object)[17] = 0;
		return true;
	case ROOT_ARENA:
		((volatile uintptr_t *)r->arena_object)[9] = 0;
		return true;
	case ROOT_MMAP_BUFFER:
		*(volatile uintptr_t *)(r->buffer + 700000) = 0;
		return true;
	case ROOT_BELOW_A_THREAD_STACK:
		*below_slot(&r->below) = 0;
		return true;
	}
	return false;
}

/* Why a root kind cannot be tested here, or NULL. */
static inline const char *root_unsupported(enum root_kind kind)
{
#if !defined(__x86_64__)
	if (kind == ROOT_THREAD_REGISTER || kind == ROOT_THREAD_VECTOR_REGISTER)
		return "the register roots are written for x86-64";
#endif
#ifdef __SANITIZE_THREAD__
	/* Such a thread is left running there, its stack read whole. */
	if (kind == ROOT_THREAD_REGISTER || kind == ROOT_THREAD_VECTOR_REGISTER ||
	    kind == ROOT_THREAD_STACK)
		return "ThreadSanitizer holds the stop signal back until a system call returns";
#endif
	(void)kind;
	return NULL;
}

#define ROOT_VARIANTS(fixture, extra...) \
	FIXTURE_VARIANT_ADD(fixture, global) { .kind = ROOT_GLOBAL, extra }; \
	FIXTURE_VARIANT_ADD(fixture, thread_local) { .kind = ROOT_THREAD_LOCAL, extra }; \
	FIXTURE_VARIANT_ADD(fixture, other_thread_stack) { .kind = ROOT_THREAD_STACK, extra }; \
	FIXTURE_VARIANT_ADD(fixture, register_of_a_thread_blocked_in_a_syscall) { \
		.kind = ROOT_THREAD_REGISTER, extra }; \
	FIXTURE_VARIANT_ADD(fixture, vector_register_of_a_thread_blocked_in_a_syscall) { \
		.kind = ROOT_THREAD_VECTOR_REGISTER, extra }; \
	FIXTURE_VARIANT_ADD(fixture, heap_object) { .kind = ROOT_HEAP_OBJECT, extra }; \
	FIXTURE_VARIANT_ADD(fixture, another_live_arena) { .kind = ROOT_ARENA, extra }; \
	FIXTURE_VARIANT_ADD(fixture, mmap_buffer) { .kind = ROOT_MMAP_BUFFER, extra }; \
	FIXTURE_VARIANT_ADD(fixture, below_a_thread_stack_in_a_buffer) { \
		.kind = ROOT_BELOW_A_THREAD_STACK, extra }

#endif
