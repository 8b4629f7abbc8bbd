// SPDX-License-Identifier: GPL-2.0
/*
 * The secure heap (MHEAP_SECURE=1) as a program sees it when nothing goes
 * wrong: the malloc family keeps its contract (contents, zeroing,
 * alignment, usable size), malloc(0) gives unique pointers, freed blocks
 * are not handed out again at once, free slots are handed out in a random
 * order, guarded blocks go to the arenas' quarantine (and their guard pages
 * come back usable) and their resident pages serve later blocks (warm
 * pages: when, how many, calloc, fork), the slots a thread holds back go
 * back at its exit, and a new small block's pages are the process's own,
 * not the shared zero page. What each misuse gives is misuse_test's. The
 * program starts itself again with MHEAP_SECURE=1 (and no sampling, so that
 * outcomes do not depend on it, and every block from 32 KiB guarded) when
 * it is not set: the mode is read when the heap is set up. Middle blocks
 * are secure_middle_test's.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arena.h"
#include "arena_impl.h"
#include "arenamap.h"
#include "entry.h"
#include "fault.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagealloc.h"
#include "secure.h"

/* The first byte of p[0..n) that is not the byte i would have in a block
 * filled with (unsigned char)i (pattern) or with zeroes (!pattern); n if
 * none. */
static size_t first_wrong(const unsigned char *p, size_t n, bool pattern)
{
	size_t i = 0;

	while (i < n && p[i] == (pattern ? (unsigned char)i : 0))
		i++;
	return i;
}

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
/*
 * Guarded blocks under each backend that faults them (not kmod: blocks
 * never take the module's memory), with the quarantine's scan off so that
 * mh_quarantine_release() releases every chunk whatever the stack holds.
 */
FIXTURE(blocks)
{
};

FIXTURE_VARIANT(blocks)
{
	const char *backend;
};

FIXTURE_VARIANT_ADD(blocks, guard) { .backend = "guard" };
FIXTURE_VARIANT_ADD(blocks, mprotect) { .backend = "mprotect" };

FIXTURE_SETUP(blocks)
{
	struct arena_config cfg;

	if (!fault_backend_select(variant->backend))
		SKIP(return, "%s backend does not work on this kernel", variant->backend);
	arena_config_get(&cfg);
	cfg.scan = false;
	arena_configure(&cfg);
}

FIXTURE_TEARDOWN(blocks)
{
}

/*
 * A guarded block's guard page is memory of the heap again once the block
 * is out of quarantine. Under the guard backend a block of 2 MiB or more is
 * quarantined with mprotect (its chunk owns page tables: fault_guard.c),
 * and neither that nor MADV_DONTNEED removes the guard entry its guard page
 * had while the block lived: released, the page heap held a page that
 * faulted, and the next block there died of SIGSEGV with no report.
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
 * nobody made (fixed in be7b4f6: misuse_test's no_misuse caught it about
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

/* Whether the page holding p is in memory but not this process's own
 * (/proc/self/pagemap: present, not mapped exclusively): the kernel's
 * shared zero page, which a read of a page never written maps. */
static bool shared_zero_page(int pagemap, uintptr_t p)
{
	uint64_t e = 0;
	off_t at = (off_t)(p / (uintptr_t)sysconf(_SC_PAGESIZE) * sizeof(e));

	if (pread(pagemap, &e, sizeof(e), at) != sizeof(e))
		return false;
	return (e >> 63 & 1) && !(e >> 56 & 1);
}

/* No page of a new small block is the shared zero page: the mode's check
 * that a slot is still zero reads it before anything writes it, and a read
 * of a page never faulted in maps the zero page, which the first write
 * then has to replace (a second fault, and a TLB flush on every CPU the
 * process runs on). Blocks of 20,000 bytes: five or six pages each, of
 * which the check reads the first and the last. */
TEST(no_page_of_a_new_small_block_is_the_shared_zero_page)
{
	enum { N = 16, SIZE = 20000 };
	int pagemap = open("/proc/self/pagemap", O_RDONLY);
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	char *p[N];

	if (pagemap < 0)
		SKIP(return, "no /proc/self/pagemap: %s", strerror(errno));
	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(SIZE);
		ASSERT_NE(NULL, p[i]);
		for (uintptr_t a = (uintptr_t)p[i]; a < (uintptr_t)p[i] + SIZE;
		     a = (a & ~(page - 1)) + page) {
			size_t at = a - (uintptr_t)p[i];

			EXPECT_FALSE(shared_zero_page(pagemap, a)) TH_LOG("block %d, offset %zu", i, at);
		}
	}
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
	close(pagemap);
}

enum { HANDED = 1000 };

static void *free_them(void *arg)
{
	char **p = arg;

	for (int i = 0; i < HANDED; i++)
		mh_free(p[i]);
	return NULL;
}

/* Blocks freed by a thread other than the one that allocated them go back
 * to their spans, counted and zeroed: their slots come back, zero, once
 * their spans are swept. */
TEST(blocks_freed_by_another_thread_are_counted_and_zeroed)
{
	struct mh_stats before = { .size = sizeof(before) }, after = { .size = sizeof(after) };
	static char *p[HANDED];
	pthread_t t;

	for (int i = 0; i < HANDED; i++) {
		p[i] = mh_malloc(48);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], 0xee, 48);
	}
	mh_stats_read(&before);
	ASSERT_EQ(0, pthread_create(&t, NULL, free_them, p));
	ASSERT_EQ(0, pthread_join(t, NULL));
	mh_stats_read(&after);
	EXPECT_EQ(before.frees + HANDED, after.frees);
	/* Until one of those slots comes back (the check at reuse aborts
	 * should one come back written). */
	for (int i = 0; i < 100 * HANDED; i++) {
		unsigned char *q = mh_calloc(1, 48);

		ASSERT_NE(NULL, q);
		ASSERT_EQ(48, first_wrong(q, 48, false));
		for (int j = 0; j < HANDED; j++)
			if ((char *)q == p[j])
				return;
	}
	ASSERT_TRUE(false) TH_LOG("no slot freed by the other thread came back");
}

/* The slot (its class's size) of p, a small block. */
static size_t slot_of(const void *p)
{
	return span_of((uintptr_t)p)->elemsize;
}

/* Free zeroes all of a small block's slot: the block, its canary and its
 * trailer, every byte whatever the class (up to 128 bytes by pieces at the
 * slot's two ends, above that by memset). Read after the free: a small
 * block not sampled stays readable. */
TEST(free_zeroes_every_byte_of_a_small_slot)
{
	for (size_t size = 1; size <= 600; size++) {
		unsigned char *p = mh_malloc(size);
		size_t room;

		ASSERT_NE(NULL, p);
		room = slot_of(p);
		memset(p, 0xff, size);
		mh_free(p);
		EXPECT_EQ(room, first_wrong(p, room, false)) TH_LOG("size %zu, %zu-byte slot", size, room);
	}
}

struct written_slot {
	size_t size, at;	/* the block's size; the byte written after free */
	size_t room;		/* out: its slot */
};

/* In a child: a block of w->size bytes freed, written at w->at, then blocks
 * of its size from malloc until the slot comes back (or 100,000 did not
 * bring it). */
static void write_after_free_then_reuse(void *arg)
{
	struct written_slot *w = arg;
	char *p = mh_malloc(w->size);

	mh_free(p);
	p[w->at] = 1;
	for (int i = 0; i < 100000; i++) {
		char *q = mh_malloc(w->size);

		if (q == p)
			_exit(0);	/* handed out unchecked */
		mh_free(q);
	}
	_exit(2);
}

/* malloc (not calloc) reads every byte of a slot of up to 128 bytes before
 * handing it out again: a write after free anywhere in one, the block's
 * bytes, its canary or its trailer, is reported at the slot's reuse,
 * naming the byte. Each class of up to 128 bytes, written in each of its
 * words (the check's pieces are whole words), at a byte that moves along
 * the words. */
TEST(malloc_checks_every_byte_of_a_slot_of_up_to_128_bytes)
{
	for (size_t size = 8; size <= 120; size += 8) {
		char *probe = mh_malloc(size);
		size_t room = slot_of(probe);

		mh_free(probe);
		if (room > 128)
			continue;
		for (size_t word = 0; word < room / 8; word++) {
			struct written_slot w = { .size = size, .at = 8 * word + word % 8 };
			struct child_result res;
			char want[96];

			run_child(write_after_free_then_reuse, &w, &res);
			snprintf(want, sizeof(want), "%zu-byte slot", room);
			EXPECT_TRUE(died_of(&res, SIGABRT) && strstr(res.err, "write after free") &&
				    strstr(res.err, want))
				TH_LOG("size %zu, %zu-byte slot, byte %zu: status %#x, %s", size, room,
				       w.at, res.status, res.err);
			snprintf(want, sizeof(want), "written at offset %zu after its free", w.at);
			EXPECT_NE(NULL, strstr(res.err, want)) TH_LOG("byte %zu: %s", w.at, res.err);
		}
	}
}

/* malloc and free (and the sized frees) jump to the mode's paths through
 * the entry table (entry.h), set when the heap is. */
TEST(malloc_and_free_go_straight_to_the_secure_mode)
{
	mh_free(mh_malloc(1));
	EXPECT_TRUE(mh_entries.malloc == secure_malloc);
	EXPECT_TRUE(mh_entries.free == secure_free);
	EXPECT_TRUE(mh_entries.free_sized == heap_free_sized_secure);
}

/* ... and the table is read-only: a write, an overflow's or a stray
 * pointer's, faults rather than redirects every later malloc. Written by
 * the kernel here (a read from a pipe into it: EFAULT), so that no
 * sanitizer's handler of SIGSEGV stands between. */
TEST(the_entry_table_is_read_only)
{
	void *other = (void *)heap_malloc_default;
	int fds[2];

	mh_free(mh_malloc(1));
	ASSERT_EQ(0, pipe(fds));
	ASSERT_EQ((ssize_t)sizeof(other), write(fds[1], &other, sizeof(other)));
	EXPECT_EQ(-1, read(fds[0], (void *)&mh_entries.malloc, sizeof(other)));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_TRUE(mh_entries.malloc == secure_malloc);
	close(fds[0]);
	close(fds[1]);
}

/* The harness's main, under another name: main comes first. */
#define main harness_main
TEST_HARNESS_MAIN
#undef main

int main(int argc, char **argv)
{
	/* Guarded blocks from 32 KiB, as by default before middle blocks
	 * (secure_middle_test.c): the warm-page tests build on guarded
	 * blocks of 32 to 256 KiB. */
	static const char *const env[] = { "MHEAP_SECURE=1", "MHEAP_SECURE_SAMPLE=0",
					   "MHEAP_SECURE_LARGE=32K", NULL };

	if (!getenv("MHEAP_SECURE"))
		return exec_self_with(argv, env);
	return harness_main(argc, argv);
}
