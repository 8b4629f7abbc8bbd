/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The roots a C program keeps a pointer in, for the tests of the
 * quarantine scan (scan_*_test.c, quarantine_scan_test.c): a global, a
 * thread-local, another thread's stack, a register of a thread blocked in
 * a system call, a heap object, another live arena, an mmaped buffer.
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

/* A thread that holds the pointer on its stack or only in a register
 * while it is blocked in read(2) on a pipe; a byte 1 makes it drop the
 * pointer and block again, a byte 2 ends it. */
struct holder {
	pthread_t thread;
	int pipe[2];
	uintptr_t enc;
	bool in_register;
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
	atomic_store(&h->tid, (pid_t)syscall(SYS_gettid));
	if (h->in_register)
		block_with_register(h, h->enc);
	else
		block_with_stack(h, h->enc);
	/* Dropped: block again, holding nothing, until told to end. */
	while (c != 2 && read(h->pipe[0], &c, 1) == 1)
		;
	return NULL;
}

static bool holder_start(struct holder *h, uintptr_t enc, bool in_register)
{
	h->enc = enc;
	h->in_register = in_register;
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

enum root_kind {
	ROOT_GLOBAL,
	ROOT_THREAD_LOCAL,
	ROOT_THREAD_STACK,
	ROOT_THREAD_REGISTER,
	ROOT_HEAP_OBJECT,
	ROOT_ARENA,
	ROOT_MMAP_BUFFER,
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
};

static inline bool roots_init(struct roots *r)
{
	memset(r, 0, sizeof(*r));
	r->heap_object = mh_calloc(32, sizeof(void *));
	r->arena = mh_arena_new();
	r->arena_object = r->arena ? mh_arena_calloc(r->arena, 32, sizeof(void *)) : NULL;
	r->buffer = mmap(NULL, ROOTS_BUFFER_LEN, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return r->heap_object && r->arena_object && r->buffer != MAP_FAILED;
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
		r->holder_running = holder_start(&r->holder, enc, kind == ROOT_THREAD_REGISTER);
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
	}
	return false;
}

/* Why a root kind cannot be tested here, or NULL. */
static inline const char *root_unsupported(enum root_kind kind)
{
#if !defined(__x86_64__)
	if (kind == ROOT_THREAD_REGISTER)
		return "the register root is written for x86-64";
#endif
#ifdef __SANITIZE_THREAD__
	/* Such a thread is left running there, its stack read whole. */
	if (kind == ROOT_THREAD_REGISTER || kind == ROOT_THREAD_STACK)
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
	FIXTURE_VARIANT_ADD(fixture, heap_object) { .kind = ROOT_HEAP_OBJECT, extra }; \
	FIXTURE_VARIANT_ADD(fixture, another_live_arena) { .kind = ROOT_ARENA, extra }; \
	FIXTURE_VARIANT_ADD(fixture, mmap_buffer) { .kind = ROOT_MMAP_BUFFER, extra }

#endif
