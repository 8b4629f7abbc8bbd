// SPDX-License-Identifier: GPL-2.0
/*
 * The secure heap (MHEAP_SECURE=1) keeps the malloc family's contract when
 * nothing goes wrong: calloc zeroes, realloc keeps the contents,
 * malloc_usable_size is the size asked for, blocks are aligned as asked
 * (and as their size may need), malloc(0) gives a new pointer each time,
 * a small block once the zero-size range is full. What each misuse gives
 * is misuse_*_test's.
 *
 * Runs in the secure mode without sampling, guarded blocks from 32 KiB
 * (secure_fixture.h).
 */
#define _GNU_SOURCE
#define SECURE_TEST_ENV	"MHEAP_SECURE_LARGE=32K",
#include "secure_fixture.h"
#include "arenamap.h"

TEST(calloc_gives_zeroes_even_in_a_slot_used_before)
{
	for (size_t size = 16; size <= (1 << 20); size *= 4) {
		unsigned char *p = mh_malloc(size), *q;

		ASSERT_NE(NULL, p);
		memset(p, 0xff, size);
		mh_free(p);
		q = mh_calloc(1, size);
		ASSERT_NE(NULL, q);
		EXPECT_EQ(size, first_wrong(q, size, false)) TH_LOG("size %zu", size);
		mh_free(q);
	}
}

TEST(realloc_keeps_the_contents_growing_and_shrinking)
{
	size_t sizes[] = { 10, 100, 3000, 40000, 300000, 20, 70000, 5 };
	size_t old = 0;
	unsigned char *p = NULL;

	for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t keep = old < sizes[k] ? old : sizes[k];

		p = mh_realloc(p, sizes[k]);
		ASSERT_NE(NULL, p);
		EXPECT_EQ(keep, first_wrong(p, keep, true)) TH_LOG("%zu to %zu", old, sizes[k]);
		for (size_t i = 0; i < sizes[k]; i++)
			p[i] = (unsigned char)i;
		old = sizes[k];
	}
	mh_free(p);
}

TEST(usable_size_is_the_size_asked_for)
{
	for (size_t size = 1; size < (1 << 20); size = size * 3 + 1) {
		void *p = mh_malloc(size);

		EXPECT_EQ(size, mh_usable_size(p));
		mh_free(p);
	}
}

TEST(aligned_alloc_aligns_small_and_large_blocks)
{
	for (size_t align = 16; align <= (64 << 10); align *= 4) {
		for (size_t size = 8; size <= (256 << 10); size *= 8) {
			char *p = mh_aligned_alloc(align, size);

			ASSERT_NE(NULL, p);
			EXPECT_EQ(0, (uintptr_t)p % align) TH_LOG("align %zu size %zu", align, size);
			memset(p, 1, size);
			mh_free(p);
		}
	}
}

/* A block whose size is a multiple of 16 may hold an object that needs
 * 16-byte alignment (long double, __int128): its slot's class, with the
 * trailer, must not be one of 8-byte steps (24, 40, 56 bytes). */
TEST(malloc_of_a_multiple_of_16_bytes_is_16_aligned)
{
	for (size_t size = 16; size <= 256; size += 16) {
		for (int i = 0; i < 64; i++) {
			void *p = mh_malloc(size);

			ASSERT_NE(NULL, p);
			EXPECT_EQ(0, (uintptr_t)p % 16) TH_LOG("malloc(%zu)", size);
			mh_free(p);
		}
	}
}

/* The same for a block realloc'd in place to such a size. */
TEST(realloc_to_a_multiple_of_16_bytes_is_16_aligned)
{
	for (size_t from = 9; from < 48; from++) {
		for (int i = 0; i < 16; i++) {
			void *p = mh_malloc(from), *q;

			ASSERT_NE(NULL, p);
			q = mh_realloc(p, (from + 15) / 16 * 16);
			ASSERT_NE(NULL, q);
			EXPECT_EQ(0, (uintptr_t)q % 16) TH_LOG("realloc(%zu -> %zu)", from,
								(from + 15) / 16 * 16);
			mh_free(q);
		}
	}
}

TEST(malloc_0_gives_a_new_pointer_each_time)
{
	void *p[64];

	for (int i = 0; i < 64; i++) {
		p[i] = mh_malloc(0);
		ASSERT_NE(NULL, p[i]);
		for (int j = 0; j < i; j++)
			ASSERT_NE(p[j], p[i]);
	}
	EXPECT_EQ(0, mh_usable_size(p[0]));
	for (int i = 0; i < 64; i++)
		mh_free(p[i]);
}

/* In a child: malloc(0) until the zero-size range is full (its next block
 * is one of the heap's), then BEYOND_ZERO_RANGE blocks more of size 0,
 * each with nothing usable, and all freed (a free checks the block's
 * canary and trailer: one zeroed by a neighbour's free is an abort). */
#define BEYOND_ZERO_RANGE	16
static void malloc_0_beyond_the_zero_size_range(void *arg)
{
	void *p[BEYOND_ZERO_RANGE];
	void *q;

	(void)arg;
	do
		q = mh_malloc(0);
	while (q && !span_of((uintptr_t)q));
	if (!q)
		_exit(2);
	mh_free(q);
	for (int i = 0; i < BEYOND_ZERO_RANGE; i++) {
		p[i] = mh_malloc(0);
		if (!p[i] || !span_of((uintptr_t)p[i]) || mh_usable_size(p[i]) != 0)
			_exit(3);
	}
	for (int i = 0; i < BEYOND_ZERO_RANGE; i++)
		mh_free(p[i]);
	_exit(0);
}

/* With all the zero-size range's slots live, malloc(0) takes a small block
 * of the heap: allocated and freed as any other, never reading or writing
 * outside its slot (the eight 16-byte end pieces that check and zero a
 * small slot need one of 16 bytes at least). */
TEST(malloc_0_beyond_the_zero_size_range_takes_a_small_block)
{
	struct child_result res;

	run_child(malloc_0_beyond_the_zero_size_range, NULL, &res);
	EXPECT_TRUE(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0)
		TH_LOG("status %#x, %s", res.status, res.err);
}

TEST_HARNESS_MAIN
