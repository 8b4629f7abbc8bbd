/* SPDX-License-Identifier: MIT */
/*
 * Points where a test can hold a thread inside a race window the
 * scheduler almost never opens wide enough to test. Compiled into the
 * selftests' build of the library only (MH_TEST_HOOKS, set by
 * selftests/Makefile): the library that programs and benchmarks link has
 * no hook and no test for one.
 *
 * mh_test_remote_free_window: called twice by a remote free (free.c,
 * remote_free) with the pointer it frees: with pinned 0 after its span's
 * lookup and its checks and before its first write to the span, the
 * window in which the span may die and its struct start a new life; with
 * pinned 1 once it holds the span, before its bit (mspan.h, "Dying
 * spans").
 *
 * mh_test_release_window: called by the release of quarantined chunks
 * (arena_quarantine.c, release_run) with the first chunk's base, after
 * they left quarantine (CHUNK_RELEASING) and before they are opened: the
 * moment a stale access still faults in a chunk no longer quarantined.
 */
#ifndef MHEAP_TESTHOOKS_H
#define MHEAP_TESTHOOKS_H

#include "internal.h"

#ifdef MH_TEST_HOOKS
MH_HIDDEN extern void (*mh_test_remote_free_window)(uintptr_t p, int pinned);

static inline void test_hook_remote_free_window(uintptr_t p, int pinned)
{
	void (*hook)(uintptr_t, int) = LOAD_ACQUIRE(&mh_test_remote_free_window);

	if (hook)
		hook(p, pinned);
}
MH_HIDDEN extern void (*mh_test_release_window)(uintptr_t base);

static inline void test_hook_release_window(uintptr_t base)
{
	void (*hook)(uintptr_t) = LOAD_ACQUIRE(&mh_test_release_window);

	if (hook)
		hook(base);
}
#else
static inline void test_hook_remote_free_window(uintptr_t p, int pinned)
{
	(void)p;
	(void)pinned;
}

static inline void test_hook_release_window(uintptr_t base)
{
	(void)base;
}
#endif

#endif
