// SPDX-License-Identifier: GPL-2.0
/*
 * The secure heap's zero-size range (userlib/secure_zero.c) at its
 * boundary: with all of its 4 Mi slots live, or all but a few, malloc(0)
 * still gives a unique pointer at once - the free slots in the order of
 * the range's rotating cursor, then a block of the heap - and the range's
 * bits still catch a double free. Each case fills the range in a child of
 * its own. Runs in the secure mode without sampling (secure_fixture.h).
 * Unique pointers and the fall-back block when the range is merely full
 * are secure_test's too; what a zero-size pointer's access gives is
 * misuse_test's.
 */
#define _GNU_SOURCE
#include <time.h>

#include "secure_fixture.h"
#include "arenamap.h"

#define ZERO_SLOT	16
#define ZERO_SLOTS	((size_t)1 << 22)	/* docs/secure.md: 4 Mi live slots */

/* The fastest of the calls timed must be under this: a malloc(0) that
 * scans the range bit by bit takes milliseconds, a word-wise scan of its
 * summary microseconds
 * (docs/secure-log.md#the-zero-size-ranges-search-2026-12-07-issue-26). */
#define FAST_NS		250000

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* malloc(0) until the range is full: returns its first slot (the range
 * is fresh in a child, and its cursor starts at slot 0) and exits the
 * child with 2 if the range does not hold ZERO_SLOTS, or a slot repeats
 * the order. The block of the heap that showed it full is freed. */
static uintptr_t fill_the_range(void)
{
	uintptr_t base = (uintptr_t)mh_malloc(0), q;
	size_t n = 1;

	if (!base || span_of(base))
		_exit(2);
	for (;;) {
		q = (uintptr_t)mh_malloc(0);
		if (!q)
			_exit(2);
		if (span_of(q))
			break;
		if (q != base + n * ZERO_SLOT)	/* a fresh range fills in order */
			_exit(2);
		n++;
	}
	mh_free((void *)q);
	if (n != ZERO_SLOTS)
		_exit(2);
	return base;
}

/* With the range full, malloc(0) takes a block of the heap, each unique,
 * at once: the fastest of 16 is under FAST_NS. Exits 3 when slow (the time
 * on stderr), 4 when a pointer is not a heap block or repeats. */
static void full_range(void *arg)
{
	enum { N = 16 };
	void *p[N];
	uint64_t fastest = UINT64_MAX;

	(void)arg;
	fill_the_range();
	for (int i = 0; i < N; i++) {
		uint64_t t = now_ns();

		p[i] = mh_malloc(0);
		t = now_ns() - t;
		if (t < fastest)
			fastest = t;
		if (!p[i] || !span_of((uintptr_t)p[i]) || mh_usable_size(p[i]) != 0)
			_exit(4);
		for (int j = 0; j < i; j++)
			if (p[j] == p[i])
				_exit(4);
	}
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
	fprintf(stderr, "fastest malloc(0) with the range full: %llu ns\n",
		(unsigned long long)fastest);
	_exit(fastest < FAST_NS ? 0 : 3);
}

/* The defect it catches: each such malloc(0) scanning the range's 4 Mi
 * bits one by one under its lock, milliseconds a call. */
TEST(malloc_0_with_the_range_full_takes_a_heap_block_at_once)
{
	struct child_result r;

	run_child(full_range, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
		TH_LOG("status %#x (2: fill, 3: slow, 4: pointer), %s", r.status, r.err);
	TH_LOG("%.*s", (int)strcspn(r.err, "\n"), r.err);	/* the time */
}

/* A few slots free in a full range come back in the cursor's order (the
 * cursor stands at slot 0 after the fill: it wrapped), each unique, and
 * then the range is full again. Exits 5 when one comes back out of order. */
static void nearly_full_range(void *arg)
{
	static const size_t freed[] = { 5, 63, 64, 100000, ZERO_SLOTS / 2 + 3, ZERO_SLOTS - 1 };
	enum { N = sizeof(freed) / sizeof(freed[0]) };
	uintptr_t base;
	void *q;

	(void)arg;
	base = fill_the_range();
	for (int i = N - 1; i >= 0; i--)	/* freed in another order than taken */
		mh_free((void *)(base + freed[i] * ZERO_SLOT));
	for (int i = 0; i < N; i++) {
		q = mh_malloc(0);
		if ((uintptr_t)q != base + freed[i] * ZERO_SLOT) {
			fprintf(stderr, "malloc(0) %d: %p, slot %zu expected\n", i, q, freed[i]);
			_exit(5);
		}
	}
	q = mh_malloc(0);
	if (!q || !span_of((uintptr_t)q))
		_exit(4);
	mh_free(q);
	_exit(0);
}

TEST(a_nearly_full_ranges_free_slots_come_back_in_the_cursors_order)
{
	struct child_result r;

	run_child(nearly_full_range, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
		TH_LOG("status %#x (2: fill, 4: no heap block when full, 5: order), %s",
		       r.status, r.err);
}

/* The worst case of a nearly full range: the one free slot is the one
 * just before the cursor, so the search goes all the way round. 16 times
 * (a slot freed, malloc(0) gives it back): the fastest under FAST_NS. */
static void one_slot_behind_the_cursor(void *arg)
{
	enum { N = 16 };
	uint64_t fastest = UINT64_MAX;
	uintptr_t base, slot;

	(void)arg;
	base = fill_the_range();
	/* The cursor is at slot 0: the slot behind it is the last. */
	slot = base + (ZERO_SLOTS - 1) * ZERO_SLOT;
	for (int i = 0; i < N; i++) {
		uint64_t t;
		void *q;

		mh_free((void *)slot);
		t = now_ns();
		q = mh_malloc(0);
		t = now_ns() - t;
		if (t < fastest)
			fastest = t;
		if ((uintptr_t)q != slot)
			_exit(5);
		/* The cursor is past it now: the slot behind it is this
		 * one again. */
	}
	fprintf(stderr, "fastest malloc(0) of the slot behind the cursor: %llu ns\n",
		(unsigned long long)fastest);
	_exit(fastest < FAST_NS ? 0 : 3);
}

/* The defect it catches: such a malloc(0) scanning the range bit by bit. */
TEST(malloc_0_finds_the_slot_behind_the_cursor_at_once)
{
	struct child_result r;

	run_child(one_slot_behind_the_cursor, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
		TH_LOG("status %#x (2: fill, 3: slow, 5: another slot), %s", r.status, r.err);
	TH_LOG("%.*s", (int)strcspn(r.err, "\n"), r.err);	/* the time */
}

/* A full range's slot freed twice is a double free, its bit clear. */
static void double_free_in_a_full_range(void *arg)
{
	uintptr_t base;

	(void)arg;
	base = fill_the_range();
	mh_free((void *)(base + 64 * ZERO_SLOT));
	fprintf(stderr, "%#lx\n", (unsigned long)(base + 64 * ZERO_SLOT));
	mh_free((void *)(base + 64 * ZERO_SLOT));
}

TEST(a_full_ranges_slot_freed_twice_is_a_double_free)
{
	expect_printed_double_free(_metadata, double_free_in_a_full_range);
}

TEST_HARNESS_MAIN
