// SPDX-License-Identifier: GPL-2.0
/*
 * Double frees abort with one line naming the address, in a child
 * process: by the owning thread, by another thread, by two other threads,
 * after the span's pages went back, of large objects cached or kept by
 * the freeing thread, through realloc, of objects the span's window has
 * not handed out, after a free into another heap arena, a free whose
 * span now holds other pages, and the owner's double frees at the edges
 * of a span's bitmap words in every class.
 */
#define _GNU_SOURCE
#include "bad_free.h"
#include "sizeclass.h"

static void free_twice(void *arg)
{
	(void)arg;
	mh_free(victim);
	mh_free(victim);
}

TEST(double_free_of_a_small_object)
{
	victim = mh_malloc(64);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "small");
}

TEST(double_free_of_a_large_object)
{
	victim = mh_malloc(1 << 20);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "large");
}

static void free_twice_remote(void *arg)
{
	(void)arg;
	/* This thread's cache owns the span; the other thread frees first. */
	on_a_new_thread(free_it, victim);
	mh_free(victim);
}

static void free_here_then_remote(void *arg)
{
	(void)arg;
	mh_free(victim);
	on_a_new_thread(free_it, victim);
}

TEST(double_free_across_threads)
{
	victim = mh_malloc(128);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice_remote, "remote then local");
	expect_abort(_metadata, free_here_then_remote, "local then remote");
}

static void *free_it_twice(void *p)
{
	mh_free(p);
	mh_free(p);
	return NULL;
}

static void free_remotely_twice(void *arg)
{
	(void)arg;
	on_a_new_thread(free_it_twice, victim);
}

static void free_remotely_by_two_threads(void *arg)
{
	(void)arg;
	on_a_new_thread(free_it, victim);
	on_a_new_thread(free_it, victim);
}

/* Neither free is the owner's: the second finds the first's remote bit
 * (the span is owned by this thread, which is alive and does not sweep in
 * between). */
TEST(double_free_where_both_frees_are_remote)
{
	victim = mh_malloc(128);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_remotely_twice, "one other thread twice");
	expect_abort(_metadata, free_remotely_by_two_threads, "two other threads");
}

static void free_after_span_died(void *arg)
{
	(void)arg;
	/* The only object of its span: freeing it returns the span... */
	mh_free(victim);
	/* ...and its pages; the second free finds free pages. */
	mh_free(victim);
}

TEST(double_free_after_the_pages_went_back)
{
	victim = mh_malloc(20000);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_after_span_died, "span died");
}

/* The page heap's span cache, past the thread's own cache of freed large
 * blocks (largecache.c), which this empties after the first free. */
static void free_into_the_span_cache_then_twice(void *arg)
{
	(void)arg;
	mh_free(victim);
	mcache_large_release(mh_tls_cache);
	mh_free(victim);
}

TEST(double_free_of_a_large_object_in_the_span_cache)
{
	victim = mh_malloc(5 * MH_PAGE_SIZE);	/* freed whole into the cache */
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_into_the_span_cache_then_twice, "cached span");
}

TEST(double_free_of_a_large_object_the_freeing_thread_keeps)
{
	victim = mh_malloc(64 << 10);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "kept by the thread");
}

static void free_kept_then_on_a_new_thread(void *arg)
{
	(void)arg;
	mh_free(victim);
	on_a_new_thread(free_it, victim);
}

TEST(double_free_by_another_thread_of_a_large_object_one_thread_keeps)
{
	victim = mh_malloc(64 << 10);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_kept_then_on_a_new_thread, "kept, then remote");
}

static void realloc_kept(void *arg)
{
	(void)arg;
	mh_free(victim);
	(void)mh_realloc(victim, 100 << 10);
}

TEST(realloc_of_a_large_object_the_freeing_thread_keeps)
{
	victim = mh_malloc(64 << 10);
	WANT("mheap: double free of %#lx in realloc", victim);
	expect_abort(_metadata, realloc_kept, "kept, realloc");
}

static void realloc_freed(void *arg)
{
	(void)arg;
	mh_free(victim);
	/* Keep the span alive so the slot is still a valid object start. */
	(void)mh_realloc(victim, 200);
}

TEST(realloc_of_a_freed_pointer)
{
	void *keep = mh_malloc(64);

	victim = mh_malloc(64);
	(void)keep;
	WANT("mheap: double free of %#lx in realloc", victim);
	expect_abort(_metadata, realloc_freed, "realloc");
}

/* The object the window hands out next (the lowest clear bit of its
 * alloc_bits word, mspan.h) has not been handed out since the span was
 * made or swept: freeing it is a double free, however close it lies to
 * the objects that have been (the owner's check reads the bitmap words
 * alone, checkedfree.h). */
TEST(double_free_of_the_next_object_to_hand_out)
{
	/* A class nothing else here uses: a fresh span, all of it free. */
	void *p = mh_malloc(3000);
	struct mspan *s = span_of((uintptr_t)p);

	ASSERT_NE(NULL, s);
	ASSERT_NE(MSPAN_WINDOW_CLOSED, s->window);
	uint64_t a = *mspan_window_word(s, s->window);

	ASSERT_NE(~(uint64_t)0, a) TH_LOG("the window offers no object");
	victim = (void *)(s->base + (uintptr_t)(mspan_window_first(s->window) +
						(uint32_t)__builtin_ctzll(~a)) * s->elemsize);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_victim, "next to hand out");
	mh_free(p);
}

/* The first object of a span of fresh pages past `touched`, in the
 * window's word: set in alloc_bits and freed_local while the window is
 * there (mspan.h, "The window"), never handed out. Its free is a double
 * free, the owner's and another thread's. */
static void *first_reserved(struct __test_metadata *_metadata, void **keep)
{
	/* 2 KiB objects: 4 pages hold 16, a page of them is 4. */
	void *p = mh_malloc(2048);
	struct mspan *s = span_of((uintptr_t)p);

	*keep = p;
	if (!s || s->touched == s->nelems)
		return NULL;	/* resident pages: every object touched */
	EXPECT_EQ(mspan_window_at(s->touched / 64), s->window);
	return (void *)(s->base + (uintptr_t)s->touched * s->elemsize);
}

static void *free_victim_thread(void *arg)
{
	(void)arg;
	mh_free(victim);
	return NULL;
}

static void free_victim_remotely(void *arg)
{
	pthread_t t;

	(void)arg;
	pthread_create(&t, NULL, free_victim_thread, NULL);
	pthread_join(t, NULL);
}

TEST(double_free_of_an_object_past_touched_in_the_window)
{
	void *keep;

	victim = first_reserved(_metadata, &keep);
	if (!victim)
		SKIP(return, "the span's pages were resident: no object past `touched`");
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_victim, "reserved, by the owner");
	mh_free(keep);
}

TEST(remote_double_free_of_an_object_past_touched_in_the_window)
{
	void *keep;

	victim = first_reserved(_metadata, &keep);
	if (!victim)
		SKIP(return, "the span's pages were resident: no object past `touched`");
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_victim_remotely, "reserved, by another thread");
	mh_free(keep);
}

/* Objects of two heap arenas, freed turn about: each free moves the
 * cache's arena (mcache_span_of), and must still find the right span. */
static void *arena_a[2], *arena_b;

static void free_across_arenas_then_twice(void *arg)
{
	(void)arg;
	mh_free(arena_a[0]);
	mh_free(arena_b);
	mh_free(arena_a[1]);
	mh_free(arena_b);
}

TEST(double_free_after_a_free_into_another_heap_arena)
{
	size_t cap = 4096, n = 0;
	void **objs = calloc(cap, sizeof(*objs));
	uintptr_t first;

	ASSERT_NE(NULL, objs);
	objs[n++] = mh_malloc(32768);
	ASSERT_NE(NULL, objs[0]);
	first = (uintptr_t)objs[0] >> MH_ARENA_SHIFT;
	/* 32 KiB objects until one lies in another arena (at most 64 MiB). */
	while (n < cap) {
		objs[n] = mh_malloc(32768);
		ASSERT_NE(NULL, objs[n]);
		if ((uintptr_t)objs[n++] >> MH_ARENA_SHIFT != first)
			break;
	}
	ASSERT_LT(n, cap);
	ASSERT_GT(n, 2);
	arena_a[0] = objs[0];
	arena_a[1] = objs[1];
	arena_b = objs[n - 1];
	WANT("mheap: double free of %#lx", arena_b);
	expect_abort(_metadata, free_across_arenas_then_twice, "two arenas");
	while (n)
		mh_free(objs[--n]);
	free(objs);
}

/* A span a free's lookup found, and the check of p against it: in the
 * test, a span that does not hold p, as when p's span died and its struct
 * started a new life over other pages between the lookup and the check (a
 * free racing the free of p's span's last object; free_checked's `found`). */
static struct mspan *victim_span;

static void check_victim_against_victim_span(void *arg)
{
	uint32_t idx;

	(void)arg;
	checked_span_at(victim_span, (uintptr_t)victim, &idx, "");
}

/* Whatever the offset: above the span at a multiple of its object size
 * (where the index alone would name an object past its last one), or
 * below it. */
TEST(a_free_whose_span_now_holds_other_pages_is_a_double_free)
{
	void *p = mh_malloc(48);
	struct mspan *s = span_of((uintptr_t)p);
	uintptr_t bytes = s->npages << MH_PAGE_SHIFT;

	victim_span = s;
	victim = (void *)(s->base + (bytes + s->elemsize - 1) / s->elemsize * s->elemsize);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, check_victim_against_victim_span, "above the span");
	victim = (void *)(s->base - 64 * (uintptr_t)s->elemsize);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, check_victim_against_victim_span, "below the span");
	mh_free(p);
}

/*
 * The owner's check and record (checkedfree.h, local_free) take the bit of
 * object idx in bitmap word idx / 64 (bt and bts on a register: the bit
 * number modulo 64; on memory they would address a bit idx / 64 words
 * further). In every class, a span whose objects this thread holds all,
 * freed by the owner but for one: each free passes, and a second free of
 * the first and last objects of a word, and of the span's last, aborts.
 */
#define EDGE_OBJS 4096

static void *edge_objs[EDGE_OBJS];

TEST(owners_double_free_at_the_edges_of_the_bitmap_words_in_every_class)
{
	static void *byidx[MH_MAX_OBJS_PER_SPAN];

	mh_free(mh_malloc(1 << 20));	/* the heap set up */
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++) {
		uint32_t size = mh_class[cls].size, nelems = mh_class[cls].nelems;
		struct mspan *s = NULL;
		unsigned n = 0, got = 0;

		/* Objects until one span's are all ours (a fresh span). */
		memset(byidx, 0, sizeof(byidx));
		while (got < nelems && n < EDGE_OBJS) {
			void *p = edge_objs[n++] = mh_malloc(size);

			ASSERT_NE(NULL, p);
			if (!s || span_of((uintptr_t)p) != s) {
				s = span_of((uintptr_t)p);
				memset(byidx, 0, sizeof(byidx));
				got = 0;
			}
			byidx[mspan_obj_index(s, (uintptr_t)p)] = p;
			got++;
		}
		ASSERT_EQ(nelems, got) TH_LOG("class %u: no span of ours", cls);
		/* All but the span's first object, by the owner. */
		for (unsigned i = 1; i < nelems; i++)
			mh_free(byidx[i]);
		unsigned edges[] = {63, 64, 127, 128, nelems - 1};

		for (unsigned e = 0; e < sizeof(edges) / sizeof(edges[0]); e++) {
			if (edges[e] >= nelems)
				continue;
			victim = byidx[edges[e]];
			WANT("mheap: double free of %#lx", victim);
			expect_abort(_metadata, free_victim, "an edge of a word");
		}
		mh_free(byidx[0]);
		victim = byidx[0];
		WANT("mheap: double free of %#lx", victim);
		expect_abort(_metadata, free_victim, "the span's first");
		for (unsigned i = 0; i < n; i++)
			if (span_of((uintptr_t)edge_objs[i]) != s)
				mh_free(edge_objs[i]);
	}
}

TEST_HARNESS_MAIN
