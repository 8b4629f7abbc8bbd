// SPDX-License-Identifier: GPL-2.0
/*
 * The large blocks a thread keeps (largecache.c): a freed large block kept
 * by the freeing thread, its pages still mapped to its span, reused for
 * the thread's next request of its length or the shortest that holds it
 * (not one more than a quarter longer); the cache's limits of count and
 * bytes; a trim by another thread that holds the list; blocks given back
 * when the thread makes a small span, realloc moves, mh_scavenge runs, the
 * thread exits or a fork child starts; the stats and the heap checker on
 * kept blocks. And a thread's empty small spans taken back before a large
 * block takes fresh pages.
 */
#define _GNU_SOURCE
#include "heap_lib.h"

/* ------------------------------------------------------------ the thread's large blocks */

/* What the thread below saw. */
struct empty_spans_seen {
	struct mh_stats kept;	/* after freeing all its objects */
	struct mh_stats after;	/* after the large allocation */
	bool among;		/* the block landed below its highest object */
};

static void *keep_empty_spans_then_allocate_large(void *arg)
{
	enum { N = 3 << 14 };	/* 3 MiB of 64 B objects, under the cache's cap */
	char **p = calloc(N, sizeof(*p)), *highest = NULL, *big;
	struct empty_spans_seen *seen = arg;

	if (!p)
		return NULL;
	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(64);
		if (p[i] > highest)
			highest = p[i];
	}
	for (int i = 0; i < N; i++)
		free_to_page_heap(p[i]);
	mh_stats_read(&seen->kept);	/* the empty spans stay with this thread */
	/* No resident run of 32 pages but the kept spans: they go back to
	 * the page heap first, and the block lands among them. */
	big = mh_malloc(32 * MH_PAGE_SIZE);
	mh_stats_read(&seen->after);
	seen->among = big < highest;
	free_to_page_heap(big);
	free(p);
	return NULL;
}

TEST(a_freed_large_block_is_kept_by_the_freeing_thread)
{
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_free(p);
	EXPECT_EQ(MSPAN_CACHED, state_at(p));
	EXPECT_EQ(1, mh_tls_cache->nlarge);
	EXPECT_EQ(span_of((uintptr_t)p)->npages << MH_PAGE_SHIFT, mh_tls_cache->large_bytes);
}

TEST(a_kept_large_block_is_reused_by_the_thread_for_its_next_request)
{
	void *p = mh_malloc(100 << 10), *q;

	ASSERT_NE(NULL, p);
	mh_free(p);
	q = mh_malloc(100 << 10);
	EXPECT_EQ(p, q);
	EXPECT_EQ(MSPAN_LARGE, state_at(q));
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(0, mh_tls_cache->large_bytes);
	mh_free(q);
}

TEST(a_kept_large_block_keeps_its_pages_mapped_to_its_span)
{
	size_t len = 100 << 10;
	char *p = mh_malloc(len);
	struct mspan *s = span_of((uintptr_t)p);

	ASSERT_NE(NULL, p);
	mh_free(p);
	for (size_t off = 0; off < len; off += MH_PAGE_SIZE)
		ASSERT_EQ(s, span_of((uintptr_t)p + off));
	EXPECT_EQ(0, mh_usable_size(p));	/* not an object */
}

TEST(a_large_request_takes_the_shortest_kept_block_that_holds_it)
{
	/* Lengths on the 64 KiB lattice (large_npages): the request's 31
	 * pages and a byte are 32. */
	enum { N = 32 };
	void *quarter = mh_malloc(PAGES(N + N / 4)), *one = mh_malloc(PAGES(N));
	void *q;

	ASSERT_NE(NULL, quarter);
	ASSERT_NE(NULL, one);
	mh_free(one);
	mh_free(quarter);	/* the newer */
	q = mh_malloc(PAGES(N - 1) + 1);
	EXPECT_EQ(one, q);
	/* The block is the whole span. */
	EXPECT_EQ(PAGES(N), mh_usable_size(q));
	EXPECT_EQ(quarter, mh_malloc(PAGES(N)));	/* a quarter longer still fits */
}

/* n blocks of len bytes into p[], then freed oldest first; false if one
 * could not be made. */
static bool allocate_then_free(void **p, int n, size_t len)
{
	for (int i = 0; i < n; i++)
		if (!(p[i] = mh_malloc(len)))
			return false;
	for (int i = 0; i < n; i++)
		mh_free(p[i]);
	return true;
}

TEST(kept_blocks_of_one_length_serve_one_request_each_newest_first)
{
	void *p[2];	/* the older, then the newer */

	ASSERT_TRUE(allocate_then_free(p, 2, 100 << 10));
	EXPECT_EQ(p[1], mh_malloc(100 << 10));
	EXPECT_EQ(p[0], mh_malloc(100 << 10));	/* its length is still kept */
	EXPECT_EQ(0, mh_tls_cache->large_lengths);
}

TEST(a_large_request_leaves_a_kept_block_more_than_a_quarter_longer)
{
	enum { N = 32 };
	void *p = mh_malloc(PAGES(N + N / 4 + 1));

	ASSERT_NE(NULL, p);
	mh_free(p);
	EXPECT_NE(p, mh_malloc(PAGES(N)));
	EXPECT_EQ(MSPAN_CACHED, state_at(p));
}

TEST(calloc_zeroes_a_kept_large_block_it_reuses)
{
	size_t len = 100 << 10;
	unsigned char *p = mh_malloc(len), *q;

	ASSERT_NE(NULL, p);
	memset(p, 0xff, len);
	mh_free(p);
	q = mh_calloc(1, len);
	ASSERT_EQ(p, q);
	for (size_t i = 0; i < len; i++)
		ASSERT_EQ(0, q[i]);
}

TEST(a_thread_making_a_small_span_gives_its_kept_large_blocks_back)
{
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_free(p);
	ASSERT_EQ(MSPAN_CACHED, state_at(p));
	/* The first object of a class this process never used: a new span
	 * from the page heap. */
	ASSERT_NE(NULL, mh_malloc(MH_MAX_SMALL_SIZE));
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

TEST(realloc_gives_the_large_block_it_moves_from_to_the_page_heap)
{
	void *p = mh_malloc(100 << 10), *q;

	ASSERT_NE(NULL, p);
	q = mh_realloc(p, 40 << 10);	/* under half: it moves */
	ASSERT_NE(NULL, q);
	ASSERT_NE(p, q);
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

TEST(the_threads_large_cache_keeps_at_most_its_count_of_blocks)
{
	enum { N = MH_LARGE_CACHE_SPANS + 4 };
	size_t len = 64 << 10;	/* N of them are well within the bytes */
	void *p[N];

	ASSERT_TRUE(allocate_then_free(p, N, len));
	EXPECT_EQ(MH_LARGE_CACHE_SPANS, mh_tls_cache->nlarge);
	/* The oldest went to the page heap. */
	for (int i = 0; i < N; i++)
		EXPECT_EQ(i < N - MH_LARGE_CACHE_SPANS ? MSPAN_DEAD : MSPAN_CACHED, state_at(p[i]));
}

TEST(the_threads_large_cache_keeps_at_most_its_bytes)
{
	enum { N = 10 };
	size_t len = MH_LARGE_CACHE_SPAN_MAX;
	void *p[N];

	ASSERT_TRUE(allocate_then_free(p, N, len));
	EXPECT_EQ(MH_LARGE_CACHE_BYTES, mh_tls_cache->large_bytes);
	EXPECT_EQ(MH_LARGE_CACHE_BYTES / len, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p[N - 1 - MH_LARGE_CACHE_BYTES / len]));
}

TEST(a_freed_block_longer_than_the_threads_large_cache_takes_goes_to_the_page_heap)
{
	void *p = mh_malloc(MH_LARGE_CACHE_SPAN_MAX + MH_PAGE_SIZE);

	ASSERT_NE(NULL, p);
	mh_free(p);
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

/* A trim of another thread holds the list's flag: the owner's put and take
 * give up rather than wait. */
TEST(a_freed_large_block_goes_to_the_page_heap_while_a_trim_holds_the_list)
{
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_tls_cache->large_busy = 1;
	mh_free(p);
	mh_tls_cache->large_busy = 0;
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

TEST(a_large_request_passes_its_kept_block_by_while_a_trim_holds_the_list)
{
	void *p, *q;

	ASSERT_TRUE(allocate_then_free(&p, 1, 100 << 10));
	mh_tls_cache->large_busy = 1;
	q = mh_malloc(100 << 10);
	mh_tls_cache->large_busy = 0;
	EXPECT_NE(p, q);
	EXPECT_EQ(MSPAN_CACHED, state_at(p));
	EXPECT_EQ(1, mh_tls_cache->nlarge);
	mh_free(q);
}

TEST(mh_scavenge_leaves_the_large_cache_of_a_thread_in_a_put_or_take)
{
	void *p;

	ASSERT_TRUE(allocate_then_free(&p, 1, 100 << 10));
	mh_tls_cache->large_busy = 1;
	mh_scavenge();
	mh_tls_cache->large_busy = 0;
	EXPECT_EQ(1, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_CACHED, state_at(p));
	mh_scavenge();
	EXPECT_EQ(0, mh_tls_cache->nlarge);
}

TEST(mh_scavenge_empties_the_threads_large_cache)
{
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_free(p);
	mh_scavenge();
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(0, mh_tls_cache->large_bytes);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

TEST(the_stats_count_a_kept_large_block_as_freed_and_idle)
{
	size_t len = PAGES(16);
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;
	void *p = mh_malloc(len);

	ASSERT_NE(NULL, p);
	mh_stats_read(&before);
	mh_free(p);
	mh_stats_read(&after);
	ASSERT_EQ(MSPAN_CACHED, state_at(p));
	EXPECT_EQ(before.heap_alloc - len, after.heap_alloc);
	EXPECT_EQ(before.heap_idle + len, after.heap_idle);
	EXPECT_EQ(before.heap_sys, after.heap_sys);
}

TEST(the_heap_checker_accepts_the_large_blocks_a_thread_keeps)
{
	char msg[256];
	void *p = mh_malloc(100 << 10), *q = mh_malloc(200 << 10);

	ASSERT_NE(NULL, p);
	ASSERT_NE(NULL, q);
	mh_free(p);
	mh_free(q);
	ASSERT_EQ(2, mh_tls_cache->nlarge);
	EXPECT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);
}

TEST(the_heap_checker_finds_a_kept_large_block_no_cache_lists)
{
	char msg[256];
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_free(p);
	ASSERT_EQ(1, mh_tls_cache->nlarge);
	mh_tls_cache->nlarge = 0;	/* lost from the list */
	mh_tls_cache->large_bytes = 0;
	mh_tls_cache->large_lengths = 0;
	memset(mh_tls_cache->large_count, 0, sizeof(mh_tls_cache->large_count));
	EXPECT_NE(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg)));
	EXPECT_NE(NULL, strstr(msg, "freed large spans")) TH_LOG("%s", msg);
}

TEST(the_heap_checker_finds_a_kept_length_no_kept_block_has)
{
	char msg[256];
	void *p;

	ASSERT_TRUE(allocate_then_free(&p, 1, 100 << 10));
	ASSERT_EQ(1, mh_tls_cache->nlarge);
	mh_tls_cache->large_lengths |= 1;	/* a block of one page, not kept */
	EXPECT_NE(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg)));
	EXPECT_NE(NULL, strstr(msg, "keeps large spans of lengths")) TH_LOG("%s", msg);
	mh_tls_cache->large_lengths &= ~(uint64_t)1;
}

TEST(a_large_block_takes_back_a_threads_empty_spans_before_fresh_pages)
{
	struct empty_spans_seen seen = { .kept = MH_STATS_INIT, .after = MH_STATS_INIT };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, keep_empty_spans_then_allocate_large, &seen));
	pthread_join(t, NULL);
	EXPECT_GE(seen.kept.heap_inuse, 3u << 20);
	EXPECT_LE(seen.after.heap_inuse, (1u << 20));
	EXPECT_TRUE(seen.among) TH_LOG("the block went to fresh pages above the spans");
}

/* ------------------------------------------------------------ large blocks kept by other threads */

/* A thread that frees a large block its cache keeps (largecache.c), then
 * waits until told to go on. */
struct keeping_thread {
	pthread_barrier_t freed, checked;
	struct mcache *cache;
	void *block;
};

static void *free_a_large_block_and_wait(void *arg)
{
	struct keeping_thread *k = arg;

	k->block = mh_malloc(100 << 10);
	mh_free(k->block);
	k->cache = mh_tls_cache;
	pthread_barrier_wait(&k->freed);
	pthread_barrier_wait(&k->checked);
	return NULL;
}

static void *free_a_large_block(void *arg)
{
	void **block = arg;

	*block = mh_malloc(100 << 10);
	mh_free(*block);
	return NULL;
}

/* k's thread started and its block freed and kept; false if not. */
static bool start_keeping_thread(struct keeping_thread *k, pthread_t *th)
{
	pthread_barrier_init(&k->freed, NULL, 2);
	pthread_barrier_init(&k->checked, NULL, 2);
	if (pthread_create(th, NULL, free_a_large_block_and_wait, k))
		return false;
	pthread_barrier_wait(&k->freed);
	return state_at(k->block) == MSPAN_CACHED;
}

TEST(a_threads_kept_large_blocks_go_back_when_it_exits)
{
	void *block = NULL;
	pthread_t th;
	char msg[256];

	ASSERT_EQ(0, pthread_create(&th, NULL, free_a_large_block, &block));
	pthread_join(th, NULL);
	EXPECT_EQ(MSPAN_DEAD, state_at(block));
	EXPECT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);
}

TEST(mh_scavenge_takes_back_the_large_blocks_an_idle_thread_keeps)
{
	static struct keeping_thread k;
	unsigned state, kept;
	pthread_t th;

	ASSERT_TRUE(start_keeping_thread(&k, &th));
	mh_scavenge();
	state = state_at(k.block);
	kept = LOAD_RELAXED(&k.cache->nlarge);
	pthread_barrier_wait(&k.checked);
	pthread_join(th, NULL);
	EXPECT_EQ(MSPAN_DEAD, state);
	EXPECT_EQ(0, kept);
}

/* Large blocks of five lengths allocated, written and freed again and
 * again (its cache keeps and reuses them) until *arg is set. */
static void *churn_large_blocks(void *arg)
{
	const bool *stop = arg;
	unsigned long rounds = 0;

	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE) || rounds < 1000) {
		size_t len = (64 << 10) + (rounds % 5) * (48 << 10);
		unsigned char *p = mh_malloc(len);

		if (!p)
			return (void *)1;
		p[0] = p[len - 1] = (unsigned char)rounds;
		if (p[0] != (unsigned char)rounds || p[len - 1] != p[0])
			return (void *)1;
		mh_free(p);
		rounds++;
	}
	return NULL;
}

TEST(mh_scavenge_and_a_thread_reusing_its_kept_large_blocks_lose_none)
{
	static bool stop;
	void *failed = (void *)1;
	pthread_t th;
	char msg[256];

	ASSERT_EQ(0, pthread_create(&th, NULL, churn_large_blocks, &stop));
	for (int i = 0; i < 2000; i++)
		mh_scavenge();
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	pthread_join(th, &failed);
	EXPECT_EQ(NULL, failed);
	EXPECT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);
}

TEST(a_fork_child_takes_back_the_large_blocks_other_threads_keep)
{
	static struct keeping_thread k;
	pthread_t th;
	pid_t pid;
	int status;

	ASSERT_TRUE(start_keeping_thread(&k, &th));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char msg[256];

		if (state_at(k.block) != MSPAN_DEAD)
			_exit(3);
		_exit(mheap_check(HEAPCHECK_ALL, msg, sizeof(msg)) ? 4 : 0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	pthread_barrier_wait(&k.checked);
	pthread_join(th, NULL);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST_HARNESS_MAIN
