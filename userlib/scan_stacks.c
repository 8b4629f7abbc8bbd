// SPDX-License-Identifier: MIT
/*
 * Each thread's stack, as its thread library knows it, for the quarantine
 * scan (scan_roots.c).
 *
 * A stopped thread's stack below its stack pointer is dead: its stale
 * copies of chunk addresses would keep chunks for nothing, so the scan
 * leaves that part out. But only that part: [the stack's low end, the
 * stack pointer) of that very thread, with the low end known exactly.
 * The mapping the stack pointer falls in does not tell it: a stack may be
 * given by the program (pthread_attr_setstack) at the top of a buffer or
 * of .bss with data below it, and the kernel merges an anonymous mapping
 * into the VMA of a thread stack above it when nothing (no guard of the
 * stack's own) stands between them; a guard page below the whole, or the
 * thread's control block above the stack pointer, proves nothing either
 * (docs/arenas-log.md, 2026-12-07: both were tried as such proofs and
 * failed).
 *
 * So each thread records its stack's bounds once, from the thread library
 * (pthread_getattr_np: the stack the library made, less its guard, or the
 * one the program gave), in a thread-local the stop handler copies into
 * the thread's slot (scan_stop.c): a TLS load, async-signal-safe with the
 * initial-exec model. The main thread records nothing: its stack is the
 * kernel's [stack] mapping, which the kernel grows and never merges with a
 * neighbour, and scan_roots.c takes that mapping's start as its low end. A
 * thread with no bounds recorded has its stack read whole, dead part
 * included: more chunks kept by stale copies there, never one released
 * while pointed into.
 *
 * When a thread records them (scan_stack_record) is the one rule here:
 * pthread_getattr_np calls realloc with the calling thread's own lock held
 * (glibc), so it must never be called from inside an allocation that
 * pthread_getattr_np itself may have made.
 *  - The static library (not the process's malloc: glibc's realloc serves
 *    pthread_getattr_np): when the thread makes its heap cache
 *    (mcache_create: its first allocation or free), which covers every
 *    thread that has called the heap.
 *  - Everywhere, the shared object included: when the thread creates an
 *    arena (mh_arena_new) or allocates from one past the inline fast path
 *    (mh_arena_alloc_slow_: an arena's first allocation in particular),
 *    before any lock. The C library never calls these, so they are never
 *    reached inside pthread_getattr_np; and a thread that uses arenas is
 *    the one whose stack holds pointers into arena chunks.
 *  - Not at cache creation when the heap is the process's malloc
 *    (mh_process_malloc: the shared object's standard names, preload.c):
 *    a thread whose first allocation is the realloc inside
 *    pthread_getattr_np (programs ask for their own stack at a thread's
 *    start: Rust's runtime does) would wait there for itself, and a cache
 *    made inside a free would run allocations in the middle of it. So in
 *    the shared object a thread that never calls the arena API has its
 *    stack read whole.
 * A signal handler that calls the arena API inside pthread_getattr_np
 * would wait for its own thread too; the arena API is no more
 * async-signal-safe than malloc (arena_lock, the heap's locks), so such a
 * handler is already wrong. A child of fork runs the forking thread as
 * its main thread, on that thread's stack: it keeps the bounds recorded in
 * the parent, still right; without them it records none (its tid is the
 * pid) and, its stack pointer being off [stack], its stack is read whole.
 * Recording needs no initialisation: a thread made before the library's
 * constructor records at its first such call like any other.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "scan_impl.h"

/* The calling thread's stack: [lo, hi), both 0 until recorded; asked once
 * it has tried (the main thread's and a refusal's answer is "none"). */
static __thread struct {
	uintptr_t lo, hi;
	bool asked;
} own_stack __attribute__((tls_model("initial-exec")));

void scan_stack_record(void)
{
	pthread_attr_t a;
	void *addr;
	size_t size;

	if (own_stack.asked)
		return;
	own_stack.asked = true;
	if (syscall(SYS_gettid) == getpid() || pthread_getattr_np(pthread_self(), &a))
		return;
	if (!pthread_attr_getstack(&a, &addr, &size) && size) {
		/* lo first: a stop in between reads hi 0, bounds unknown. */
		STORE_RELAXED(&own_stack.lo, (uintptr_t)addr);
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		STORE_RELAXED(&own_stack.hi, (uintptr_t)addr + size);
	}
	pthread_attr_destroy(&a);
}

bool scan_stack_own(uintptr_t *lo, uintptr_t *hi)
{
	*hi = LOAD_RELAXED(&own_stack.hi);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	*lo = LOAD_RELAXED(&own_stack.lo);
	return *hi > *lo;
}
