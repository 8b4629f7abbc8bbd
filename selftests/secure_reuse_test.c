// SPDX-License-Identifier: GPL-2.0
/*
 * Which block the secure heap hands out next (MHEAP_SECURE=1): never one
 * freed just now, free slots in a random order (aligned ones too), and
 * the slots a thread holds back for that order go back at its exit.
 *
 * Runs in the secure mode without sampling, guarded blocks from 32 KiB
 * (secure_fixture.h).
 */
#define _GNU_SOURCE
#include <pthread.h>

#define SECURE_TEST_ENV	"MHEAP_SECURE_LARGE=32K",
#include "secure_fixture.h"

/* No block freed among the last frees comes back from the next
 * allocations of its size. */
TEST(a_freed_block_waits_before_reuse)
{
	enum { N = 16 };
	void *freed[N];

	for (int i = 0; i < N; i++) {
		freed[i] = mh_malloc(64);
		mh_free(freed[i]);
	}
	for (int i = 0; i < N; i++) {
		void *p = mh_malloc(64);

		for (int j = 0; j < N; j++)
			EXPECT_NE(freed[j], p);
		mh_free(p);
	}
}

/* Consecutive allocations of one size do not take the span's free slots
 * in address order: some come after a higher one (a random one in two
 * swaps the slot held back for the next: 128 allocations in order have a
 * chance under 2^-100). */
TEST(free_slots_are_handed_out_in_a_random_order)
{
	enum { N = 128 };
	void *p[N];
	int descents = 0;

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(64);
		ASSERT_NE(NULL, p[i]);
		if (i && (uintptr_t)p[i] < (uintptr_t)p[i - 1])
			descents++;
	}
	EXPECT_LT(0, descents);
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
}

/* So do aligned ones, which C++'s operator new of 16 bytes or more asks
 * for (preload_cxx.c): before, they came from the default heap's next free
 * slot, in address order. */
TEST(aligned_blocks_are_handed_out_in_a_random_order_too)
{
	enum { N = 128 };
	void *p[N];
	int descents = 0;

	for (int i = 0; i < N; i++) {
		p[i] = mh_aligned_alloc(16, 64);
		ASSERT_NE(NULL, p[i]);
		ASSERT_EQ(0, (uintptr_t)p[i] % 16);
		if (i && (uintptr_t)p[i] < (uintptr_t)p[i - 1])
			descents++;
	}
	EXPECT_LT(0, descents);
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
}

static void *churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000; i++)
		mh_free(mh_malloc(48));
	return NULL;
}

/* The slots a thread holds back go back to the heap when it exits. */
TEST(a_threads_held_slots_go_back_at_its_exit)
{
	struct mh_stats st = { .size = sizeof(st) };
	pthread_t t;

	mh_stats_read(&st);
	uint64_t out = st.mallocs - st.frees;

	ASSERT_EQ(0, pthread_create(&t, NULL, churn, NULL));
	ASSERT_EQ(0, pthread_join(t, NULL));
	mh_stats_read(&st);
	EXPECT_EQ(out, st.mallocs - st.frees);
}

TEST_HARNESS_MAIN
