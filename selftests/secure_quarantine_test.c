// SPDX-License-Identifier: GPL-2.0
/*
 * A freed guarded block of the secure heap (MHEAP_SECURE=1: large blocks,
 * and over-aligned ones here) goes to the arenas' quarantine, not to a
 * thread's cache; small ones stay there in a bounded number; released,
 * its address space goes back to the heap and its guard page is usable
 * memory again.
 *
 * Runs in the secure mode without sampling, guarded blocks from 32 KiB
 * (secure_fixture.h).
 */
#define _GNU_SOURCE
#define SECURE_TEST_ENV	"MHEAP_SECURE_LARGE=32K",
#include "secure_fixture.h"
#include "arena_impl.h"
#include "arenamap.h"
#include "mcache.h"
#include "guarded_fixture.h"

TEST(a_freed_large_block_is_quarantined_with_the_arenas_chunks)
{
	struct mh_stats before = { .size = sizeof(before) }, after = { .size = sizeof(after) };
	void *p = mh_malloc(1 << 20);

	ASSERT_NE(NULL, p);
	EXPECT_FALSE(mh_in_arena(p));
	mh_stats_read(&before);
	mh_free(p);
	mh_stats_read(&after);
	if (!strcmp(mh_backend_name(), "none"))
		SKIP(return, "the none backend does not fault");
	EXPECT_EQ(before.arena_chunks_quarantined + 1, after.arena_chunks_quarantined);
	EXPECT_LE(before.arena_quarantined_bytes + (1 << 20), after.arena_quarantined_bytes);
}

/* Frees keep no large block for the thread's reuse (largecache.c): a
 * freed block waits in quarantine like any other. */
TEST(a_thread_keeps_no_freed_large_block)
{
	for (size_t len = 40 << 10; len <= (512 << 10); len *= 2) {
		void *p = mh_malloc(len);

		ASSERT_NE(NULL, p);
		mh_free(p);
		ASSERT_NE(NULL, mh_tls_cache);
		EXPECT_EQ(0, mh_tls_cache->nlarge) TH_LOG("%zu bytes", len);
	}
}

/* Whether the guarded block that was at p is quarantined. */
static bool block_quarantined(const void *p)
{
	struct mspan *s = span_of((uintptr_t)p);
	const struct arena_chunk *c = s && s->state == MSPAN_CHUNK ? s->chunk_data : NULL;

	return c && c->state == CHUNK_QUARANTINED;
}

/*
 * Small guarded blocks (sampled ones; here over-aligned ones, which are
 * guarded too, since this program runs without sampling) hold their
 * structures and page tables while quarantined, about 500 bytes each
 * against the two pages of address space the budget counts: at most
 * SECURE_SMALL_BLOCKS_QUARANTINED of them stay, the oldest leaving first.
 * Before, every one stayed until the 4 GiB budget (server-like churn: 1.5x
 * default mheap's peak RSS).
 */
TEST(at_most_a_fixed_number_of_small_guarded_blocks_stay_quarantined)
{
	enum { CAP = SECURE_SMALL_BLOCKS_QUARANTINED };
	struct mh_stats before = { .size = sizeof(before) }, after = { .size = sizeof(after) };
	void *first = NULL, *second = NULL;

	if (!strcmp(mh_backend_name(), "none"))
		SKIP(return, "the none backend does not quarantine");
	mh_stats_read(&before);
	for (int i = 0; i < CAP + 1; i++) {
		void *p = mh_aligned_alloc(4 * MH_PAGE_SIZE, 64);

		ASSERT_NE(NULL, p);
		mh_free(p);
		ASSERT_TRUE(block_quarantined(p));
		if (i == 0)
			first = p;
		if (i == 1)
			second = p;
	}
	mh_stats_read(&after);
	EXPECT_EQ(before.arena_chunks_quarantined + CAP, after.arena_chunks_quarantined);
	EXPECT_FALSE(block_quarantined(first));
	EXPECT_TRUE(block_quarantined(second));
}

/*
 * A guarded block is malloc's memory: once a scan of the quarantine finds
 * no pointer into it, its address space goes back to the heap for later
 * blocks (only arena chunks are kept for arenas). Rounds of 1 MiB blocks,
 * each round freed and released, must not make the heap grow after the
 * first: before, every round took new address space and page tables.
 */
TEST(a_released_large_block_gives_its_address_space_back_to_the_heap)
{
	enum { BLOCKS = 32, ROUNDS = 8, SIZE = 1 << 20 };
	struct mh_stats st = { .size = sizeof(st) };
	uint64_t after_first = 0;

	if (!strcmp(mh_backend_name(), "none"))
		SKIP(return, "the none backend does not quarantine");
#ifdef __SANITIZE_THREAD__
	SKIP(return, "ThreadSanitizer's traces hold the addresses accessed: they keep chunks");
#endif
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < BLOCKS; i++) {
			char *p = mh_malloc(SIZE);

			ASSERT_NE(NULL, p);
			p[0] = p[SIZE - 1] = 1;
			mh_free(p);
		}
		mh_quarantine_release();
		mh_stats_read(&st);
		if (!r)
			after_first = st.heap_sys;
	}
	EXPECT_LT(st.heap_sys, after_first + (uint64_t)BLOCKS * SIZE);
}

/*
 * A guarded block's guard page is memory of the heap again once the block
 * is out of quarantine. Under the guard backend a block of 2 MiB or more is
 * quarantined with mprotect (its chunk owns page tables: fault_guard.c),
 * and neither that nor MADV_DONTNEED removes the guard entry its guard page
 * had while the block lived: released, the page heap held a page that
 * faulted, and the next block there died of SIGSEGV with no report. The
 * guard page's address is kept hidden from the quarantine's scan.
 */
TEST_F(blocks, a_released_large_blocks_guard_page_is_usable_again)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { SIZE = 4 << 20 };
	struct mh_stats st = { .size = sizeof(st) };
	int pipefd[2];
	char *p = mh_malloc(SIZE), *guard = p + SIZE;

	ASSERT_NE(NULL, p);
	p[0] = p[SIZE - 1] = 1;
	mh_free(p);
	mh_quarantine_release();
	mh_stats_read(&st);
	ASSERT_EQ(0, st.arena_chunks_quarantined);
	ASSERT_EQ(0, pipe(pipefd));
	/* write() reads the page in the kernel: EFAULT where it faults. */
	EXPECT_EQ(1, write(pipefd[1], guard, 1)) {
		TH_LOG("the guard page reads: %s", strerror(errno));
	}
	close(pipefd[0]);
	close(pipefd[1]);
}

TEST_HARNESS_MAIN
