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
 *
 * mh_test_no_commit_probe: set, a growth of the heap by more than one
 * arena skips its question to the kernel's overcommit policy (arenamap.c,
 * sys_could_commit), as under vm.overcommit_memory=1 where the answer is
 * always yes: a test (and a measurement built against the test library)
 * grows the heap by a terabyte on a host whose heuristic mode would refuse
 * it, without changing the host's setting.
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
MH_HIDDEN extern bool mh_test_no_commit_probe;

static inline bool test_hook_no_commit_probe(void)
{
	return LOAD_RELAXED(&mh_test_no_commit_probe);
}
#else
static inline bool test_hook_no_commit_probe(void)
{
	return false;
}

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
