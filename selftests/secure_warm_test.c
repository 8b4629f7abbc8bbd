// SPDX-License-Identifier: GPL-2.0
/*
 * A freed guarded block's resident pages in the secure heap
 * (MHEAP_SECURE=1) serve the next block of a fitting size, at another
 * address (warm pages, arena_warm.c): when they move and when not, calloc
 * on them, how many blocks and bytes stay warm, where a warm chunk's guard
 * place goes, and a child of fork() taking them as copies.
 *
 * Runs in the secure mode without sampling, guarded blocks from 32 KiB
 * (secure_fixture.h).
 */
#define _GNU_SOURCE
#include <pthread.h>

#define SECURE_TEST_ENV	"MHEAP_SECURE_LARGE=32K",
#include "secure_fixture.h"
#include "arena_impl.h"
#include "mheap_impl.h"
#include "pagealloc.h"
#include "guarded_fixture.h"

/* The block of pages [p's page, end of p + size) that a guarded block of
 * size bytes at p lies in: its resident pages, by mincore. */
static size_t resident_pages_of(const char *p, size_t size)
{
	uintptr_t lo = (uintptr_t)p & ~(uintptr_t)4095;

	return resident_pages_in((void *)lo, (uintptr_t)p + size - lo);
}

#define WARM_SIZE	((size_t)256 << 10)	/* a large block, 64 OS pages */

/* A block of WARM_SIZE bytes with its first touched bytes written, freed;
 * the resident pages of the next block of that size, allocated before it
 * is touched (*same: at the same address). */
static size_t resident_in_next_block(size_t touched, bool *same)
{
	char *p = mh_malloc(WARM_SIZE), *q;
	size_t n;

	if (!p)
		abort();
	memset(p, 1, touched);
	mh_free(p);
	q = mh_malloc(WARM_SIZE);
	if (!q)
		abort();
	n = resident_pages_of(q, WARM_SIZE);
	*same = p == q;
	mh_free(q);
	return n;
}

/*
 * A freed guarded block's pages move warm (arena_warm.c): the next block of
 * a fitting size is at another address, but its pages are resident before
 * it is touched, where before every one was faulted in again.
 */
TEST_F(blocks, a_freed_blocks_pages_serve_the_next_block_at_another_address)
{
	RETURN_IF_SETUP_SKIPPED();

	bool same;

	EXPECT_EQ(WARM_SIZE / 4096, resident_in_next_block(WARM_SIZE, &same));
	EXPECT_FALSE(same);
}

/* The pages keep the old block's data, which calloc must not show. */
TEST_F(blocks, calloc_on_a_freed_blocks_pages_reads_zero)
{
	RETURN_IF_SETUP_SKIPPED();

	char *p = mh_malloc(WARM_SIZE), *q;

	ASSERT_NE(NULL, p);
	memset(p, 0xa5, WARM_SIZE);
	mh_free(p);
	q = mh_calloc(1, WARM_SIZE);
	ASSERT_NE(NULL, q);
	EXPECT_EQ(WARM_SIZE, first_wrong((unsigned char *)q, WARM_SIZE, false));
	mh_free(q);
}

/*
 * A block that was hardly touched keeps no pages worth a move (a system
 * call and VMAs for a page or two): its pages go with the fault as
 * before, and the next block's are not resident.
 */
TEST_F(blocks, a_freed_block_with_few_resident_pages_does_not_move)
{
	RETURN_IF_SETUP_SKIPPED();

	bool same;

	EXPECT_EQ(0, resident_in_next_block(1, &same));
}

/* With recycling off (MHEAP_ARENA_RECYCLE=0) no pages move. */
TEST_F(blocks, without_recycling_a_freed_blocks_pages_are_dropped)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg;
	bool same;

	arena_config_get(&cfg);
	cfg.recycle = false;
	arena_configure(&cfg);
	EXPECT_EQ(0, resident_in_next_block(WARM_SIZE, &same));
}

/*
 * A guarded block's chunk takes released free pages before the heap's
 * resident free ones, which first fit would take: its free drops its pages
 * (the fault over the chunk), so on resident pages it took from the heap
 * pages that the next blocks there then faulted in again (peakfree-t2:
 * about 10 k faults a round of thread 0's peak, docs/secure.md).
 */
TEST_F(blocks, a_guarded_blocks_chunk_leaves_resident_free_pages_alone)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { HOLE = 64 };	/* pages: twice the block's */
	uintptr_t hole, edge, at;
	char *p;

	mh_free(mh_malloc(1));	/* the heap set up */
	mh_lock(&mh_heap.lock);
	hole = pa_alloc(HOLE, 1, PA_LOW).base;
	edge = pa_alloc(1, 1, PA_LOW).base;	/* bounds the hole */
	pa_free(hole, HOLE, false);		/* resident free pages, the lowest */
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, hole);
	p = mh_malloc(WARM_SIZE);
	ASSERT_NE(NULL, p);
	at = (uintptr_t)p;
	mh_free(p);
	mh_lock(&mh_heap.lock);
	pa_free(edge, 1, false);
	mh_unlock(&mh_heap.lock);
	EXPECT_TRUE(at >= hole + ((uintptr_t)HOLE << MH_PAGE_SHIFT) || at + WARM_SIZE <= hole) {
		TH_LOG("block at %#lx, resident free pages at %#lx", (unsigned long)at,
		       (unsigned long)hole);
	}
}

/* Allocate n (at most 16) blocks of WARM_SIZE bytes, write them in full,
 * then free them all, oldest first; false if a malloc failed. */
static bool free_written_blocks(int n)
{
	char *p[16];
	int k;

	for (k = 0; k < n && k < 16; k++) {
		p[k] = mh_malloc(WARM_SIZE);
		if (!p[k])
			break;
		memset(p[k], 1, WARM_SIZE);
	}
	for (int i = 0; i < k; i++)
		mh_free(p[i]);
	return k == n;
}

/*
 * At most WARM_BLOCKS_KEPT freed blocks keep their pages warm, the most
 * recently freed, whatever the byte cap allows. Before, only the cap held
 * them, and a new block looked at the 16 most recent alone: the others
 * stayed resident for no block (realloc growth: 1.5x the peak RSS).
 */
TEST_F(blocks, at_most_a_fixed_number_of_freed_blocks_stay_warm)
{
	RETURN_IF_SETUP_SKIPPED();

	ASSERT_TRUE(free_written_blocks(WARM_BLOCKS_KEPT + 4));
	EXPECT_EQ(WARM_BLOCKS_KEPT, warm_blocks.count);
}

/*
 * Warm block chunks hold at most MHEAP_ARENA_WARM_MAX (with the arenas'
 * warm chunks): the oldest give their pages back to make room. Of eight
 * freed blocks under a cap of three, only the last three's pages serve the
 * next eight.
 */
TEST_F(blocks, warm_pages_stay_under_the_cap)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { N = 8, KEPT = 3 };
	size_t chunk = WARM_SIZE + 8192, resident = 0;	/* its pages and guard */
	struct arena_config cfg;
	char *p[N];

	arena_config_get(&cfg);
	cfg.warm_max = KEPT * chunk;
	arena_configure(&cfg);
	ASSERT_TRUE(free_written_blocks(N));
	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(WARM_SIZE);
		ASSERT_NE(NULL, p[i]);
		resident += resident_pages_of(p[i], WARM_SIZE);
	}
	EXPECT_EQ(KEPT * (WARM_SIZE / 4096), resident);
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
}

/*
 * A warm block chunk whose pages move on into a larger block (a
 * transplant) goes back to the page heap whole, the place of its guard
 * included, which it took from the page heap as it was: that place may
 * hold a freed block's data, and a small span made there later must not
 * be taken for zeroed, or the check at reuse reports a write after free
 * nobody made (fixed in be7b4f6: misuse_none_test's no_misuse caught it about
 * one run in 12). The page heap is laid out for it: block b's chunk (its
 * pages and guard), then a block x of the default heap's (a large span
 * just below MHEAP_SECURE_LARGE, its canary and trailer at its pages'
 * end), written and freed (by a thread that exits, so that its pages are
 * the heap's again at once); b's pages move to a warm chunk of b's chunk's
 * size, placed where x was, so the warm chunk's guard place is x's last
 * page; a larger block takes b's pages on; then small blocks (of a class
 * whose spans are one page: 128 B slots, the block and its trailer) fill
 * the lowest free pages until the first slot of that page is handed out:
 * x's canary lies there. (The slot a
 * thread holds back, secure.c, may keep it for a few allocations.)
 */
static void *free_and_exit(void *p)
{
	mh_free(p);
	return NULL;
}

/* Free p, a middle block, in a thread that exits at once: its pages are
 * the heap's again now, not after the delay of this thread's next frees
 * (secure_middle.c). */
static void free_in_a_thread(void *p)
{
	pthread_t t;

	if (pthread_create(&t, NULL, free_and_exit, p) || pthread_join(t, NULL))
		abort();
}

TEST_F(blocks, a_transplanted_warm_chunks_guard_place_is_clean_for_small_spans)
{
	RETURN_IF_SETUP_SKIPPED();

	enum {
		B_SIZE = 32 << 10,		/* guarded: pages of 32 KiB, then the guard */
		B_CHUNK = B_SIZE + 8192,
		X_SIZE = B_SIZE - 4,		/* a large span of the same 40 KiB */
		C_SIZE = 64 << 10,		/* larger than b's warm chunk: a transplant */
		SMALL = 120,			/* 128 B slots: one-page spans */
		MAX_SMALL = 4096,
	};
	static char *small[MAX_SMALL];
	char *b = mh_malloc(B_SIZE), *x, *c, *place;
	int n;

	ASSERT_NE(NULL, b);
	x = mh_malloc(X_SIZE);
	ASSERT_EQ(b + B_CHUNK, x) TH_LOG("the large span does not follow b's chunk");
	memset(x, 'x', X_SIZE);
	free_in_a_thread(x);
	memset(b, 'b', B_SIZE);
	mh_free(b);
	c = mh_malloc(C_SIZE);
	ASSERT_NE(NULL, c);
	/* b's pages are c's last ones, resident before c is touched. */
	ASSERT_EQ(B_SIZE / 4096, resident_pages_of(c, C_SIZE));
	place = x + B_SIZE;
	for (n = 0; n < MAX_SMALL; n++) {
		small[n] = mh_malloc(SMALL);
		ASSERT_NE(NULL, small[n]);
		if (small[n] == place)
			break;
	}
	ASSERT_LT(n, MAX_SMALL) TH_LOG("no small block at the warm chunk's guard place %p", place);
	EXPECT_EQ(SMALL, mh_usable_size(small[n]));
	for (int i = 0; i <= n && i < MAX_SMALL; i++)
		mh_free(small[i]);
	mh_free(c);
}

static void use_warm_pages(void *arg)
{
	char *q = mh_malloc(WARM_SIZE);

	(void)arg;
	if (!q)
		_exit(2);
	memset(q, 'c', WARM_SIZE);
	mh_free(q);
}

/* A child of fork() takes the warm pages as copies: the parent's next
 * block has them, with what the parent wrote, not the child's. */
TEST_F(blocks, a_forked_child_uses_warm_pages_as_copies)
{
	RETURN_IF_SETUP_SKIPPED();

	struct child_result r;
	char *p = mh_malloc(WARM_SIZE), *q;

	ASSERT_NE(NULL, p);
	memset(p, 'p', WARM_SIZE);
	mh_free(p);
	run_child(use_warm_pages, NULL, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x: %s", r.status, r.err);
	ASSERT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	q = mh_malloc(WARM_SIZE);
	ASSERT_NE(NULL, q);
	ASSERT_EQ((WARM_SIZE + 4095) / 4096, resident_pages_of(q, WARM_SIZE));
	EXPECT_EQ('p', q[0]);
	EXPECT_EQ('p', q[WARM_SIZE - 1]);
	mh_free(q);
}

TEST_HARNESS_MAIN
