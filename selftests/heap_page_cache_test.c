// SPDX-License-Identifier: GPL-2.0
/*
 * The threads' page caches (pagecache.c): a chunk taken per thread and
 * runs served from it, threads making spans at once on chunks of their
 * own, the chunk given back when the thread exits, and its free pages
 * released by the scavenger while the thread lives.
 */
#define _GNU_SOURCE
#include "heap_lib.h"

#define CHUNK_BYTES PAGES(PA_CHUNK_TAKE_PAGES)

TEST(a_page_cache_takes_a_chunk_and_serves_runs_from_it)
{
	struct page_cache pc;
	struct pa_result one, three, too_long;
	uint64_t free_before, free_taken, free_after, free_back;
	uintptr_t chunk;

	mh_free(mh_malloc(1));	/* a heap arena to work in */
	mh_lock(&mh_heap.lock);
	page_cache_register(&pc);
	free_before = pa_free_pages;
	one = page_cache_alloc(&pc, 1);
	chunk = pc.base;
	three = page_cache_alloc(&pc, 3);
	/* Longer than a cache serves: the shared allocator's business. */
	too_long = page_cache_alloc(&pc, PAGE_CACHE_SPAN_MAX + 1);
	free_taken = pa_free_pages;
	/* Nothing else may take the chunk's pages while the cache has them. */
	uintptr_t elsewhere = pa_alloc(1, 1, PA_LOW).base;
	page_cache_unregister(&pc);
	free_after = pa_free_pages;
	pa_free(one.base, 1, false);
	pa_free(three.base, 3, false);
	pa_free(elsewhere, 1, false);
	free_back = pa_free_pages;
	mh_unlock(&mh_heap.lock);

	ASSERT_NE(0, one.base);
	EXPECT_EQ(0, chunk % CHUNK_BYTES);
	EXPECT_TRUE(one.base >= chunk && one.base < chunk + CHUNK_BYTES);
	/* Runs come lowest first, one after the other. */
	EXPECT_EQ(one.base + PAGES(1), three.base);
	EXPECT_EQ(0, too_long.base);
	EXPECT_TRUE(elsewhere < chunk || elsewhere >= chunk + CHUNK_BYTES);
	/* Taken pages still count as free until a span is made of them. */
	EXPECT_EQ(free_before - 4, free_taken);
	/* Giving the cache back leaves the counts as they were. */
	EXPECT_EQ(free_taken - 1, free_after);
	EXPECT_EQ(free_before, free_back);
}

/* Two threads take turns making spans of 8 B objects (one page each: 8 B
 * and 128 B are the classes whose spans are one page, sizeclass.c). */
struct span_turns {
	pthread_mutex_t lock;
	pthread_cond_t turn_done;
	int turn;			/* whose turn: 0 or 1 */
	uintptr_t span[2][8];		/* the span each turn of each thread made */
};

static struct span_turns turns = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.turn_done = PTHREAD_COND_INITIALIZER,
};

static void *make_spans_in_turn(void *arg)
{
	int me = (int)(intptr_t)arg;
	unsigned cls = size_to_class(8);

	for (int k = 0; k < 8; k++) {
		pthread_mutex_lock(&turns.lock);
		while (turns.turn != me)
			pthread_cond_wait(&turns.turn_done, &turns.lock);
		/* A span's worth of objects: a fresh span each turn. */
		for (unsigned i = 0; i < mh_class[cls].nelems; i++) {
			void *p = mh_malloc(8);

			if (i == 0)
				turns.span[me][k] = span_of((uintptr_t)p)->base;
		}
		turns.turn = !me;
		pthread_cond_broadcast(&turns.turn_done);
		pthread_mutex_unlock(&turns.lock);
	}
	return NULL;
}

TEST(threads_making_spans_at_once_get_pages_of_chunks_of_their_own)
{
	pthread_t t[2];

	/* Shared first fit would hand the turns consecutive pages. */
	for (intptr_t i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, make_spans_in_turn, (void *)i));
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int me = 0; me < 2; me++) {
		for (int k = 0; k < 8; k++) {
			ASSERT_NE(0, turns.span[me][k]);
			/* Eight one-page spans fit one chunk... */
			EXPECT_EQ(turns.span[me][0] / CHUNK_BYTES, turns.span[me][k] / CHUNK_BYTES);
		}
	}
	/* ...and the two threads' chunks differ. */
	EXPECT_NE(turns.span[0][0] / CHUNK_BYTES, turns.span[1][0] / CHUNK_BYTES);
}

struct one_object {
	pthread_barrier_t made, go;
	uintptr_t chunk;
};

static void *make_one_object_and_wait(void *arg)
{
	struct one_object *o = arg;
	void *p = mh_malloc(8);	/* a span of one page */

	o->chunk = ALIGN_DOWN((uintptr_t)p, CHUNK_BYTES);
	mh_free(p);
	pthread_barrier_wait(&o->made);
	pthread_barrier_wait(&o->go);
	return NULL;
}

#define CHUNK_ALL ((((uint64_t)1 << (PA_CHUNK_TAKE_PAGES - 1)) << 1) - 1)

/* The chunk's bits of the allocation bitmap: which of its pages are in
 * use (or held by a cache). */
static uint64_t chunk_in_use(uintptr_t chunk)
{
	struct heap_arena *ha = arena_of(chunk);
	unsigned page = (unsigned)arena_page(ha, chunk);
	uint64_t word;

	mh_lock(&mh_heap.lock);
	word = ha->alloc[page / 64];
	mh_unlock(&mh_heap.lock);
	return word >> (page % 64) & CHUNK_ALL;
}

TEST(a_threads_page_cache_goes_back_when_the_thread_exits)
{
	static struct one_object o;
	uint64_t alive, gone;
	pthread_t t;

	pthread_barrier_init(&o.made, NULL, 2);
	pthread_barrier_init(&o.go, NULL, 2);
	ASSERT_EQ(0, pthread_create(&t, NULL, make_one_object_and_wait, &o));
	pthread_barrier_wait(&o.made);
	ASSERT_NE(0, o.chunk);
	alive = chunk_in_use(o.chunk);
	pthread_barrier_wait(&o.go);
	pthread_join(t, NULL);
	gone = chunk_in_use(o.chunk);
	/* While the thread lives its cache holds the whole chunk; once it
	 * has gone, its one span waits in the span cache and the chunk's
	 * other pages are free for anyone again. */
	EXPECT_EQ(CHUNK_ALL, alive);
	EXPECT_EQ(1, mh_popcount(gone));
}

TEST(the_scavenger_takes_back_the_pages_a_live_threads_cache_holds)
{
	static struct one_object o;
	size_t len = PAGES(2 * PA_CHUNK_TAKE_PAGES);
	struct mh_stats st = MH_STATS_INIT;
	char *run;
	pthread_t t;

	/* Resident free pages at the bottom of the free memory: a block
	 * written, freed, and taken out of the span cache. */
	run = mh_malloc(len);
	ASSERT_NE(NULL, run);
	memset(run, 1, len);
	free_to_page_heap(run);
	mheap_flush_caches_locking();
	/* A new thread's cache takes its chunk among them. */
	pthread_barrier_init(&o.made, NULL, 2);
	pthread_barrier_init(&o.go, NULL, 2);
	ASSERT_EQ(0, pthread_create(&t, NULL, make_one_object_and_wait, &o));
	pthread_barrier_wait(&o.made);
	ASSERT_TRUE(o.chunk >= (uintptr_t)run && o.chunk < (uintptr_t)run + len);
	/* The cache's other pages are idle: released with every other idle
	 * page, though the thread still runs. */
	mh_scavenge();
	mh_stats_read(&st);
	pthread_barrier_wait(&o.go);
	pthread_join(t, NULL);
	EXPECT_EQ(st.heap_idle, st.heap_released);
}

TEST_HARNESS_MAIN
