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
#else
static inline void test_hook_remote_free_window(uintptr_t p, int pinned)
{
	(void)p;
	(void)pinned;
}
#endif

#endif
