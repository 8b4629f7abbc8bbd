// SPDX-License-Identifier: GPL-2.0
/*
 * The page heap's span cache (spancache.c): freed spans kept whole and taken
 * back newest first, flushed when a request needs their pages or first fit
 * goes above them, a large block taking the front of the shortest longer
 * cached span and leaving the rest cached, cached spans merged before
 * released pages are faulted in, neighbouring freed blocks cached as one
 * span up to the longest cached length. A freed block reaches the span
 * cache past the thread's own cache of large blocks (free_to_page_heap).
 */
#define _GNU_SOURCE
#include "heap_lib.h"

TEST(freed_spans_are_cached_whole_and_taken_back_first)
{
	size_t len = 5 * MH_PAGE_SIZE;	/* a large object under the cache's limit */
	char *a = mh_malloc(len), *b = mh_malloc(len), *c = mh_malloc(len), *d;
	struct mh_stats before = MH_STATS_INIT, cached = MH_STATS_INIT,
		released = MH_STATS_INIT;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_NE(NULL, c);
	mh_stats_read(&before);
	free_to_page_heap(a);
	free_to_page_heap(c);
	/* Cached pages are idle memory to the stats (and the scavenger)... */
	mh_stats_read(&cached);
	EXPECT_EQ(before.heap_idle + 2 * len, cached.heap_idle);
	EXPECT_EQ(0, mh_usable_size(c));	/* no span maps them any more */
	/* ...and the last one freed comes back first; first fit would have
	 * picked a, the lower address. */
	d = mh_malloc(len);
	EXPECT_EQ(c, d);
	free_to_page_heap(d);
	/* mh_scavenge gives the cache back to the page allocator, which can
	 * then release it. */
	mh_scavenge();
	mh_stats_read(&released);
	EXPECT_EQ(released.heap_idle, released.heap_released);
	free_to_page_heap(b);
}

TEST(cached_spans_are_flushed_when_a_request_needs_their_pages)
{
	enum { N = 256 };		/* 256 x 512 KiB: two heap arenas */
	size_t len = 64 * MH_PAGE_SIZE;	/* the cache's longest span */
	static void *p[N];
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;
	void *big;

	if (UNDER_SANITIZER)
		SKIP(return, "arenas are not contiguous without the arena hints (sanitizer build)");
	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(len);
		ASSERT_NE(NULL, p[i]);
	}
	for (int i = 0; i < N; i++)
		free_to_page_heap(p[i]);
	mh_stats_read(&before);
	ASSERT_GE(before.heap_idle, (uint64_t)N * len);
	/* Only the cached pages can hold 100 MiB without growing the heap:
	 * the failed search must flush the cache and look again. */
	big = mh_malloc(100 << 20);
	ASSERT_NE(NULL, big);
	mh_stats_read(&after);
	EXPECT_EQ(before.heap_sys, after.heap_sys);
	free_to_page_heap(big);
}

TEST(cached_large_objects_are_flushed_when_first_fit_goes_above_them)
{
	size_t len = 5 * MH_PAGE_SIZE;
	char *a = mh_malloc(len), *b = mh_malloc(len), *p = NULL, *obj[9];
	struct mspan *small;
	int i;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	/* A span of 8 KiB objects (8 pages) in the cache as well: made
	 * empty, then given back by its thread. */
	for (i = 0; i < 9; i++)
		obj[i] = mh_malloc(8192);
	small = span_of((uintptr_t)obj[0]);
	ASSERT_NE(small, span_of((uintptr_t)obj[8]));
	ASSERT_EQ(8 * MH_PAGE_SIZE, small->npages << MH_PAGE_SHIFT);
	for (i = 0; i < 8; i++)
		free_to_page_heap(obj[i]);
	mcache_release_empty(mh_tls_cache);
	free_to_page_heap(a);	/* cached whole, kept for the next 5-page request */
	/* Spans of one page: the first one made above a's pages gives them
	 * back to the page allocator, and the next ones fill them. */
	for (i = 0; i < 100 * 512; i++) {
		p = mh_malloc(16);
		ASSERT_NE(NULL, p);
		if (p >= a && p < a + len)
			break;
	}
	EXPECT_LT(i, 100 * 512) TH_LOG("no small object ever landed in the cached pages");
	/* The small objects' span stays cached for its length (with the
	 * spare spans its refill made, mcentral.c "batches"). */
	mh_lock(&mh_heap.lock);
	struct mspan *t = mh_heap.span_cache[CACHE_SMALL][8];

	while (t && t != small)
		t = t->chain;
	EXPECT_EQ(small, t);
	mh_unlock(&mh_heap.lock);
	free_to_page_heap(obj[8]);
	free_to_page_heap(b);
}

/* Whether the span cache keeps a large span of npages pages at p. */
static bool cached_large_at(void *p, uintptr_t npages)
{
	struct mspan *s;

	mh_lock(&mh_heap.lock);
	s = mh_heap.span_cache[CACHE_LARGE][npages];
	while (s && s->base != (uintptr_t)p)
		s = s->chain;
	mh_unlock(&mh_heap.lock);
	return s;
}

/* Nothing cached, released or kept by this thread: what follows sees only
 * its own blocks in the span cache, and frees that release nothing. */
static void span_cache_start_empty(void)
{
	if (mh_tls_cache)
		mcache_release_empty(mh_tls_cache);
	mh_scavenge();
}

/* A large block of npages pages, freed: its span in the span cache. */
static char *cache_a_block(uintptr_t npages)
{
	char *p = mh_malloc(PAGES(npages));

	free_to_page_heap(p);
	return p;
}

TEST(a_large_block_takes_the_front_of_the_shortest_longer_cached_span)
{
	char *a40, *a48, *p;

	span_cache_start_empty();
	a40 = mh_malloc(PAGES(40));
	a48 = mh_malloc(PAGES(48));
	ASSERT_NE(NULL, a40);
	ASSERT_NE(NULL, a48);
	free_to_page_heap(a48);
	free_to_page_heap(a40);
	/* No cached span of 16 pages: the 40 pages go before the 48. */
	p = mh_malloc(PAGES(16));
	EXPECT_EQ(a40, p);
	free_to_page_heap(p);
}

TEST(the_rest_of_a_cached_span_a_large_block_took_stays_cached)
{
	char *a, *p;

	span_cache_start_empty();
	a = cache_a_block(40);
	ASSERT_NE(NULL, a);
	p = mh_malloc(PAGES(16));
	ASSERT_EQ(a, p);
	EXPECT_TRUE(cached_large_at(a + PAGES(16), 24));
	free_to_page_heap(p);
}

TEST(cached_large_spans_stay_while_first_fit_goes_above_them_for_no_more_live_ones)
{
	char *live, *a, *p;

	span_cache_start_empty();
	live = mh_malloc(PAGES(32));
	ASSERT_NE(NULL, live);
	a = cache_a_block(8);
	ASSERT_NE(NULL, a);
	/* 8 cached pages against 32 live in blocks of cached lengths: the
	 * 16-page block that first fit puts above a leaves a cached. */
	p = mh_malloc(PAGES(16));
	ASSERT_GT(p, a);
	EXPECT_TRUE(cached_large_at(a, 8));
	free_to_page_heap(p);
	free_to_page_heap(live);
}

TEST(cached_large_spans_go_back_when_first_fit_goes_above_more_than_the_live_ones)
{
	char *a, *p;

	span_cache_start_empty();
	a = cache_a_block(8);
	ASSERT_NE(NULL, a);
	/* 8 cached pages, none live: a's pages go back to the bitmap. */
	p = mh_malloc(PAGES(16));
	ASSERT_GT(p, a);
	EXPECT_FALSE(cached_large_at(a, 8));
	free_to_page_heap(p);
}

TEST(a_large_block_that_would_take_released_pages_takes_the_cached_ones_merged)
{
	char *a1, *a2, *p;

	span_cache_start_empty();	/* every free page released */
	a1 = mh_malloc(PAGES(8));
	a2 = mh_malloc(PAGES(8));
	ASSERT_NE(NULL, a1);
	ASSERT_EQ(a1 + PAGES(8), a2);
	free_to_page_heap(a1);
	free_to_page_heap(a2);
	/* Neither cached span holds 16 pages, and first fit's place for them
	 * is released: the two go back to the bitmap first, merged. */
	p = mh_malloc(PAGES(16));
	EXPECT_EQ(a1, p);
	free_to_page_heap(p);
}

/* A block of 256 pages (longer than the span cache keeps) written and
 * freed after every free page was released: its pages the only resident
 * free ones. */
static char *free_a_resident_block(void)
{
	char *p;

	span_cache_start_empty();
	p = mh_malloc(PAGES(256));
	if (p) {
		memset(p, 1, PAGES(256));
		mh_free(p);
	}
	return p;
}

/* A block of up to 64 pages that finds no cached span, and whose first-fit
 * place would fault in again, takes the lowest resident place apart from
 * small spans: the bottom of a freed longer block's pages, whose top the
 * next longer block can take back (a bucket array doubled up to 64 pages
 * in the place of a freed pair of 128 and 256). */
TEST(a_large_block_whose_first_fit_is_released_takes_the_lowest_resident_place_apart)
{
	char *big = free_a_resident_block(), *p;

	ASSERT_NE(NULL, big);
	p = mh_malloc(PAGES(16));
	EXPECT_EQ(big, p);
	free_to_page_heap(p);
}

/* A block longer than the span cache keeps, whose place would fault in
 * again, takes the cached large spans back first, merged with the free
 * pages around them: a bucket array doubled to 256 pages gets back the
 * place of the last one, where the smaller arrays made since lie cached. */
TEST(a_block_longer_than_the_cache_keeps_takes_its_cached_spans_merged_before_released_pages)
{
	char *big = free_a_resident_block(), *a, *again;

	ASSERT_NE(NULL, big);
	a = mh_malloc(PAGES(16));
	ASSERT_EQ(big, a);		/* the rule above */
	free_to_page_heap(a);
	ASSERT_TRUE(cached_large_at(a, 16));
	again = mh_malloc(PAGES(256));
	EXPECT_EQ(big, again);
	EXPECT_EQ(PAGES(256) / 4096, resident_pages_in(again, PAGES(256)));
	mh_free(again);
}

/* Two neighbouring large blocks of npages pages each, at *a1 and *a2, and
 * a block above them that stays live (*above), the two freed into an
 * empty span cache lower first; false if they were not neighbours. */
static bool free_two_neighbours(uintptr_t npages, char **a1, char **a2, char **above)
{
	span_cache_start_empty();
	*a1 = mh_malloc(PAGES(npages));
	*a2 = mh_malloc(PAGES(npages));
	*above = mh_malloc(PAGES(8));
	if (!*a1 || *a2 != *a1 + PAGES(npages) || !*above)
		return false;
	free_to_page_heap(*a1);
	free_to_page_heap(*a2);
	return true;
}

TEST(freed_neighbouring_large_blocks_are_cached_as_one_span)
{
	char *a1, *a2, *above;

	ASSERT_TRUE(free_two_neighbours(8, &a1, &a2, &above));
	EXPECT_TRUE(cached_large_at(a1, 16));
	EXPECT_FALSE(cached_large_at(a2, 8));
	free_to_page_heap(above);
}

TEST(a_freed_large_block_joins_the_cached_spans_on_both_sides)
{
	char *a1, *a2, *a3, *a4;

	span_cache_start_empty();
	a1 = mh_malloc(PAGES(8));
	a2 = mh_malloc(PAGES(16));
	a3 = mh_malloc(PAGES(8));
	a4 = mh_malloc(PAGES(8));	/* a3's neighbour above stays live */
	ASSERT_NE(NULL, a4);
	ASSERT_EQ(a1 + PAGES(8), a2);
	ASSERT_EQ(a2 + PAGES(16), a3);
	free_to_page_heap(a1);
	free_to_page_heap(a3);
	free_to_page_heap(a2);
	EXPECT_TRUE(cached_large_at(a1, 32));
	/* One request of their combined length takes them, no search. */
	EXPECT_EQ(a1, mh_malloc(PAGES(32)));
	free_to_page_heap(a1);
	free_to_page_heap(a4);
}

TEST(cached_large_spans_join_only_up_to_the_longest_cached_length)
{
	char *a1, *a2, *above;

	/* 80 pages would be longer than SPAN_CACHE_PAGES: two spans. */
	ASSERT_TRUE(free_two_neighbours(40, &a1, &a2, &above));
	EXPECT_TRUE(cached_large_at(a1, 40));
	EXPECT_TRUE(cached_large_at(a2, 40));
	free_to_page_heap(above);
}

TEST_HARNESS_MAIN
