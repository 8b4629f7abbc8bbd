// SPDX-License-Identifier: GPL-2.0
/*
 * Spans (mspan.c, mcache.c, mcentral.c): objects handed out in order and
 * freed ones reused, one live object's slot reused on fresh pages, a
 * used-up span taken back once its reuse share is free, empty spans back
 * to the page heap, a cache over its cap giving back its oldest empty
 * spans a batch at a time, a refill taking cached spans of its length in
 * a batch only when many are cached.
 */
#define _GNU_SOURCE
#include "heap_lib.h"

TEST(span_hands_out_consecutive_objects_then_reuses_freed_ones)
{
	unsigned cls = size_to_class(48);
	uint32_t n = mh_class[cls].nelems;
	char **p = calloc(2 * n, sizeof(*p));
	struct mspan *s;

	ASSERT_NE(NULL, p);
	for (uint32_t i = 0; i < n; i++)
		p[i] = mh_malloc(48);
	s = span_of((uintptr_t)p[n - 1]);
	/* The objects of one span follow each other. */
	for (uint32_t i = 1; i < n; i++)
		if (span_of((uintptr_t)p[i]) == s && span_of((uintptr_t)p[i - 1]) == s)
			ASSERT_EQ(p[i - 1] + 48, p[i]);
	EXPECT_EQ(48, mh_usable_size(p[0]));
	/* Free every other object of the full span; they come back. */
	unsigned freed = 0;
	for (uint32_t i = 0; i < n; i++)
		if (span_of((uintptr_t)p[i]) == s && (i & 1)) {
			mh_free(p[i]);
			p[i] = NULL;
			freed++;
		}
	ASSERT_GT(freed, n / 4);
	unsigned reused = 0;
	for (uint32_t i = 0; i < 2 * n; i++) {
		p[n + (i % n)] = NULL;
		char *q = mh_malloc(48);

		if (span_of((uintptr_t)q) == s)
			reused++;
		mh_free(q);
		if (reused == freed)
			break;
	}
	EXPECT_GT(reused, 0);
	for (uint32_t i = 0; i < n; i++)
		mh_free(p[i]);
	free(p);
}

/*
 * A class with one object live at a time, on a span of fresh pages: each
 * malloc after a free gets the freed slot back (the span is swept in place)
 * instead of the span's next one, so the span's other pages are never
 * touched. Before, the window handed out all 8 slots of the 128 KiB span in
 * turn (128 KiB faulted in for one live 16 KiB object).
 */
TEST(one_live_object_of_a_class_reuses_its_slot_on_fresh_pages)
{
	const size_t size = 16384;	/* a class no other test here uses */
	struct mh_stats st = MH_STATS_INIT;
	char *first, *q;

	ASSERT_LT(1, mh_class[size_to_class(size)].nelems);
	first = mh_malloc(size);
	ASSERT_NE(NULL, first);
	/* The span is made of fresh pages: they were released (never used). */
	mh_stats_read(&st);
	ASSERT_LT(0, st.heap_released);
	memset(first, 1, size);
	mh_free(first);
	for (int i = 0; i < 32; i++) {
		q = mh_malloc(size);
		ASSERT_EQ(first, q);
		memset(q, 2, size);
		mh_free(q);
	}
}

/*
 * A span of fresh pages hands out a page of objects at a time (`touched`)
 * and reuses freed ones before it goes a page further; malloc's refill
 * lane takes such a span's windows too, below `touched` only, and the
 * sweep in place folds only the words below it (mspan.h, mspan.c). So:
 * the first page's objects in address order, then the one freed (swept
 * in place at `touched`), then the next page's in address order - not an
 * object past `touched` from the word that holds it (its untouched
 * objects make the sweep's summary call it free), and not a skip of the
 * words past it (the summary must call them free). 48-byte objects: 170
 * a page, so `touched` falls inside a bitmap word.
 */
TEST(a_span_of_fresh_pages_hands_out_the_freed_object_then_the_next_page_in_order)
{
	const size_t size = 48;	/* a class no other test here uses */
	uint32_t step, i;
	char **p;
	struct mspan *s;

	p = calloc(MH_MAX_OBJS_PER_SPAN, sizeof(*p));
	ASSERT_NE(NULL, p);
	p[0] = mh_malloc(size);
	ASSERT_NE(NULL, p[0]);
	s = span_of((uintptr_t)p[0]);
	step = (uint32_t)MH_PAGE_SIZE / s->elemsize;
	/* The test's setting: the class's first span, of fresh pages, its
	 * first page's objects touched; `touched` inside a word. */
	ASSERT_EQ(s->base, (uintptr_t)p[0]);
	ASSERT_EQ(step, s->touched);
	ASSERT_NE(0, step % 64);
	ASSERT_LT(2 * step, s->nelems);
	for (i = 1; i < step; i++) {
		p[i] = mh_malloc(size);
		ASSERT_EQ(s->base + (uintptr_t)i * s->elemsize, (uintptr_t)p[i]) TH_LOG("object %u", i);
	}
	mh_free(p[10]);
	p[10] = mh_malloc(size);
	EXPECT_EQ(s->base + 10 * (uintptr_t)s->elemsize, (uintptr_t)p[10]);
	for (i = step; i < 2 * step; i++) {
		p[i] = mh_malloc(size);
		ASSERT_EQ(s->base + (uintptr_t)i * s->elemsize, (uintptr_t)p[i]) TH_LOG("object %u", i);
	}
	EXPECT_EQ(2 * step, s->touched);
	for (i = 0; i < 2 * step; i++)
		mh_free(p[i]);
	free(p);
}

/* A used-up span is taken back once 1/MH_CACHE_REUSE_SHARE of its objects
 * has been freed, not at its first free: with fewer, the
 * thread's next spans come from elsewhere; one more free and they come
 * from it. */
TEST(a_used_up_span_is_taken_back_once_its_reuse_share_is_free)
{
	const size_t size = 176;	/* a class no other test here uses */
	uint32_t n = mh_class[size_to_class(size)].nelems, want, m = 0, reused;
	char **p = calloc(6 * n, sizeof(*p)), **mine = calloc(n, sizeof(*mine));
	struct mspan *s;

	ASSERT_NE(NULL, p);
	ASSERT_NE(NULL, mine);
	want = n / MH_CACHE_REUSE_SHARE;
	ASSERT_GT(want, 1);
	/* Three spans' worth: the one holding p[1.5n] was filled by this
	 * run alone and used up before its end. */
	for (uint32_t i = 0; i < 3 * n; i++)
		p[i] = mh_malloc(size);
	s = span_of((uintptr_t)p[n + n / 2]);
	for (uint32_t i = 0; i < 3 * n; i++)
		if (span_of((uintptr_t)p[i]) == s)
			mine[m++] = p[i];
	ASSERT_EQ(n, m);
	ASSERT_NE(s, span_of((uintptr_t)p[3 * n - 1]));
	/* One free short of the share: a span's worth of allocations, so at
	 * least one refill, takes none of them. */
	for (uint32_t i = 0; i < want - 1; i++)
		mh_free(mine[i]);
	reused = 0;
	for (uint32_t i = 0; i < n; i++) {
		p[3 * n + i] = mh_malloc(size);
		reused += span_of((uintptr_t)p[3 * n + i]) == s;
	}
	EXPECT_EQ(0, reused);
	/* The share reached: the span is taken back. */
	mh_free(mine[want - 1]);
	reused = 0;
	for (uint32_t i = 0; i < 2 * n && reused < want; i++) {
		p[4 * n + i] = mh_malloc(size);
		reused += span_of((uintptr_t)p[4 * n + i]) == s;
	}
	EXPECT_EQ(want, reused);
	for (uint32_t i = 0; i < 6 * n; i++)
		if (p[i] && (i >= 3 * n || span_of((uintptr_t)p[i]) != s))
			mh_free(p[i]);
	for (uint32_t i = want; i < n; i++)
		mh_free(mine[i]);
	free(mine);
	free(p);
}

enum { CHURN_N = 100000 };

static void *alloc_then_free_all(void *arg)
{
	void **p = malloc(CHURN_N * sizeof(*p));
	struct mh_stats *during = arg;

	for (int i = 0; i < CHURN_N; i++)
		p[i] = mh_malloc(256);
	for (int i = 0; i < CHURN_N; i++)
		mh_free(p[i]);
	mh_stats_read(during);
	free(p);
	return NULL;
}

TEST(empty_spans_return_to_the_page_heap)
{
	struct mh_stats before = MH_STATS_INIT, during = MH_STATS_INIT,
		after = MH_STATS_INIT;
	pthread_t t;

	mh_stats_read(&before);
	ASSERT_EQ(0, pthread_create(&t, NULL, alloc_then_free_all, &during));
	pthread_join(t, NULL);
	mh_stats_read(&after);
	/* 25 MB were in use. Freed by their own thread, the spans stay with
	 * it only up to the cache's cap of empty spans (plus current ones)... */
	EXPECT_LE(during.heap_inuse, before.heap_inuse + MH_CACHE_EMPTY_MAX + (256 << 10));
	/* ...and at thread exit everything goes back to the page heap. */
	EXPECT_EQ(before.heap_inuse, after.heap_inuse);
}

/* Spans a cache holds on its empty list for class cls. */
static unsigned empty_spans(struct mcache *c, unsigned cls)
{
	unsigned n = 0;

	for (struct list_node *l = c->empty[cls].head; l; l = l->next)
		n++;
	return n;
}

/* What a thread that emptied spans beyond its cap saw. */
struct trim_seen {
	size_t most;		/* the most empty bytes it held */
	size_t lowest_after_drop; /* the fewest after a give-back */
	unsigned drops;		/* give-backs */
	bool oldest_gone;	/* the first span it emptied is back in the heap */
};

static void *empty_spans_beyond_the_cap(void *arg)
{
	enum { N = 768 };	/* 6 MiB of 8 KiB objects, 96 spans */
	struct trim_seen *seen = arg;
	char **p = calloc(N, sizeof(*p));
	struct mcache *c;
	size_t last = 0;

	if (!p)
		return NULL;
	for (int i = 0; i < N; i++)
		p[i] = mh_malloc(8192);
	c = mh_tls_cache;
	seen->lowest_after_drop = SIZE_MAX;
	for (int i = 0; i < N; i++) {	/* the oldest spans empty first */
		mh_free(p[i]);
		if (c->empty_bytes > seen->most)
			seen->most = c->empty_bytes;
		if (c->empty_bytes < last) {
			seen->drops++;
			if (c->empty_bytes < seen->lowest_after_drop)
				seen->lowest_after_drop = c->empty_bytes;
		}
		last = c->empty_bytes;
	}
	seen->oldest_gone = span_of((uintptr_t)p[0]) == NULL;
	free(p);
	return NULL;
}

TEST(a_cache_over_its_cap_gives_back_its_oldest_empty_spans_a_batch_at_a_time)
{
	size_t span = (size_t)mh_class[size_to_class(8192)].npages << MH_PAGE_SHIFT;
	struct trim_seen seen = { 0 };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, empty_spans_beyond_the_cap, &seen));
	pthread_join(t, NULL);
	EXPECT_LE(seen.most, MH_CACHE_EMPTY_MAX);
	EXPECT_GE(seen.drops, 1u);
	/* Each give-back takes the lock once for a batch's worth... */
	EXPECT_LE(seen.lowest_after_drop, MH_CACHE_EMPTY_MAX - MH_BATCH_BYTES);
	/* ...so the 2 MiB beyond the cap took a few of them, not one per span. */
	EXPECT_LE(seen.drops, (6u << 20) / MH_BATCH_BYTES);
	EXPECT_LT(seen.drops, ((6u << 20) - MH_CACHE_EMPTY_MAX) / span);
	EXPECT_TRUE(seen.oldest_gone);
}

/* What a thread's first refill of the 8 KiB class brought along. */
struct refill_seen {
	unsigned spares;	/* empty spans kept besides the current one */
	unsigned cached_before, cached_after; /* span cache, 8 KiB class's length */
};

static unsigned cached_small_spans(uintptr_t npages)
{
	unsigned n = 0;

	mh_lock(&mh_heap.lock);
	for (struct mspan *s = mh_heap.span_cache[CACHE_SMALL][npages]; s; s = s->chain)
		n++;
	mh_unlock(&mh_heap.lock);
	return n;
}

static void *first_refill(void *arg)
{
	unsigned cls = size_to_class(8192);
	struct refill_seen *seen = arg;
	void *p;

	seen->cached_before = cached_small_spans(mh_class[cls].npages);
	p = mh_malloc(8192);
	seen->cached_after = cached_small_spans(mh_class[cls].npages);
	seen->spares = empty_spans(mh_tls_cache, cls);
	mh_free(p);
	return NULL;
}

/* Allocates and frees (intptr_t)arg objects of 8 KiB, 8 to a span. */
static void *make_spans_and_exit(void *arg)
{
	int n = (int)(intptr_t)arg;
	void **p = calloc(n, sizeof(*p));

	for (int i = 0; i < n && p; i++)
		p[i] = mh_malloc(8192);
	for (int i = 0; i < n && p; i++)
		mh_free(p[i]);
	free(p);
	return NULL;	/* its empty spans go to the span cache */
}

TEST(a_refill_takes_spans_cached_for_its_length_in_a_batch_only_when_many_are)
{
	const struct size_class *sc = &mh_class[size_to_class(8192)];
	unsigned by_objects = (MH_BATCH_OBJECTS + sc->nelems - 1) / sc->nelems;
	unsigned by_bytes = MH_BATCH_BYTES / (sc->npages << MH_PAGE_SHIFT);
	unsigned batch = by_objects < by_bytes ? by_objects : by_bytes;
	struct refill_seen fresh = { 0 }, few = { 0 }, cached = { 0 };
	pthread_t t;

	ASSERT_GT(batch, 1u);
	/* Nothing cached: one span of fresh pages, no spares that would hold
	 * pages the thread may never use. */
	ASSERT_EQ(0, pthread_create(&t, NULL, first_refill, &fresh));
	pthread_join(t, NULL);
	ASSERT_EQ(0u, fresh.cached_before);
	EXPECT_EQ(0u, fresh.spares);
	/* A few cached: those are left to requests of their length from
	 * any class and thread. */
	ASSERT_EQ(0, pthread_create(&t, NULL, make_spans_and_exit, (void *)(intptr_t)32));
	pthread_join(t, NULL);
	ASSERT_EQ(0, pthread_create(&t, NULL, first_refill, &few));
	pthread_join(t, NULL);
	ASSERT_GE(few.cached_before, batch);
	ASSERT_LT(few.cached_before, SPARES_CACHED_MIN * batch);
	EXPECT_EQ(0u, few.spares);
	/* Many spans of its length cached: a batch of them in one trip. */
	ASSERT_EQ(0, pthread_create(&t, NULL, make_spans_and_exit, (void *)(intptr_t)1024));
	pthread_join(t, NULL);
	ASSERT_EQ(0, pthread_create(&t, NULL, first_refill, &cached));
	pthread_join(t, NULL);
	ASSERT_GE(cached.cached_before, SPARES_CACHED_MIN * batch);
	EXPECT_EQ(batch - 1, cached.spares);
	EXPECT_EQ(cached.cached_before - batch, cached.cached_after);
}

TEST_HARNESS_MAIN
