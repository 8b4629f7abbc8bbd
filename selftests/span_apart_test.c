// SPDX-License-Identifier: GPL-2.0
/*
 * Span structs and thread caches of different threads lie apart:
 * fixalloc_alloc_run carves a caller's new objects from a run of its own,
 * whole 4 KiB pages of the slab that no other caller's new objects share,
 * and the page heap carves every span struct, and mcache_borrow every
 * cache, from the thread's run, which its cache holds (fixalloc.h says why:
 * the prefetchers of the core that reads one struct in order pull in the
 * lines after it, within its page). A run grows in place while the slab's
 * next bytes follow it, so two threads making structs by turns fill their
 * pages (a gap wherever the caller changed cost them nearly a struct's
 * worth each time). And objects of several sizes carved from one slab
 * (fixalloc_share): the span struct buckets and the caches fill the same
 * runs.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kselftest_harness.h"

#include "mheap.h"
#include "arenamap.h"
#include "fixalloc.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "sizeclass.h"

#define OBJ 640		/* a span struct with 16 bitmap words */
#define PAGE ((uintptr_t)4096)

/* The 4 KiB pages [p, p + len) lies on. */
static uintptr_t first_page(const void *p)
{
	return (uintptr_t)p / PAGE;
}

static uintptr_t last_page(const void *p, size_t len)
{
	return ((uintptr_t)p + len - 1) / PAGE;
}

TEST(objects_for_one_caller_are_dense_and_another_callers_start_a_page)
{
	struct fixalloc f;
	struct fixalloc_run a = { NULL, 0 }, b = { NULL, 0 };
	char *p1, *p2, *p3, *p4, *p5;

	fixalloc_init(&f, OBJ, 0, 0);
	p1 = fixalloc_alloc_run(&f, &a);
	p2 = fixalloc_alloc_run(&f, &a);
	p3 = fixalloc_alloc_run(&f, &b);
	p4 = fixalloc_alloc_run(&f, &b);
	ASSERT_NE(NULL, p1);
	ASSERT_NE(NULL, p4);
	EXPECT_EQ(0, (uintptr_t)p1 % PAGE);
	EXPECT_EQ(p1 + OBJ, p2);
	/* b's run follows a's whole run, on a page of its own. */
	EXPECT_EQ(p1 + FIXALLOC_RUN, p3);
	EXPECT_EQ(0, (uintptr_t)p3 % PAGE);
	EXPECT_EQ(p3 + OBJ, p4);
	EXPECT_EQ(4 * (uint64_t)OBJ, f.inuse);

	/* Back to a: on in its own run, not after b's objects. */
	p5 = fixalloc_alloc_run(&f, &a);
	EXPECT_EQ(p2 + OBJ, p5);

	/* A freed object is handed out again wherever it lies. */
	fixalloc_free(&f, p2);
	EXPECT_EQ(p2, fixalloc_alloc_run(&f, &b));
}

TEST(a_run_the_slab_follows_grows_in_place)
{
	struct fixalloc f;
	struct fixalloc_run a = { NULL, 0 };
	char *first, *prev, *p;
	size_t n = FIXALLOC_SLAB / OBJ;	/* a whole slab's worth */

	fixalloc_init(&f, OBJ, 0, 0);
	first = prev = fixalloc_alloc_run(&f, &a);
	ASSERT_NE(NULL, first);
	/* Past the end of its first run (16 KiB is not a multiple of 640
	 * bytes): one caller's objects stay dense, none of a run's rest is
	 * left behind. */
	for (size_t i = 1; i < n; i++) {
		p = fixalloc_alloc_run(&f, &a);
		ASSERT_NE(NULL, p);
		ASSERT_EQ(prev + OBJ, p);
		prev = p;
	}
	EXPECT_GT((size_t)(prev - first), FIXALLOC_RUN);
}

TEST(a_run_too_short_with_another_after_it_takes_a_new_one)
{
	struct fixalloc f;
	struct fixalloc_run a = { NULL, 0 }, b = { NULL, 0 };
	char *last = NULL, *pb, *p;

	fixalloc_init(&f, OBJ, 0, 0);
	/* a's first run, then b's right after it: a cannot grow in place. */
	ASSERT_NE(NULL, fixalloc_alloc_run(&f, &a));
	pb = fixalloc_alloc_run(&f, &b);
	ASSERT_NE(NULL, pb);
	while (a.left >= OBJ) {
		last = fixalloc_alloc_run(&f, &a);
		ASSERT_NE(NULL, last);
	}
	ASSERT_NE(NULL, last);
	ASSERT_TRUE(last + OBJ <= pb);
	p = fixalloc_alloc_run(&f, &a);
	ASSERT_NE(NULL, p);
	/* A new run of a's: a page of its own, not inside b's run. */
	EXPECT_EQ(0, (uintptr_t)p % PAGE);
	EXPECT_TRUE(p >= pb + FIXALLOC_RUN || p + FIXALLOC_RUN <= pb);
	EXPECT_EQ(FIXALLOC_RUN - OBJ, a.left);
}

TEST(an_object_longer_than_a_run_takes_whole_runs)
{
	struct fixalloc f;
	struct fixalloc_run a = { NULL, 0 };
	size_t size = FIXALLOC_RUN + 2 * MH_SHARING_BLOCK;
	char *p, *q;

	fixalloc_init(&f, size, 0, 0);
	p = fixalloc_alloc_run(&f, &a);
	ASSERT_NE(NULL, p);
	EXPECT_EQ(0, (uintptr_t)p % PAGE);
	EXPECT_EQ(2 * FIXALLOC_RUN - size, a.left);
	q = fixalloc_alloc_run(&f, &a);
	ASSERT_NE(NULL, q);
	EXPECT_EQ(p + size, q);	/* grown in place */
}

/* Random interleavings of several callers and sizes on one slab, objects
 * longer than a run among them, frees and reuse: no object overlaps
 * another live one, each starts a sharing block, a carved one is all zero
 * (fresh pages), and no 4 KiB page holds carved objects of two callers. */
#define RAND_CALLERS 6
#define RAND_LIVE 1024
#define RAND_PAGES 8192

static struct { uintptr_t p; struct fixalloc *f; } rand_live[RAND_LIVE];
static struct { uintptr_t page; int caller; } rand_pages[RAND_PAGES];
static size_t rand_npages;

/* The caller that page was carved for, recorded as who when first seen;
 * -1 when the table is full. */
static int page_owner(uintptr_t page, int who)
{
	size_t i = (page * 0x9e3779b97f4a7c15ull) % RAND_PAGES;

	while (rand_pages[i].page && rand_pages[i].page != page)
		i = (i + 1) % RAND_PAGES;
	if (!rand_pages[i].page) {
		if (++rand_npages > RAND_PAGES / 2)
			return -1;
		rand_pages[i].page = page;
		rand_pages[i].caller = who;
	}
	return rand_pages[i].caller;
}

TEST(runs_of_many_callers_never_overlap_or_share_a_page)
{
	static const size_t sizes[] = { 128, OBJ, 8704, FIXALLOC_RUN + 2 * MH_SHARING_BLOCK };
	struct fixalloc f[4];
	struct fixalloc_run run[RAND_CALLERS];
	unsigned seed = 1;
	size_t nlive = 0;

	memset(run, 0, sizeof(run));
	memset(rand_pages, 0, sizeof(rand_pages));
	rand_npages = 0;
	for (int i = 0; i < 4; i++) {
		fixalloc_init(&f[i], sizes[i], 0, 0);
		if (i)
			fixalloc_share(&f[i], &f[0]);
	}
	for (int step = 0; step < 20000; step++) {
		unsigned r = (unsigned)rand_r(&seed);
		int who = r % RAND_CALLERS;
		/* Mostly small, one object longer than a run in 64. */
		struct fixalloc *fa = &f[(r >> 8) % 64 == 0 ? 3 : (r >> 14) % 3];
		bool carved = !fa->free;
		char *p;

		if (nlive == RAND_LIVE || (r >> 20) % 4 == 0) {
			if (!nlive)
				continue;
			size_t k = (r >> 3) % nlive;

			fixalloc_free(rand_live[k].f, (void *)rand_live[k].p);
			rand_live[k] = rand_live[--nlive];
			continue;
		}
		p = fixalloc_alloc_run(fa, &run[who]);
		ASSERT_NE(NULL, p);
		ASSERT_EQ(0, (uintptr_t)p % MH_SHARING_BLOCK);
		for (size_t k = 0; k < nlive; k++)
			ASSERT_TRUE(rand_live[k].p + rand_live[k].f->size <= (uintptr_t)p ||
				    (uintptr_t)p + fa->size <= rand_live[k].p)
				TH_LOG("step %d: %p overlaps a live object", step, p);
		if (carved) {
			for (size_t k = 0; k < fa->size; k++)
				ASSERT_EQ(0, p[k]) TH_LOG("step %d: a carved byte not zero", step);
			for (uintptr_t pg = first_page(p); pg <= last_page(p, fa->size); pg++)
				ASSERT_EQ(who, page_owner(pg, who))
					TH_LOG("step %d: a page carved for two callers", step);
		}
		memset(p, 0xa5, fa->size);	/* in use: an overlap shows */
		rand_live[nlive].p = (uintptr_t)p;
		rand_live[nlive].f = fa;
		nlive++;
	}
	TH_LOG("%zu pages carved on", rand_npages);
}

struct first_span {
	void *obj;
	struct mspan *span;
	struct mcache *cache;	/* the thread's */
	_Atomic int done;	/* obj and span are set */
	_Atomic int *release;	/* the thread exits once this is set */
};

/* A thread's first 16-byte object and its span; the thread stays (and its
 * cache keeps the span) until told to go. */
static void *first_small_span(void *arg)
{
	struct first_span *f = arg;

	f->obj = mh_malloc(16);
	f->span = f->obj ? span_of((uintptr_t)f->obj) : NULL;
	f->cache = mh_tls_cache;
	atomic_store(&f->done, 1);
	while (!atomic_load(f->release))
		sched_yield();
	mh_free(f->obj);
	return NULL;
}

static int start_and_wait(pthread_t *t, struct first_span *f)
{
	if (pthread_create(t, NULL, first_small_span, f))
		return -1;
	while (!atomic_load(&f->done))
		sched_yield();
	return 0;
}

/* Whether [a, a + alen) and [b, b + blen) share no 4 KiB page. */
static bool pages_apart(const void *a, size_t alen, const void *b, size_t blen)
{
	return last_page(a, alen) < first_page(b) || last_page(b, blen) < first_page(a);
}

TEST(two_threads_first_spans_of_one_class_have_structs_on_pages_apart)
{
	_Atomic int release = 0;
	struct first_span a = { .release = &release }, b = { .release = &release };
	pthread_t ta, tb;
	size_t size;

	/* One after the other, both alive: b's struct is carved after a's. */
	ASSERT_EQ(0, start_and_wait(&ta, &a));
	ASSERT_EQ(0, start_and_wait(&tb, &b));
	atomic_store(&release, 1);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ASSERT_NE(NULL, a.span);
	ASSERT_NE(NULL, b.span);
	ASSERT_NE(a.span, b.span);
	ASSERT_EQ((unsigned)a.span->bucket, (unsigned)b.span->bucket);
	size = mh_heap.spanalloc[a.span->bucket].size;
	/* With a slab carved in order, b's struct came right after a's. */
	EXPECT_TRUE(pages_apart(a.span, size, b.span, size));
}

TEST(two_threads_caches_are_on_pages_apart)
{
	_Atomic int release = 0;
	struct first_span a = { .release = &release }, b = { .release = &release };
	pthread_t ta, tb;
	size_t size;

	ASSERT_EQ(0, start_and_wait(&ta, &a));
	ASSERT_EQ(0, start_and_wait(&tb, &b));
	atomic_store(&release, 1);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ASSERT_NE(NULL, a.cache);
	ASSERT_NE(NULL, b.cache);
	size = mh_heap.cachealloc.size;
	/* With a slab carved in order, b's cache came right after a's. */
	EXPECT_TRUE(pages_apart(a.cache, size, b.cache, size));
	/* And each thread's struct on pages apart from the other's cache. */
	EXPECT_TRUE(pages_apart(a.cache, size, b.span, mh_heap.spanalloc[b.span->bucket].size));
	EXPECT_TRUE(pages_apart(b.cache, size, a.span, mh_heap.spanalloc[a.span->bucket].size));
}

/* Two threads that make span structs by turns: in each turn a thread
 * allocates a span's worth of 16-byte objects (a new span, its struct
 * carved: 640 bytes), then hands over to the other. */
#define TURNS 48

struct by_turns {
	_Atomic int *turn;		/* whose turn, 0 or 1; 2: done */
	int me;
	struct mspan *spans[TURNS];
	void **objs;			/* TURNS * per_span, freed at the end */
	unsigned per_span;
};

static void *make_spans_by_turns(void *arg)
{
	struct by_turns *t = arg;

	for (int i = 0; i < TURNS; i++) {
		while (atomic_load(t->turn) != t->me)
			sched_yield();
		for (unsigned k = 0; k < t->per_span; k++)
			t->objs[i * t->per_span + k] = mh_malloc(16);
		/* The turn's last object lies in the span it made. */
		t->spans[i] = span_of((uintptr_t)t->objs[(i + 1) * t->per_span - 1]);
		atomic_store(t->turn, !t->me);
	}
	while (atomic_load(t->turn) != t->me)
		sched_yield();
	for (unsigned k = 0; k < TURNS * t->per_span; k++)
		mh_free(t->objs[k]);
	atomic_store(t->turn, t->me ? 2 : 1);
	return NULL;
}

TEST(two_threads_making_span_structs_by_turns_fill_their_pages)
{
	_Atomic int turn = 0;
	struct by_turns t[2];
	pthread_t th[2];
	unsigned per_span;
	size_t size, dense = 0, pairs = 0;
	bool fresh;

	mheap_init();
	per_span = mh_class[size_to_class(16)].nelems;
	mh_lock(&mh_heap.lock);
	fresh = !mh_heap.cachealloc.free;
	for (unsigned b = 0; b < SPAN_BUCKETS; b++)
		fresh = fresh && !mh_heap.spanalloc[b].free;
	mh_unlock(&mh_heap.lock);
	if (!fresh)
		SKIP(return, "freed span structs or caches to reuse: no carving to see");
	for (int i = 0; i < 2; i++) {
		t[i] = (struct by_turns){ .turn = &turn, .me = i, .per_span = per_span };
		t[i].objs = calloc((size_t)TURNS * per_span, sizeof(void *));
		ASSERT_NE(NULL, t[i].objs);
	}
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&th[i], NULL, make_spans_by_turns, &t[i]));
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	size = mh_heap.spanalloc[t[0].spans[0]->bucket].size;
	/* Each thread's structs after its first: the next one right after
	 * the one before, but where a run ends (one in 16 KiB / 640 B = 25).
	 * With a gap wherever the thread changed, none was. */
	for (int i = 0; i < 2; i++) {
		for (int k = 2; k < TURNS; k++) {
			ASSERT_NE(NULL, t[i].spans[k]);
			pairs++;
			dense += (uintptr_t)t[i].spans[k] == (uintptr_t)t[i].spans[k - 1] + size;
		}
		free(t[i].objs);
	}
	TH_LOG("%zu of %zu structs right after the thread's one before", dense, pairs);
	EXPECT_GE(dense * 10, pairs * 9);
	/* And no struct on a page with one of the other thread's. */
	for (int k = 0; k < TURNS; k++)
		for (int j = 0; j < TURNS; j++)
			ASSERT_TRUE(pages_apart(t[0].spans[k], size, t[1].spans[j], size));
}

/* A thread that makes a span of a class of one bitmap word (its struct
 * carved from the run its cache holds; the object kept, so that the span
 * stays in use) and exits. */
struct one_span {
	size_t size;		/* the class's */
	void *obj;
	struct mspan *span;
	struct mcache *cache;	/* the thread's */
	void *run_next;		/* where its cache's run carves next, at the end */
};

static void *one_span_and_exit(void *arg)
{
	struct one_span *o = arg;

	o->obj = mh_malloc(o->size);
	o->span = o->obj ? span_of((uintptr_t)o->obj) : NULL;
	o->cache = mh_tls_cache;
	if (o->cache)
		o->run_next = o->cache->meta_run.next;
	return NULL;
}

TEST(a_cache_taken_again_carves_on_from_the_run_it_holds)
{
	struct one_span a = { .size = 4096 }, b = { .size = 2048 };
	pthread_t t;
	bool fresh;

	mheap_init();
	/* a's thread exits: its cache goes on the free list, with its run. */
	ASSERT_EQ(0, pthread_create(&t, NULL, one_span_and_exit, &a));
	pthread_join(t, NULL);
	ASSERT_NE(NULL, a.span);
	ASSERT_NE(NULL, a.cache);
	ASSERT_NE(NULL, a.run_next);
	mh_lock(&mh_heap.lock);
	fresh = mh_heap.cachealloc.free == (void *)a.cache &&
		!mh_heap.spanalloc[a.span->bucket].free;
	mh_unlock(&mh_heap.lock);
	if (!fresh)
		SKIP(return, "a's cache not next to be reused, or a freed struct of the bucket");
	/* b's thread takes that cache, and its first struct (of another
	 * class: no span of a's to reuse) goes where a's next would have:
	 * nothing of a's run is left unused by its exit. */
	ASSERT_EQ(0, pthread_create(&t, NULL, one_span_and_exit, &b));
	pthread_join(t, NULL);
	ASSERT_EQ(a.cache, b.cache);
	ASSERT_NE(NULL, b.span);
	ASSERT_EQ((unsigned)a.span->bucket, (unsigned)b.span->bucket);
	EXPECT_EQ(a.run_next, (void *)b.span);
	mh_free(a.obj);
	mh_free(b.obj);
}

TEST(sizes_sharing_a_slab_are_carved_one_after_the_other)
{
	struct fixalloc small, big;
	struct fixalloc_run a = { NULL, 0 }, b = { NULL, 0 };
	char *p1, *p2, *p3, *p4;

	fixalloc_init(&small, 128, 0, 0);
	fixalloc_init(&big, OBJ, 0, 0);
	fixalloc_share(&big, &small);
	p1 = fixalloc_alloc_run(&small, &a);
	p2 = fixalloc_alloc_run(&big, &a);
	p3 = fixalloc_alloc_run(&small, &a);
	ASSERT_NE(NULL, p1);
	ASSERT_NE(NULL, p2);
	ASSERT_NE(NULL, p3);
	/* One caller: dense across the sizes (with a slab each, p2 began
	 * a slab of its own). */
	EXPECT_EQ(p1 + 128, p2);
	EXPECT_EQ(p2 + OBJ, p3);
	/* Another caller: a run of its own after a's, whichever size. */
	p4 = fixalloc_alloc_run(&big, &b);
	ASSERT_NE(NULL, p4);
	EXPECT_EQ(p1 + FIXALLOC_RUN, p4);
	/* Each size keeps its own count and free list. */
	EXPECT_EQ(2 * (uint64_t)128, small.inuse);
	EXPECT_EQ(2 * (uint64_t)OBJ, big.inuse);
	fixalloc_free(&big, p2);
	EXPECT_EQ(p2, fixalloc_alloc_run(&big, &a));
	EXPECT_EQ(NULL, small.free);
}

/* A thread's first objects of a dense and a sparse class: two span structs
 * of different buckets, carved for it one after the other. */
static void *two_buckets(void *arg)
{
	struct mspan **s = arg;
	void *p = mh_malloc(16), *q = mh_malloc(4096);

	s[0] = p ? span_of((uintptr_t)p) : NULL;
	s[1] = q ? span_of((uintptr_t)q) : NULL;
	mh_free(p);
	mh_free(q);
	return NULL;
}

TEST(the_heaps_span_structs_and_caches_share_one_slab)
{
	struct mspan *s[2] = { NULL, NULL };
	void *warm = mh_malloc(16);	/* the heap set up, this thread's cache */
	struct fixalloc *f;
	bool fresh;
	pthread_t t;

	ASSERT_NE(NULL, warm);
	for (unsigned b = 0; b < SPAN_BUCKETS; b++)
		EXPECT_EQ(mh_heap.spanalloc[0].slab, mh_heap.spanalloc[b].slab);
	EXPECT_EQ(mh_heap.spanalloc[0].slab, mh_heap.cachealloc.slab);

	/* In use: a new thread's structs of two buckets lie side by side when
	 * both are carved (no freed struct of either bucket to reuse). */
	mh_lock(&mh_heap.lock);
	fresh = !mh_heap.cachealloc.free;
	for (unsigned b = 0; b < SPAN_BUCKETS; b++)
		fresh = fresh && !mh_heap.spanalloc[b].free;
	mh_unlock(&mh_heap.lock);
	ASSERT_EQ(0, pthread_create(&t, NULL, two_buckets, s));
	pthread_join(t, NULL);
	mh_free(warm);
	ASSERT_NE(NULL, s[0]);
	ASSERT_NE(NULL, s[1]);
	if (!fresh)
		SKIP(return, "freed span structs or caches to reuse: no carving to see");
	ASSERT_NE((unsigned)s[0]->bucket, (unsigned)s[1]->bucket);
	f = &mh_heap.spanalloc[s[0]->bucket];
	/* Same thread: no gap, and the sparse span's struct right after the
	 * dense one's (each had a slab of its own before). */
	EXPECT_EQ((uintptr_t)s[0] + f->size, (uintptr_t)s[1]);
}

TEST_HARNESS_MAIN
